"""J(w) and ∇J(w) of an MLP problem by torch autograd in float64: the torch twin of the CasADi
gradient, used by :func:`ocp_resnet.model.evaluation.evaluate` with ``backend="torch"``.

It imports only the model and the torch modules built from it, so the model's evaluation can
call it without an import cycle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ocp_resnet.torch.loss import StageCostLoss
from ocp_resnet.torch.mlp import ResNetMLP

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem


def objective_and_gradient(problem: Problem, w: Any, device: Any = None) -> tuple[float, np.ndarray]:
    """J(w) and ∇J(w) of an MLP :class:`~ocp_resnet.model.problem.Problem` by torch autograd, float64.

    The torch twin of :func:`ocp_resnet.solvers.ipopt.transcription.objective_and_gradient` (same flat order).
    """
    model = ResNetMLP(problem.spec, init=problem.params(w), dtype=torch.float64, device=device)
    X = torch.as_tensor(problem.U.T, dtype=torch.float64, device=device)
    T = torch.as_tensor(problem.T, dtype=torch.float64, device=device)
    J, _ = StageCostLoss(problem.objective, problem.data.n_classes)(model, X, T.T)
    model.zero_grad()
    J.backward()
    g = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                   for p in model.params().values()])
    return float(J.detach().cpu()), g.detach().cpu().numpy().astype(np.float64)
