"""Small problems with known structure, shared by the tests."""
from __future__ import annotations

from typing import Any

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


#: Architectures for the second-order derivative checks (kwargs of :func:`problem`): the default
#: one, projections with a linear stem, a basic branch, per-stage γ with smooth_relu.
SMOOTH_CONFIGS = [
    dict(),
    dict(width=[2, 3, 3, 4], loss="sce", gamma=0.3, stem="linear"),  # projections, linear stem
    dict(blocks=2, width=3, branch="basic", hidden=2, loss="bce", gamma=0.0, activation="softplus"),
    dict(blocks=2, width=3, loss="ce", gamma=[0.1, 0.5], activation="smooth_relu"),
]


def random_weights(prob: Problem, seed: int = 1, scale: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(prob.spec.n_params)


def bfgs_reference(prob: Problem) -> Any:
    """scipy's BFGS minimum of J from zero weights (gtol 1e-12): the known answer for problems
    without blocks, where J is convex (L2 logistic regression)."""
    import scipy.optimize

    from ocp_resnet.model.evaluation import objective_and_gradient

    return scipy.optimize.minimize(lambda v: objective_and_gradient(prob, v), np.zeros(prob.spec.n_params), jac=True,
                                   method="BFGS", options={"gtol": 1e-12})
