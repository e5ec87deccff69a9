"""A training problem: architecture spec + objective + data, checked together in one place.

:class:`Problem` is what every transcription, solver and back-end consumes. Its numeric
methods (numpy, float64) evaluate the same formulas the NLP is built from, so stage losses,
accuracies and block norms of any weights are computed one way only.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ocp_resnet.data.arrays import Dataset, check_dataset
from ocp_resnet.errors import ValidationError
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import NUMPY
from ocp_resnet.model.evaluation import Evaluation


class Problem:
    """The stage-cost training problem for one data set.

    Parameters
    ----------
    spec, objective:
        Architecture and objective. ``spec.input_dim`` must equal the feature count and
        ``spec.n_outputs`` the head size the loss needs (``objective.n_outputs(C)``).
    data:
        The data set (``X`` (n, p), ``y`` (n,)).
    """

    def __init__(self, spec: arch.ArchSpec, objective: objective_mod.ObjectiveSpec, data: Dataset):
        check_dataset(data)
        if spec.input_dim != data.n_features:
            raise ValidationError(
                f"the spec's input_dim {spec.input_dim} does not match the data's {data.n_features} features"
            )
        need = objective.n_outputs(data.n_classes)
        if spec.n_outputs != need:
            raise ValidationError(
                f"the head has {spec.n_outputs} outputs but loss {objective.loss} on {data.n_classes} "
                f"classes needs {need}"
            )
        objective.stage_weights(spec.n_blocks)  # checks the γ list length
        self.spec = spec
        self.objective = objective
        self.data = data
        self.U = np.ascontiguousarray(data.X.T, dtype=float)  # (p, n): samples are columns
        self.T = objective.targets(data.y, data.n_classes)

    @classmethod
    def build(
        cls,
        data: Dataset,
        *,
        blocks: int = 10,
        width: int | list[int] = 2,
        branch: str = "single",
        hidden: int | None = None,
        stem: str = "pad",
        activation: str = "tanh",
        step: float = 1.0,
        loss: str = "ce",
        gamma: float | list[float] = 0.0,
        weight_decay: float = 1e-4,
        label_smoothing: float = 0.1,
    ) -> Problem:
        """Build spec and objective from flat options (the CLI's flags)."""
        obj = objective_mod.ObjectiveSpec(
            loss=loss,
            gamma=tuple(gamma) if isinstance(gamma, (list, tuple)) else gamma,
            weight_decay=weight_decay,
            label_smoothing=label_smoothing,
        )
        spec = arch.ArchSpec.uniform(
            data.n_features, obj.n_outputs(data.n_classes), blocks, width, branch, hidden, stem, activation, step
        )
        return cls(spec, obj, data)

    @property
    def n_samples(self) -> int:
        """Number of samples n."""
        return int(self.U.shape[1])

    def rows(self, samples: slice) -> Problem:
        """The same spec and objective on the samples ``samples`` of this problem's data.

        Not checked again: a slice may hold a single class. J of the whole problem is the
        sample-weighted mean of its parts' sample terms (the Newton path sums its derivatives
        over chunks of samples this way)."""
        sub = copy.copy(self)
        sub.data = dataclasses.replace(self.data, X=self.data.X[samples], y=self.data.y[samples])
        sub.U = np.ascontiguousarray(self.U[:, samples])
        sub.T = np.ascontiguousarray(self.T[:, samples])
        return sub

    # ------------------------------------------------------------------ numeric evaluation
    def params(self, w: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Named weights from a flat vector or a mapping (checked against the spec)."""
        if isinstance(w, Mapping):
            return self.spec.unflatten(self.spec.flatten(w))
        w = np.asarray(w, dtype=float).ravel()
        if w.size != self.spec.n_params:
            raise ValidationError(f"a weight vector of this spec has {self.spec.n_params} entries, got {w.size}")
        return self.spec.unflatten(w)

    def states(self, w: np.ndarray | Mapping[str, Any]) -> list[np.ndarray]:
        """Trajectories x_0..x_N, each (d_k, n)."""
        return arch.trajectory(self.spec, self.params(w), self.U, NUMPY)

    def stage_outputs(self, w: np.ndarray | Mapping[str, Any]) -> list[np.ndarray]:
        """Intermediate outputs ŷ_0..ŷ_N of the weights ``w``, each (outputs, n).

        See docs/theory.md, "Intermediate outputs".
        """
        p = self.params(w)
        return arch.stage_outputs(self.spec, p, arch.trajectory(self.spec, p, self.U, NUMPY), NUMPY)

    def objective_value(self, w: np.ndarray | Mapping[str, Any]) -> float:
        """J(w): the mean stage-weighted sample cost plus weight decay.

        See docs/theory.md, "The objective".
        """
        p = self.params(w)
        xs = arch.trajectory(self.spec, p, self.U, NUMPY)
        cost = objective_mod.sample_cost(self.spec, self.objective, p, xs, self.T, NUMPY)
        return float(np.mean(cost)) + float(objective_mod.regularization(self.objective, self.spec.flatten(p), NUMPY))

    def evaluate(self, w: np.ndarray | Mapping[str, Any]) -> Evaluation:
        """Objective, stage losses/accuracies and per-block norms of the weights ``w``."""
        spec, obj = self.spec, self.objective
        p = self.params(w)
        xs = arch.trajectory(spec, p, self.U, NUMPY)
        per_stage = objective_mod.stage_losses_per_sample(spec, obj, p, xs, self.T, NUMPY)
        stage_losses = [float(np.mean(l)) for l in per_stage]
        gammas = obj.stage_weights(spec.n_blocks)
        J = sum(g * l for g, l in zip(gammas, stage_losses)) + objective_mod.regularization(
            obj, spec.flatten(p), NUMPY
        )
        outs = arch.stage_outputs(spec, p, xs, NUMPY)
        y = self.data.y
        acc = [float(np.mean(objective_mod.predictions(obj, z) == y)) for z in outs]
        bnorms = [
            float(np.sqrt(sum(np.sum(np.square(p[n])) for n in spec.branch_names(k)))) for k in range(spec.n_blocks)
        ]
        rnorms = [
            float(np.sqrt(np.mean(np.sum(np.square(arch.branch(spec, k, p, xs[k], NUMPY)), axis=0))))
            for k in range(spec.n_blocks)
        ]
        return Evaluation(float(J), stage_losses[-1], stage_losses, acc, bnorms, rnorms)
