"""The stage-cost training objective (docs/theory.md, "The objective"), written once for every back-end::

    J(w) = (1/n) Σ_i [ Σ_{k<N} γ_k ℓ(ŷ_k^i, y^i) + ℓ(ŷ_N^i, y^i) ] + λ Σ ||w||²

Losses ℓ (``z`` = head output, ``t`` = target column):

* ``ce``  softmax cross-entropy  logsumexp(z) − t·z, t one-hot
* ``sce`` soft cross-entropy     KL(t ‖ softmax z) = logsumexp(z) − t·z + Σ t log t,
          t = (1−ε) onehot + ε/C; minimum 0, attained at finite logits
* ``bce`` logistic (one output)  softplus(z) − t z, t ∈ {0, 1}
* ``mse`` ½ ||z − onehot||²
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_mapping
from ocp_resnet.model import architecture as arch

LOSSES = ("ce", "bce", "mse", "sce")


@dataclass(frozen=True)
class ObjectiveSpec:
    """Loss, label smoothing ε (``sce``), stage weights γ (one number or N), weight decay λ."""

    loss: str = "ce"
    gamma: float | tuple[float, ...] = 0.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, LOSSES)
        object.__setattr__(self, "weight_decay", check_float("weight_decay", self.weight_decay, 0.0))
        object.__setattr__(self, "label_smoothing", check_float("label_smoothing", self.label_smoothing, 0.0, maximum=1.0))
        if self.loss == "sce" and self.label_smoothing <= 0.0:
            raise ValidationError("loss='sce' needs label_smoothing > 0 (e.g. 0.1); use loss='ce' for hard labels")
        g: float | tuple[float, ...]
        if isinstance(self.gamma, (list, tuple)):
            g = tuple(check_float("gamma", v, 0.0) for v in self.gamma)
        else:
            g = check_float("gamma", self.gamma, 0.0)
        object.__setattr__(self, "gamma", g)

    def stage_weights(self, n_blocks: int) -> list[float]:
        """[γ_0, …, γ_{N-1}, 1]: the weight of each stage loss ℓ(ŷ_k)."""
        if isinstance(self.gamma, tuple):
            if len(self.gamma) != n_blocks:
                raise ValidationError(
                    f"a gamma list needs one value per block ({n_blocks}), got {len(self.gamma)}; "
                    "or give one number for all stages"
                )
            return list(self.gamma) + [1.0]
        return [float(self.gamma)] * n_blocks + [1.0]

    def n_outputs(self, n_classes: int) -> int:
        """Head outputs: 1 for ``bce`` (binary only), C otherwise."""
        if self.loss == "bce":
            if n_classes != 2:
                raise ValidationError(
                    f"loss='bce' is for two classes, the data has {n_classes}: use loss='ce', loss='sce' or loss='mse'"
                )
            return 1
        return n_classes

    def targets(self, y: np.ndarray, n_classes: int) -> np.ndarray:
        """Target columns t^i, shape (outputs, n)."""
        y = np.asarray(y, dtype=int)
        if self.loss == "bce":
            return y.astype(float).reshape(1, -1)
        onehot = np.zeros((n_classes, y.size))
        onehot[y, np.arange(y.size)] = 1.0
        if self.loss == "sce":
            eps = self.label_smoothing
            return (1.0 - eps) * onehot + eps / n_classes
        return onehot

    def target_entropy(self, n_classes: int) -> float:
        """Σ t log t of the smoothed targets (the same for every sample); 0 for hard labels."""
        if self.loss != "sce":
            return 0.0
        eps = self.label_smoothing
        hi, lo = 1.0 - eps + eps / n_classes, eps / n_classes
        return hi * math.log(hi) + (n_classes - 1) * (lo * math.log(lo) if lo > 0 else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values (a γ list as a list), as ``config.json`` stores it."""
        d = asdict(self)
        if isinstance(self.gamma, tuple):
            d["gamma"] = list(self.gamma)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObjectiveSpec:
        """The spec of a :meth:`to_dict` record (unknown keys are refused)."""
        d = check_mapping("objective", d, [f.name for f in fields(cls)])
        if isinstance(d.get("gamma"), list):
            d["gamma"] = tuple(d["gamma"])
        return cls(**d)


