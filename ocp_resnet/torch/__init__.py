"""PyTorch back-end: the same spec and objective as the CasADi solver, for larger models.

::

    from ocp_resnet.torch import ResNetMLP, ResNetV2, ConvSpec, Trainer, TrainOptions
    model = ResNetMLP.from_spec(problem.spec, dtype=torch.float64)   # twin of the CasADi model
    Trainer(problem.objective, problem.data.n_classes, TrainOptions(optimizer="adam")).fit(
        model, problem.data.X, problem.data.y)
    model.weights()   # {"block0.W": ndarray, ...}: the names of solution.npz

* :class:`ResNetMLP` — the MLP ResNet, formulas from :mod:`ocp_resnet.model.architecture` evaluated
  with the torch ops; ``state_dict`` keys are the spec's parameter names.
* :class:`ResNetV2` / :class:`ConvSpec` — a pre-activation conv ResNet with 1x1 strided
  projection skips and all stage outputs ŷ_k in one forward pass.
* :class:`StageCostLoss`, :func:`objective_and_gradient` — the objective of
  :mod:`ocp_resnet.model.objective` in torch (float64 parity with CasADi).
* :class:`Trainer`, :class:`TrainOptions` — SGD/Adam/AdamW/L-BFGS, cosine schedule, tqdm; a
  per-step callback gets a :class:`StepInfo` and may stop training.
"""
from __future__ import annotations

from ocp_resnet.torch.conv import ConvSpec, ResNetV2, images_of
from ocp_resnet.torch.evaluate import conv_evaluation, mlp_evaluation
from ocp_resnet.torch.gradient import objective_and_gradient
from ocp_resnet.torch.loss import StageCostLoss, predictions, targets, weighted_stage_cost
from ocp_resnet.torch.mlp import ResNetMLP
from ocp_resnet.torch.train import (
    OPTIMIZERS,
    SCHEDULES,
    StepCallback,
    StepInfo,
    Trainer,
    TrainOptions,
    resolve_device,
    resolve_dtype,
    split,
)

__all__ = [
    "ConvSpec",
    "OPTIMIZERS",
    "ResNetMLP",
    "ResNetV2",
    "SCHEDULES",
    "StageCostLoss",
    "StepCallback",
    "StepInfo",
    "TrainOptions",
    "Trainer",
    "conv_evaluation",
    "images_of",
    "mlp_evaluation",
    "objective_and_gradient",
    "predictions",
    "resolve_device",
    "resolve_dtype",
    "split",
    "targets",
    "weighted_stage_cost",
]
