"""The analysis' link to the torch back-end (``ocp_resnet.torch``): training and fine-tuning.

Torch training has no optimality certificate, so its status is ``success`` only when the
final full-batch gradient norm is below ``grad_tol`` (default 1e-6), ``nan`` when training
diverged, and ``max_iter`` (ran out of epochs) otherwise — the convention of
:mod:`ocp_resnet.compare`.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from ..errors import ValidationError

#: TrainOptions fields a sweep/prune may pass through (``--epochs`` etc.).
TRAIN_KEYS = ("optimizer", "lr", "epochs", "batch_size", "momentum", "schedule", "device", "dtype", "lbfgs_iter")


def require() -> None:
    """Raise unless the torch back-end can train."""
    try:
        from ocp_resnet.torch import Trainer  # noqa: F401
    except ImportError:
        raise ValidationError(
            "the torch back-end (ocp_resnet.torch) is not available in this installation: use --backend casadi"
        ) from None


def _fit(problem: Any, init: Any, seed: int, solver: Mapping[str, Any], log: Any) -> tuple[dict, dict, dict, dict]:
    require()
    import torch

    from ocp_resnet.torch import ResNetMLP, Trainer, TrainOptions
    from ocp_resnet.torch.evaluate import GRAD_TOL, mlp_evaluation, training_metrics, training_status

    opts = TrainOptions(**{k: solver[k] for k in TRAIN_KEYS if k in solver and solver[k] is not None},
                        seed=seed, progress=False)
    if solver.get("threads"):
        from ..errors import check_int

        torch.set_num_threads(check_int("threads", solver["threads"], 1))
    torch.manual_seed(seed)
    model = ResNetMLP(problem.spec, init=init, seed=seed, dtype=torch.float64)
    t0 = time.perf_counter()
    tr = Trainer(problem.objective, problem.data.n_classes, opts, log=log).fit(model, problem.data.X, problem.data.y)
    wall = time.perf_counter() - t0
    weights = model.weights()
    grad_tol = float(solver.get("grad_tol", GRAD_TOL))
    ev = mlp_evaluation(problem, weights)
    status = training_status(ev, tr.stopped_, grad_tol)
    metrics = training_metrics(ev, status, grad_tol, iterations=int(tr.steps_), solve_time_s=wall,
                               method=opts.optimizer)
    solver_cfg = {"backend": "torch", **opts.to_dict(), "grad_tol": grad_tol}
    return weights, metrics, {"history": tr.history_[-5:], "steps": tr.steps_}, solver_cfg


def train(problem: Any, seed: int, solver: Mapping[str, Any], log: Any) -> tuple[dict, dict, dict]:
    """Train ``problem`` from seeded random weights; returns (weights, metrics, stats)."""
    weights, metrics, stats, _ = _fit(problem, "random", seed, solver, log)
    return weights, metrics, stats


class _Tuned:
    """What :func:`fine_tune` hands back in place of a Solution: ``weights`` and ``stats``."""

    def __init__(self, weights: dict, stats: dict) -> None:
        self.weights, self.stats = weights, stats


def fine_tune(problem: Any, weights: Mapping[str, Any], solver: Mapping[str, Any], log: Any) -> tuple[dict, Any, dict]:
    """Fine-tune pruned weights with the torch back-end; returns (info, result, solver config)."""
    cfg = {k: v for k, v in dict(solver).items() if k in TRAIN_KEYS + ("grad_tol", "threads")}
    cfg.setdefault("epochs", 50)
    seed = int(solver.get("seed", 0) or 0)
    w, metrics, stats, solver_cfg = _fit(problem, dict(weights), seed, cfg, log)
    info = {
        "backend": "torch", "method": metrics["method"], "status": metrics["status"],
        "objective": metrics["objective"], "accuracy": metrics["train_accuracy"], "grad_norm": metrics["grad_norm"],
        "iterations": metrics["iterations"], "time_s": metrics["solve_time_s"],
    }
    return info, _Tuned(w, stats), solver_cfg