def loss(obj: ObjectiveSpec, z: Any, t: Any, const: float, ops: Any) -> Any:
    """Per-sample loss ℓ(z, t) as a (1, n) row (columns are samples)."""
    if obj.loss == "bce":
        return ops.softplus(z) - t * z
    if obj.loss == "mse":
        r = z - t
        return 0.5 * ops.colsum(r * r)
    # ce and sce share one formula; the constant makes sce's minimum zero.
    return ops.logsumexp(z) - ops.colsum(t * z) + const


def loss_gradient(obj: ObjectiveSpec, z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """∂ℓ/∂z of :func:`loss` per sample (numpy, (outputs, n)): φ(z) − t with φ the identity
    (mse), the logistic function (bce) or the softmax over the outputs (ce, sce). Every loss is
    affine in t with slope −1 there, which the Newton path's primal-dual Hessian relies on."""
    phi: np.ndarray
    if obj.loss == "mse":
        phi = z
    elif obj.loss == "bce":
        phi = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, without overflow
    else:
        phi = softmax(z, axis=0)
    return np.asarray(phi - t)


def softmax(z: np.ndarray, axis: int) -> np.ndarray:
    """exp(z) normalised to sum to one along ``axis`` (shifted by the largest: no overflow)."""
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True))


def predictions(obj: ObjectiveSpec, z: np.ndarray) -> np.ndarray:
    """Predicted class per sample from head outputs (numpy, (outputs, n))."""
    labels: np.ndarray = (z[0] > 0).astype(int) if obj.loss == "bce" else np.argmax(z, axis=0)
    return labels


def stage_losses_per_sample(
    spec: arch.ArchSpec, obj: ObjectiveSpec, p: Mapping[str, Any], xs: Sequence[Any], t: Any, ops: Any,
    outputs: Sequence[Any] | None = None,
) -> list[Any]:
    """[ℓ(ŷ_k^i, t^i)]_k, each a (1, n) row, for the states x_0..x_N (``outputs``: their stage
    outputs ŷ_k, :func:`~ocp_resnet.model.architecture.stage_outputs`, where the caller has them)."""
    const = obj.target_entropy(spec.n_outputs if obj.loss != "bce" else 2)
    zs = arch.stage_outputs(spec, p, xs, ops) if outputs is None else outputs
    return [loss(obj, z, t, const, ops) for z in zs]


def sample_cost(
    spec: arch.ArchSpec, obj: ObjectiveSpec, p: Mapping[str, Any], xs: Sequence[Any], t: Any, ops: Any,
    gammas: Sequence[Any] | None = None, outputs: Sequence[Any] | None = None,
) -> Any:
    """Σ_k γ_k ℓ(ŷ_k^i) per sample (1, n); stages with γ_k = 0 are not even built.

    ``gammas`` replaces ``obj.stage_weights`` (N + 1 entries): the transcriptions pass symbols
    there, so one compiled function serves every γ (a number 0.0 still drops its stage).
    ``outputs``: the stage outputs of ``xs`` where the caller has them (:func:`stage_losses_per_sample`).
    """
    gammas = obj.stage_weights(spec.n_blocks) if gammas is None else list(gammas)
    per_stage = stage_losses_per_sample(spec, obj, p, xs, t, ops, outputs)
    total = 0
    for g, l in zip(gammas, per_stage):
        if not (isinstance(g, (int, float)) and g == 0.0):
            total = total + g * l
    return total


def regularization(obj: ObjectiveSpec, w: Any, ops: Any) -> Any:
    """λ Σ ||w||² over all trainable weights (w: the flat vector)."""
    return obj.weight_decay * ops.sumsqr(w)
