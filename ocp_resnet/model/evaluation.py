"""The numbers of one set of weights, computed one way for every back-end and command
(docs/theory.md, "The numbers a user sees").

* :class:`Evaluation` — objective, stage losses and accuracies, block and residual norms and
  (when asked for) the gradient norm ‖∇J(w)‖ of the weights on the problem's data;
* :func:`evaluate` — the :class:`Evaluation` of an MLP :class:`~ocp_resnet.model.problem.Problem`
  (numpy numbers; the gradient by CasADi or, with ``backend="torch"``, by torch autograd);
* :func:`metrics_record` — the ``metrics.json`` record of an evaluation and its status, the
  one schema that solves, trainings, prunes and sweeps write.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.data.arrays import Dataset
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers.base import Backend


@dataclass
class Evaluation:
    """Numbers of one set of weights on the problem's data (k = 0..N for stage arrays).

    ``grad_norm`` is ‖∇J(w)‖ over all weights, ``None`` when it was not computed.
    """

    objective: float
    final_loss: float
    stage_losses: list[float]
    stage_accuracy: list[float]
    block_norms: list[float]
    residual_norms: list[float]
    grad_norm: float | None = None

    @property
    def train_accuracy(self) -> float:
        """Accuracy of the final output ŷ_N."""
        return self.stage_accuracy[-1]

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (``grad_norm`` included, ``None`` when not computed)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def metrics(self) -> dict[str, Any]:
        """The evaluation part of ``metrics.json`` (no status)."""
        d = self.to_dict()
        grad = d.pop("grad_norm")
        return {**d, "train_accuracy": self.train_accuracy, **({} if grad is None else {"grad_norm": grad})}


def evaluate(problem: Problem, w: np.ndarray | Mapping[str, Any], *, gradient: bool = True,
             backend: Backend = "casadi") -> Evaluation:
    """The :class:`Evaluation` of the weights ``w`` (flat vector or name → array) on ``problem``.

    The numbers come from :meth:`Problem.evaluate` (numpy, float64). With ``gradient`` the
    gradient norm is added: by CasADi's reverse mode (``backend="casadi"``) or by torch
    autograd in float64 (``backend="torch"``); weights that are not finite get ``nan``.
    """
    w = problem.spec.flatten(w) if isinstance(w, Mapping) else np.asarray(w, dtype=float).ravel()
    with np.errstate(all="ignore"):  # a failed iterate may overflow: its numbers say so (inf/nan)
        ev = problem.evaluate(w)
        if gradient:
            ev.grad_norm = float(np.linalg.norm(objective_and_gradient(problem, w, backend)[1])) \
                if np.all(np.isfinite(w)) else float("nan")
    return ev


def objective_and_gradient(problem: Problem, w: np.ndarray, backend: Backend = "casadi") -> tuple[float, np.ndarray]:
    """J(w) and ∇J(w) of the flat weights ``w`` by CasADi (``"casadi"``) or torch autograd (``"torch"``)."""
    if backend == "torch":
        from ocp_resnet.torch.gradient import objective_and_gradient as torch_objective_and_gradient

        return torch_objective_and_gradient(problem, w)
    from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient as casadi_objective_and_gradient

    return casadi_objective_and_gradient(problem, w)


def metrics_record(ev: Evaluation, status: Status, *, status_message: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``metrics.json`` record: the evaluation, the status explained, then ``extra`` fields.

    ``status_message`` replaces the status' own message where the caller knows more (a torch
    training that ran all its epochs says so instead of IPOPT's iteration limit).
    """
    return {
        **ev.metrics(),
        "status": status.value,
        "status_message": status.message if status_message is None else status_message,
        "success": status.success,
        **extra,
    }


def validation_metrics(problem: Problem, weights: Any, val: Dataset) -> dict[str, Any]:
    """``val_*`` fields of ``metrics.json``: stage losses/accuracies of ``weights`` on ``val``."""
    ev = evaluate(type(problem)(problem.spec, problem.objective, val), weights, gradient=False)
    return {"val_n_samples": val.n_samples, "val_loss": ev.final_loss, "val_accuracy": ev.stage_accuracy[-1],
            "val_stage_losses": ev.stage_losses, "val_stage_accuracy": ev.stage_accuracy}
