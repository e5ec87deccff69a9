"""Flags and steps shared by ``solve``, ``path`` and ``sweep``: init seed, restarts, held-out data.

Kept out of the command modules so that each command only adds the flags and one call.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

from . import _common as c


def add_robust_args(p: argparse.ArgumentParser, restarts: bool = True) -> None:
    g = p.add_argument_group("initial weights and held-out data")
    g.add_argument("--init-seed", type=int, default=None,
                   help="seed of the random initial weights alone (default: --seed); the data stay those of --seed")
    if restarts:
        g.add_argument("--restarts", type=int, default=1,
                       help="solve from K initial weights (init seeds S..S+K-1) and keep the best objective; "
                            "restart j is reproduced by a plain solve with --init-seed S+j (default 1)")
    g.add_argument("--val-fraction", type=float, default=None,
                   help="hold out this fraction of the data (stratified, seeded by --seed); the objective uses "
                        "the rest, validation loss/accuracy are reported per stage")


def init_seed(args: argparse.Namespace) -> int:
    from ..errors import check_int

    return check_int("--init-seed", args.seed if args.init_seed is None else args.init_seed, 0)


def split_problem(args: argparse.Namespace, problem: Any) -> tuple[Any, Any]:
    """(training problem, validation Dataset or None) per ``--val-fraction``."""
    if getattr(args, "val_fraction", None) is None:
        return problem, None
    from ..problem import Problem
    from ..validation import split

    train, val = split(problem.data, args.val_fraction, seed=args.seed)
    return Problem(problem.spec, problem.objective, train), val


def solve_with_restarts(args: argparse.Namespace, problem: Any, options: Any, method: str,
                        init: Any = "random", log: Callable[[str], None] | None = None,
                        solve_fn: Callable[..., Any] | None = None) -> tuple[Any, list]:
    """One solve (``--restarts 1``) or the best of K restarts; returns (solution, restart records)."""
    from ..analysis.restarts import restart_seeds, solve_restarts
    from ..errors import ValidationError

    seed = init_seed(args)
    k = int(getattr(args, "restarts", 1) or 1)
    if k == 1:
        if solve_fn is None:
            from ..solvers import solve as solve_fn
        return solve_fn(problem, method=method, options=options, init=init, seed=seed, log=log), []
    if str(init) != "random":
        raise ValidationError("--restarts draws random initial weights: drop --init, or use --restarts 1")
    seeds = restart_seeds(seed, k)
    return solve_restarts(problem, seeds, method, options, log=log)


def extra_metrics(problem: Any, sol: Any, records: list, val: Any, tol: float = 1e-3) -> dict[str, Any]:
    """``vanished``, ``recommended_depth``, ``collapsed``/``linear_loss``, ``restarts`` and ``val_*``."""
    from ..analysis.restarts import solution_metrics

    return solution_metrics(problem, sol, records, val, tol=tol)


def extra_files(val: Any) -> dict[str, Any]:
    if val is None:
        return {}
    from ..validation import val_data_file

    return val_data_file(val)


def report(metrics: dict[str, Any]) -> None:
    """Print restarts, held-out table and collapse warning after the solve table."""
    if metrics.get("restarts"):
        best = min(metrics["restarts"], key=lambda r: (r["status"] not in ("success", "acceptable"), r["objective"]))
        print("restarts: " + ", ".join(
            f"{'warm start' if r['init_seed'] is None else 'seed %d' % r['init_seed']}: {r['objective']:.8g} "
            f"({r['status']}, {len(r['vanished'])} vanished{', collapsed' if r.get('collapsed') else ''})"
            for r in metrics["restarts"]) + f"; kept {'the warm start' if best['init_seed'] is None else 'init seed %d' % best['init_seed']}")
    if "val_stage_losses" in metrics:
        from ..validation import format_val_table

        print(format_val_table(metrics))
    if metrics.get("collapsed"):
        c.warn(f"collapsed: final loss {metrics['final_loss']:.6g} is no better than the best linear classifier's "
               f"{metrics['linear_loss']:.6g}: the small blocks are not a depth recommendation "
               "(try --restarts 4, or ocp-resnet path)")
