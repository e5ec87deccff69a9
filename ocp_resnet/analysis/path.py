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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ValidationError, check_float, check_int
from ..solvers import IpoptOptions
from ..status import Status
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
    """The γ values as floats ≥ 0 (at least one)."""
    gammas = [check_float("gamma", g, 0.0) for g in gammas]
    if not gammas:
        raise ValidationError("a γ path needs at least one γ, e.g. --gammas 0,0.03,0.1,0.3,1")
    return gammas


def warm_options(options: IpoptOptions | None) -> IpoptOptions:
    """``options`` with the warm-start IPOPT options added (the user's own settings win)."""
    options = options or IpoptOptions()
    return replace(options, ipopt={**WARM_START_IPOPT, **dict(options.ipopt)})


def iter_path(
    problem_or_factory: Any,
    gammas: Sequence[float],
    method: str = "multiple-shooting",
    options: IpoptOptions | None = None,
    init: Any = "random",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    tol: float = DEFAULT_TOL,
    log: Callable[[str], None] | None = None,
):
    """Yield ``(gamma, problem, solution, restart_records)`` point by point (see :func:`path`)."""
    from ..solvers import solve

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
        if sol.status == Status.INTERRUPTED:
            return
        previous = sol


def path(
    problem_or_factory: Any,
    gammas: Sequence[float],
    method: str = "multiple-shooting",
    options: IpoptOptions | None = None,
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


@dataclass
class _PathRun:
    """A written path's fixed inputs: what every point's run directory records."""

    out: Path
    method: str
    options: Any
    init: Any
    seed: int
    restarts: int
    warm_start: bool
    tol: float
    val: Any
    config: Mapping[str, Any] | None

    def solver(self, warm_from: float | None) -> dict[str, Any]:
        """The ``config.json`` solver record of a point (``warm_from``: the γ it was warm-started from)."""
        return {"backend": "casadi", "method": self.method, **self.options.to_dict(), "init": str(self.init),
                "seed": self.seed, "restarts": self.restarts,
                "warm_start_from": None if warm_from is None else _fmt_gamma(warm_from)}


def run_path(
    base: Any,
    gammas: Sequence[float],
    out: str | os.PathLike,
    method: str = "multiple-shooting",
    options: IpoptOptions | None = None,
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
    from ..runs import check_target
    from .sweep import write_csv

    gammas = check_gammas(gammas)
    if len(set(gammas)) != len(gammas):
        raise ValidationError("--gammas lists a value twice: every point of a path gets its own run directory")
    pr = _PathRun(Path(out), method, options or IpoptOptions(), init, check_int("init seed", seed, 0),
                  check_int("restarts", restarts, 1), warm_start, check_float("vanishing tol", tol, 0.0), val, config)
    pr.out = check_target(out, overwrite)  # every input is checked before anything is written
    _start(pr, gammas)
    rows: list[dict[str, Any]] = []
    analyses = []
    for g, problem, sol, records in iter_path(base, gammas, method, pr.options, init, pr.seed, pr.restarts,
                                              warm_start, pr.tol, log):
        an = analyze(problem, sol.w, pr.tol, evaluation=sol.evaluation)
        rows.append(_write_point(pr, g, problem, sol, records, an, rows[-1]["gamma"] if rows else None))
        analyses.append(an)
        write_csv(pr.out / "path.csv", rows, COLUMNS)
        if sol.status == Status.INTERRUPTED:
            break
    if plot and rows:
        from ..plotting import plot_gamma_path

        plot_gamma_path([r["gamma"] for r in rows], [a.rel_block_norms for a in analyses], pr.out / "path.png",
                        pr.tol, collapsed=[bool(r["collapsed"]) for r in rows])
    return rows


def _start(pr: _PathRun, gammas: Sequence[float]) -> None:
    """An empty path directory (``overwrite`` checked by the caller) with ``path.json``."""
    if pr.out.exists():  # overwrite: start from an empty directory
        import shutil

        shutil.rmtree(pr.out)
    (pr.out / "runs").mkdir(parents=True)
    with open(pr.out / "path.json", "w") as fh:
        json.dump({"gammas": gammas, "method": pr.method, "options": pr.options.to_dict(), "init": str(pr.init),
                   "init_seed": pr.seed, "restarts": pr.restarts, "warm_start": pr.warm_start,
                   "warm_start_ipopt": WARM_START_IPOPT, "tol": pr.tol, **dict(pr.config or {})},
                  fh, indent=2, default=str)


def _write_point(pr: _PathRun, g: float, problem: Any, sol: Any, records: list, an: Any,
                 previous: float | None) -> dict[str, Any]:
    """Write one point's run directory; returns its ``path.csv`` row (``previous``: the γ before it)."""
    from ..runs import multiplier_files, write_run
    from .restarts import solution_metrics

    warm_from = previous if pr.warm_start else None
    metrics = {**sol.metrics(), **solution_metrics(problem, sol, records, pr.val, analysis=an),
               "warm_started": warm_from is not None}
    extra = multiplier_files(sol)
    if pr.val is not None:
        from ..validation import val_data_file

        extra.update(val_data_file(pr.val))
    rd = pr.out / "runs" / _fmt_gamma(g)
    cfg = dict(pr.config or {})
    cfg.update(command="path", architecture=problem.spec.to_dict(), objective=problem.objective.to_dict(),
               solver=pr.solver(warm_from))
    write_run(rd, config=cfg, weights=sol.weights, metrics=metrics, data=problem.data, stats=sol.stats,
              extra_files=extra)
    ev = sol.evaluation
    return {
        "gamma": g, "objective": sol.objective, "final_loss": ev.final_loss, "train_accuracy": ev.train_accuracy,
        "val_accuracy": metrics.get("val_accuracy", ""), "vanished": " ".join(map(str, an.vanished)),
        "n_vanished": an.n_vanished, "recommended_depth": an.recommended_depth, "collapsed": metrics["collapsed"],
        "iterations": sol.iterations, "status": sol.status.value, "solve_time_s": sol.solve_time_s,
        "rel_block_norms": an.rel_block_norms, "run_dir": str(rd),
    }
