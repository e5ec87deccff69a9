"""The analysis' link to the torch back-end (``ocp_resnet.torch``): training and fine-tuning.

Torch training has no optimality certificate, so its status is ``Status.SUCCESS`` only when the
final full-batch gradient norm is below ``grad_tol`` (default 1e-6), ``Status.NAN`` when training
diverged, and ``Status.MAX_ITER`` (ran out of epochs) otherwise — the convention of
:mod:`ocp_resnet.torch.evaluate`.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ValidationError
from .settings import SolverSettings


def require() -> None:
    """Raise unless the torch back-end can train."""
    try:
        from ocp_resnet.torch import Trainer  # noqa: F401
    except ImportError:
        raise ValidationError(
            "the torch back-end (ocp_resnet.torch) is not available in this installation: use --backend casadi"
        ) from None


@dataclass
class Trained:
    """The outcome of one torch training: weights, ``metrics.json`` record, stats, solver config."""

    weights: dict
    metrics: dict
    stats: dict
    solver: dict


def fit(problem: Any, init: Any, settings: SolverSettings, log: Any) -> Trained:
    """Train ``problem`` from ``init`` ("random" or weights) with ``settings.train`` (seeded by its seed)."""
    require()
    import torch

    from ocp_resnet.torch import ResNetMLP, Trainer
    from ocp_resnet.torch.evaluate import GRAD_TOL, mlp_evaluation, training_metrics, training_status

    opts = replace(settings.train, progress=False)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(opts.seed)
    model = ResNetMLP(problem.spec, init=init, seed=opts.seed, dtype=torch.float64)
    t0 = time.perf_counter()
    tr = Trainer(problem.objective, problem.data.n_classes, opts, log=log).fit(model, problem.data.X, problem.data.y)
    wall = time.perf_counter() - t0
    weights = model.weights()
    grad_tol = GRAD_TOL if settings.grad_tol is None else settings.grad_tol
    ev = mlp_evaluation(problem, weights)
    status = training_status(ev, tr.stopped_, grad_tol)
    metrics = training_metrics(ev, status, grad_tol, iterations=int(tr.steps_), solve_time_s=wall,
                               method=opts.optimizer)
    solver = {"backend": "torch", **opts.to_dict(), "grad_tol": grad_tol}
    return Trained(weights, metrics, {"history": tr.history_[-5:], "steps": tr.steps_}, solver)


def train(problem: Any, seed: int, settings: SolverSettings, log: Any) -> Trained:
    """Train ``problem`` from the random weights of ``seed``."""
    return fit(problem, "random", settings.with_seed(seed), log)


def fine_tune(problem: Any, weights: Mapping[str, Any], settings: SolverSettings, log: Any) -> Trained:
    """Fine-tune pruned weights with the torch back-end (``settings.train``, its seed)."""
    return fit(problem, dict(weights), settings, log)
