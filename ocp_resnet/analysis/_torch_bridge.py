"""The analysis' link to the torch back-end (``ocp_resnet.torch``): training and fine-tuning.

Torch training has no optimality certificate, so its status is ``success`` only when the
final full-batch gradient norm is below ``grad_tol`` (default 1e-6), ``nan`` when training
diverged, and ``max_iter`` (ran out of epochs) otherwise — the convention of
:mod:`ocp_resnet.compare`.
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from ..errors import ValidationError

#: TrainOptions fields a sweep/prune may pass through (``--epochs`` etc.).
TRAIN_KEYS = ("optimizer", "lr", "epochs", "batch_size", "momentum", "schedule", "device", "dtype", "lbfgs_iter")
DEFAULT_GRAD_TOL = 1e-6


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
    from ocp_resnet.torch.loss import objective_and_gradient

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
    ev = problem.evaluate(weights)
    _, g = objective_and_gradient(problem, problem.spec.flatten(weights))
    gn = float(np.linalg.norm(g))
    grad_tol = float(solver.get("grad_tol", DEFAULT_GRAD_TOL))
    status = "nan" if tr.stopped_ == "nan" or not np.isfinite(ev.objective) else (
        "success" if gn <= grad_tol else "max_iter")
    metrics = {
        "objective": ev.objective, "final_loss": ev.final_loss, "stage_losses": ev.stage_losses,
        "stage_accuracy": ev.stage_accuracy, "train_accuracy": ev.stage_accuracy[-1],
        "block_norms": ev.block_norms, "residual_norms": ev.residual_norms, "grad_norm": gn,
        "status": status, "success": status == "success", "iterations": int(tr.steps_),
        "build_time_s": 0.0, "solve_time_s": wall, "method": opts.optimizer, "backend": "torch",
    }
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
