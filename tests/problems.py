"""Small problems with known structure, shared by the tests."""
from __future__ import annotations

import numpy as np

from ocp_resnet import Problem, load_dataset
from ocp_resnet.data.datasets import Dataset


def tiny_spirals(n: int = 24, seed: int = 0) -> Dataset:
    return load_dataset("spirals", n_samples=n, seed=seed)


def tiny_multiclass(n: int = 30, p: int = 3, classes: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = np.arange(n) % classes
    X[:, 0] += y  # separable-ish
    return Dataset(X, y, classes, "tiny")


def problem(ds: Dataset | None = None, **kw) -> Problem:
    ds = ds if ds is not None else tiny_spirals()
    defaults = dict(blocks=3, width=2, loss="mse", gamma=0.5, weight_decay=1e-3)
    defaults.update(kw)
    return Problem.build(ds, **defaults)


def random_weights(prob: Problem, seed: int = 1, scale: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(prob.spec.n_params)
