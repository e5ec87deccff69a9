"""A γ path: the stage-cost problem solved for a list of stage weights, each point warm-started
from the previous one (primal iterate *and* IPOPT multipliers), like a regularisation path.

    sols = ocp_resnet.path(problem, [0, 0.03, 0.1, 0.3, 1])

The points are solved in the given order. :func:`run_path` also writes one normal run
directory per point (``analyze``, ``prune`` and ``evaluate`` work on it), ``path.csv`` and
``path.png`` (relative block norms against γ).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..errors import ValidationError, check_float, check_int
from .blocks import DEFAULT_TOL, analyze
from .restarts import RestartRecord, best_index, record, solve_restarts

#: IPOPT options of a warm-started path point. Without ``warm_start_init_point`` IPOPT ignores
#: the given multipliers and computes least-squares ones. Measured on 5 problems (γ path
#: 0, 0.03, 0.1, 0.3, 1; docs/vanishing.md "γ path"): 617 IPOPT iterations in total with the
#: multipliers, 639 from the primal iterate alone, 1327 cold. The barrier and bound-push options
#: (``mu_init``, ``warm_start_bound_push``, ...) change nothing here: the NLP has neither variable
#: bounds nor inequalities (mu_init 1e-2…1e-8 gave identical iterates).
WARM_START_IPOPT: dict[str, Any] = {"warm_start_init_point": "yes"}

#: Columns of ``path.csv`` (lists ';'-joined).
COLUMNS = ("gamma", "objective", "final_loss", "train_accuracy", "val_accuracy", "vanished", "n_vanished",
           "recommended_depth", "collapsed", "iterations", "status", "solve_time_s", "rel_block_norms", "run_dir")


def with_gamma(problem: Any, gamma: float) -> Any:
    """``problem`` with one stage weight γ for every stage."""
    from ..problem import Problem

    return Problem(problem.spec, replace(problem.objective, gamma=float(gamma)), problem.data)


def check_gammas(gammas: Iterable[float]) -> list[float]:
    gammas = [check_float("gamma", g, 0.0) for g in gammas]
    if not gammas:
        raise ValidationError("a γ path needs at least one γ, e.g. --gammas 0,0.03,0.1,0.3,1")
    return gammas


def warm_options(options: Any) -> Any:
    """``options`` with the warm-start IPOPT options added (the user's own settings win)."""
    from ..solvers import IpoptOptions

    options = options or IpoptOptions()
    return replace(options, ipopt={**WARM_START_IPOPT, **dict(options.ipopt)})


def iter_path(
    problem_or_factory: Any,
    gammas: Sequence[float],
    method: str = "multiple-shooting",
    options: Any = None,
    init: Any = "random",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    tol: float = DEFAULT_TOL,
    log: Callable[[str], None] | None = None,
):
    """Yield ``(gamma, problem, solution, restart_records)`` point by point (see :func:`path`)."""
    from ..solvers import IpoptOptions, solve

    gammas = check_gammas(gammas)
    restarts = check_int("restarts", restarts, 1)
    seed = check_int("seed", seed, 0)
    options = options or IpoptOptions()
    factory = problem_or_factory if callable(problem_or_factory) else (lambda g: with_gamma(problem_or_factory, g))
    previous = None
    for i, g in enumerate(gammas):
        problem = factory(g)
        records: list[RestartRecord] = []
        if previous is not None and warm_start:
            sol = solve(problem, method=method, options=warm_options(options), init=previous)
            if restarts > 1:  # the warm start competes with K cold restarts; the best objective wins
                cold, records = solve_restarts(problem, range(seed, seed + restarts), method, options, tol)
                records = [record(problem, None, sol, tol), *records]
                sol = [sol, cold][best_index([sol, cold])]
        elif restarts > 1:
            sol, records = solve_restarts(problem, range(seed, seed + restarts), method, options, tol)
        else:
            sol = solve(problem, method=method, options=options, init=init, seed=seed)
        if log is not None:
            log(f"[{i + 1}/{len(gammas)}] gamma {g:g}: {sol.status.value}, J {sol.objective:.8g}, "
                f"final loss {sol.evaluation.final_loss:.6g}, {sol.iterations} iterations, {sol.solve_time_s:.2f}s")
        yield g, problem, sol, records
        if sol.status.value == "interrupted":
            return
        previous = sol


def path(
    problem_or_factory: Any,
    gammas: Sequence[float],
    method: str = "multiple-shooting",
    options: Any = None,
    init: Any = "random",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Any]:
    """Solve the problem for every γ in ``gammas`` (in that order); return the Solutions.

    ``problem_or_factory`` is a :class:`~ocp_resnet.problem.Problem` (its stage weights are
    replaced by each γ) or a callable ``γ -> Problem``. The first point starts from ``init``
    (weights of init seed ``seed``); every later point is warm-started from the previous
    solution's NLP iterate and multipliers with :data:`WARM_START_IPOPT` added to ``options``
    (``warm_start=False``: every point starts cold from ``init``/``seed``). With ``restarts`` K > 1
    the first point keeps the best of K cold starts (init seeds seed..seed+K-1) and every later
    point the best of the warm start and those K cold starts.
    """
    return [sol for _, _, sol, _ in iter_path(problem_or_factory, gammas, method, options, init, seed, restarts,
                                               warm_start, log=log)]


def _fmt_gamma(g: float) -> str:
    return f"gamma{g:g}"


def run_path(
    base: Any,
    gammas: Sequence[float],
    out: str | os.PathLike,
    method: str = "multiple-shooting",
    options: Any = None,
    init: Any = "random",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    tol: float = DEFAULT_TOL,
    val: Any = None,
    config: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`path` writing ``out/runs/gamma{γ}/`` run directories, ``out/path.csv`` and ``out/path.png``.

    ``val`` (a Dataset) adds held-out stage losses/accuracies to every point's metrics.
    Returns the ``path.csv`` rows.
    """
    from ..runs import check_target, multiplier_files, write_run
    from ..solvers import IpoptOptions
    from .collapse import solution_collapse_record
    from .sweep import write_csv

    gammas = check_gammas(gammas)
    if len(set(gammas)) != len(gammas):
        raise ValidationError("--gammas lists a value twice: every point of a path gets its own run directory")
    options = options or IpoptOptions()
    restarts, seed = check_int("restarts", restarts, 1), check_int("init seed", seed, 0)
    tol = check_float("vanishing tol", tol, 0.0)
    out = check_target(out, overwrite)  # every input is checked before anything is written
    if out.exists():  # overwrite: start from an empty directory
        import shutil

        shutil.rmtree(out)
    (out / "runs").mkdir(parents=True)
    with open(out / "path.json", "w") as fh:
        json.dump({"gammas": gammas, "method": method, "options": options.to_dict(), "init": str(init),
                   "init_seed": seed, "restarts": restarts, "warm_start": warm_start,
                   "warm_start_ipopt": WARM_START_IPOPT, "tol": tol, **dict(config or {})}, fh, indent=2, default=str)
    rows: list[dict[str, Any]] = []
    analyses = []
    for g, problem, sol, records in iter_path(base, gammas, method, options, init, seed, restarts, warm_start, tol, log):
        an = analyze(problem, sol.w, tol)
        metrics = sol.metrics()
        metrics.update(solution_collapse_record(problem, sol))
        metrics.update(vanished=an.vanished, recommended_depth=an.recommended_depth,
                       warm_started=bool(warm_start and rows))
        if records:
            metrics["restarts"] = [r.to_dict() for r in records]
        extra = multiplier_files(sol)
        if val is not None:
            from ..validation import val_data_file, validation_metrics

            metrics.update(validation_metrics(problem, sol.w, val))
            extra.update(val_data_file(val))
        rd = out / "runs" / _fmt_gamma(g)
        cfg = dict(config or {})
        cfg.update(command="path", architecture=problem.spec.to_dict(), objective=problem.objective.to_dict(),
                   solver={"backend": "casadi", "method": method, **options.to_dict(), "init": str(init),
                           "seed": seed, "restarts": restarts,
                           "warm_start_from": _fmt_gamma(rows[-1]["gamma"]) if rows and warm_start else None})
        write_run(rd, config=cfg, weights=sol.weights, metrics=metrics, data=problem.data, stats=sol.stats,
                  extra_files=extra)
        rows.append({
            "gamma": g, "objective": sol.objective, "final_loss": sol.evaluation.final_loss,
            "train_accuracy": sol.evaluation.stage_accuracy[-1], "val_accuracy": metrics.get("val_accuracy", ""),
            "vanished": " ".join(map(str, an.vanished)), "n_vanished": an.n_vanished,
            "recommended_depth": an.recommended_depth, "collapsed": metrics["collapsed"],
            "iterations": sol.iterations, "status": sol.status.value, "solve_time_s": sol.solve_time_s,
            "rel_block_norms": an.rel_block_norms, "run_dir": str(rd),
        })
        analyses.append(an)
        write_csv(out / "path.csv", rows, COLUMNS)
        if sol.status.value == "interrupted":
            break
    if plot and rows:
        from ..plotting import plot_gamma_path

        plot_gamma_path([r["gamma"] for r in rows], [a.rel_block_norms for a in analyses], out / "path.png", tol,
                        collapsed=[bool(r["collapsed"]) for r in rows])
    return rows
