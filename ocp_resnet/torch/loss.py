"""The stage-cost objective in torch (docs/theory.md), for any model of this package::

    J(w) = (1/n) Σ_i [ Σ_{k<N} γ_k ℓ(ŷ_k^i, y^i) + ℓ(ŷ_N^i, y^i) ] + λ Σ ||w||²

The losses ℓ, the γ_k and λ come from :mod:`ocp_resnet.model.objective` (evaluated with the torch
back-end); a model supplies the per-sample stage cost through ``model.cost`` and its weights'
penalty through ``model.regularization``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import TORCH
from ocp_resnet.model.objective import ObjectiveSpec


def weighted_stage_cost(obj: ObjectiveSpec, outs: Sequence[Any], t: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Σ_k γ_k ℓ(ŷ_k, t) per sample, (1, n), from stage outputs ``outs`` (None where γ_k = 0).

    The same sum as :func:`ocp_resnet.model.objective.sample_cost`, for models whose ŷ_k are not
    produced by :func:`ocp_resnet.model.architecture.stage_outputs` (the conv net).
    """
    gammas = obj.stage_weights(len(outs) - 1)
    const = obj.target_entropy(n_classes)
    total: Any = 0
    for g, z in zip(gammas, outs):
        if g != 0.0:
            total = total + g * objective_mod.loss(obj, z, t, const, TORCH)
    return total


_GAMMA_CACHE: dict = {}


def _gamma_column(values: tuple[float, ...], dtype: torch.dtype, device: Any) -> torch.Tensor:
    """γ values as a cached (K, 1) tensor (no host-to-device copy per training step)."""
    key = (values, dtype, str(device))
    g = _GAMMA_CACHE.get(key)
    if g is None:
        if len(_GAMMA_CACHE) > 256:
            _GAMMA_CACHE.clear()
        g = _GAMMA_CACHE[key] = torch.tensor(values, dtype=dtype, device=device)[:, None]
    return g


def stacked_stage_cost(obj: ObjectiveSpec, final: torch.Tensor, Z: torch.Tensor | None, gammas: Sequence[float],
                       t: torch.Tensor, const: float) -> torch.Tensor:
    """ℓ(ŷ_N) + Σ_j γ_j ℓ(Z[:, j]) per sample, (1, n), with the stage logits stacked as Z (outputs, K, n).

    One call of ``objective.loss`` for all K stages (its formulas reduce over dim 0, so they
    apply unchanged to the stacked logits) instead of K calls: the same sum as
    :func:`ocp_resnet.model.objective.sample_cost`, with fewer, larger operations.
    """
    cost = objective_mod.loss(obj, final, t, const, TORCH)
    if Z is not None and len(gammas):
        per = objective_mod.loss(obj, Z, t[:, None, :], const, TORCH)[0]  # (K, n)
        cost = cost + (_gamma_column(tuple(gammas), per.dtype, per.device) * per).sum(dim=0, keepdim=True)
    return cost


def predictions(obj: ObjectiveSpec, z: torch.Tensor) -> torch.Tensor:
    """Predicted class per sample from head outputs (outputs, n) — torch twin of ``objective.predictions``."""
    if obj.loss == "bce":
        return (z[0] > 0).long()
    return z.argmax(dim=0)


def targets(obj: ObjectiveSpec, y: Any, n_classes: int, dtype: torch.dtype, device: Any = None) -> torch.Tensor:
    """Target rows (n, outputs) from integer labels (``ObjectiveSpec.targets`` transposed).

    Rows, so a mini-batch is ``T[idx].T``.
    """
    y = np.asarray(y.cpu() if torch.is_tensor(y) else y, dtype=int)
    return torch.as_tensor(obj.targets(y, n_classes).T.copy(), dtype=dtype, device=device)


class StageCostLoss:
    """``loss(model, inputs, t_rows)`` → (J on the batch, final logits (outputs, n)).

    ``regularization=False`` leaves λ Σ||w||² out (for AdamW, whose decoupled decay replaces it).
    ``all_stages`` asks the model for every ŷ_k, also those with γ_k = 0 (for evaluation).
    """

    def __init__(self, objective: ObjectiveSpec, n_classes: int, regularization: bool = True) -> None:
        self.objective = objective
        self.n_classes = n_classes
        self.regularization = regularization

    def __call__(self, model: Any, inputs: torch.Tensor, t_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cost, logits = model.cost(inputs, t_rows.T, self.objective)
        J = cost.mean()
        if self.regularization:
            J = J + model.regularization(self.objective)
        return J, logits
