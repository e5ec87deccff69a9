"""Numbers of trained weights: J and ∇J by autograd, evaluations and ``metrics.json`` records.

* :func:`objective_and_gradient` — J(w) and ∇J(w) of an MLP problem's flat weights (float64);
* :func:`mlp_evaluation`, :func:`conv_evaluation` — the one :class:`~ocp_resnet.model.evaluation.Evaluation`;
* :func:`training_status`, :func:`training_metrics` — the ``metrics.json`` schema of ``solve``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ocp_resnet.errors import ValidationError
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import TORCH
from ocp_resnet.model.evaluation import Evaluation, evaluate, metrics_record
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.status import Status
from ocp_resnet.torch.conv import ConvSpec, ResNetV2
from ocp_resnet.torch.loss import predictions, targets

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.runs import Run
    from ocp_resnet.solvers.base import Backend

#: Torch training has no optimality certificate: a run counts as ``success`` only when its final
#: full-batch gradient norm is at most this (the convention of compare and the analysis).
GRAD_TOL = 1e-6

_MAX_ITER_MESSAGE = ("ran all epochs; the gradient norm is above {tol:g}, so this is not a stationary point: "
                     "train longer, or polish it with IPOPT from this run (init=RUN_DIR; MLP runs)")


def training_status(ev: Evaluation, stopped: Status | None, grad_tol: float = GRAD_TOL) -> Status:
    """Status of a finished training from its evaluation and the trainer's ``stopped_``."""
    if stopped is Status.NAN or not np.isfinite(ev.objective):
        return Status.NAN
    if stopped is Status.INTERRUPTED:
        return Status.INTERRUPTED
    return Status.SUCCESS if ev.grad_norm is not None and ev.grad_norm <= grad_tol else Status.MAX_ITER


def training_metrics(ev: Evaluation, status: Status, grad_tol: float = GRAD_TOL, **extra: Any) -> dict[str, Any]:
    """The ``metrics.json`` record of a torch training (the schema of ``solve``), plus ``extra``."""
    message = _MAX_ITER_MESSAGE.format(tol=grad_tol) if status == Status.MAX_ITER else None
    return metrics_record(ev, status, status_message=message, build_time_s=0.0, backend="torch", **extra)


def mlp_evaluation(problem: Problem, weights: Any) -> Evaluation:
    """:func:`ocp_resnet.model.evaluation.evaluate` with the float64 torch-autograd gradient norm."""
    return evaluate(problem, weights, backend="torch")


def conv_evaluation(model: ResNetV2, images: np.ndarray, y: np.ndarray, objective: ObjectiveSpec,
                    n_classes: int, chunk: int = 512, gradient: bool = True) -> Evaluation:
    """Objective, stage losses/accuracies, branch and residual norms, gradient norm of a conv net.

    In eval mode (batch norm with running statistics), so J is a function of the weights alone;
    the gradient is accumulated over chunks of the data (``gradient=False``: skipped, grad_norm None).
    """
    model.eval()
    dtype, device = model.dtype, model.device
    X = torch.as_tensor(np.asarray(images, dtype=np.float64), dtype=dtype)
    T = targets(objective, y, n_classes, dtype)
    Y = torch.as_tensor(np.asarray(y, dtype=int))
    n, N = X.shape[0], model.spec.n_blocks
    const = objective.target_entropy(n_classes)
    loss_sum = np.zeros(N + 1)
    correct = np.zeros(N + 1)
    res_sq = np.zeros(N)
    with torch.no_grad():
        for i in range(0, n, chunk):
            xb, tb, yb = X[i:i + chunk].to(device), T[i:i + chunk].to(device).T, Y[i:i + chunk].to(device)
            xs = model.trajectory(xb)
            for k, z in enumerate(model.stage_outputs_from(xs)):
                loss_sum[k] += float(objective_mod.loss(objective, z, tb, const, TORCH).sum())
                correct[k] += int((predictions(objective, z) == yb).sum())
            for k in range(len(model.blocks)):
                F = xs[k + 1] - model.block(k).skip(xs[k])
                res_sq[k] += float((F * F).sum())
    stage_losses = (loss_sum / n).tolist()
    gammas = objective.stage_weights(N)
    model.zero_grad(set_to_none=True)
    grad_norm = None
    if gradient:
        for i in range(0, n, chunk):
            xb, tb = X[i:i + chunk].to(device), T[i:i + chunk].to(device).T
            cost, _ = model.cost(xb, tb, objective)
            (cost.sum() / n).backward()
    reg = model.regularization(objective)
    if gradient:
        reg.backward()
        grads = [p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]
        grad_norm = float(torch.linalg.vector_norm(torch.cat(grads)).cpu()) if grads else 0.0
    model.zero_grad(set_to_none=True)
    J = sum(g * loss for g, loss in zip(gammas, stage_losses)) + float(reg.detach())
    block_norms = [math.sqrt(sum(float((p.detach() ** 2).sum()) for p in model.branch_parameters(k))) for k in range(N)]
    return Evaluation(float(J), stage_losses[-1], stage_losses, (correct / n).tolist(), block_norms,
                      np.sqrt(res_sq / n).tolist(), grad_norm)


def conv_model_from_run(run: Any, dtype: torch.dtype = torch.float64, device: Any = None) -> ResNetV2:
    """The conv net of a ``train --arch conv`` run directory, weights loaded."""
    spec = ConvSpec.from_dict(run.config["architecture"])
    model = ResNetV2(spec, dtype=dtype, device=device)
    return model.load_weights(run.weights)


def evaluate_conv_run(run: Run, backend: Backend = "torch") -> dict[str, Any]:
    """``ocp-resnet evaluate`` for a conv run (torch back-end only), float64."""
    if backend != "torch":
        raise ValidationError("a conv run can only be evaluated with backend='torch' (CasADi has no conv nets)")
    model = conv_model_from_run(run)
    obj = ObjectiveSpec.from_dict(run.config["objective"])
    data = run.data()
    images = data.X.reshape(-1, *model_input_shape(model.spec))
    ev = conv_evaluation(model, images, data.y, obj, data.n_classes)
    return {"backend": backend, **{k: getattr(ev, k) for k in ("objective", "grad_norm", "stage_losses",
                                                               "stage_accuracy", "final_loss", "block_norms")}}


def model_input_shape(spec: ConvSpec) -> tuple[int, int, int]:
    """(channels, height, width) of the images ``spec`` takes."""
    return (spec.in_channels, *spec.image_size)
