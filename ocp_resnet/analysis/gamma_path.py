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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ocp_resnet.analysis.blocks import DEFAULT_TOL, analyze
from ocp_resnet.analysis.restarts import RestartRecord, best_index, record, solve_restarts
from ocp_resnet.errors import ValidationError, check_float, check_int
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers import IpoptOptions, IpoptSolver, Solution, Solver, make_solver
from ocp_resnet.status import Status

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


def with_gamma(problem: Problem, gamma: float) -> Any:
    """``problem`` with one stage weight γ for every stage."""
    from ocp_resnet.model.problem import Problem

    return Problem(problem.spec, replace(problem.objective, gamma=float(gamma)), problem.data)


def check_gammas(gammas: Iterable[float]) -> list[float]:
    """The γ values as floats ≥ 0 (at least one)."""
    gammas = [check_float("gamma", g, 0.0) for g in gammas]
    if not gammas:
        raise ValidationError("a γ path needs at least one γ, e.g. gammas=[0, 0.03, 0.1, 0.3, 1]")
    return gammas


def warm_options(options: IpoptOptions | None) -> IpoptOptions:
    """``options`` with the warm-start IPOPT options added (the user's own settings win)."""
    options = options or IpoptOptions()
    return replace(options, ipopt={**WARM_START_IPOPT, **dict(options.ipopt)})


def warm_solver(solver: Solver) -> Solver:
    """The solver of a warm-started point: IPOPT with :data:`WARM_START_IPOPT` added (the user's
    own settings win); any other solver starts from the previous weights as it is."""
    from ocp_resnet.analysis.retry import RetryOnCollapse

    if isinstance(solver, RetryOnCollapse):
        return replace(solver, solver=warm_solver(solver.solver))
    if isinstance(solver, IpoptSolver):
        return replace(solver, options=warm_options(solver.options))
    return solver


def iter_path(
    problem_or_factory: Any,
    gammas: Sequence[float],
    solver: Solver | None = None,
    init: Any = "random",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    tol: float = DEFAULT_TOL,
    log: Callable[[str], None] | None = None,
) -> Iterator[tuple[float, Problem, Solution, list[RestartRecord]]]:
    """Yield ``(gamma, problem, solution, restart_records)`` point by point (see :func:`path`)."""
    gammas = check_gammas(gammas)
    restarts = check_int("restarts", restarts, 1)
    seed = check_int("seed", seed, 0)
    solver = solver or make_solver()
    factory = problem_or_factory if callable(problem_or_factory) else (lambda g: with_gamma(problem_or_factory, g))
    previous = None
    for i, g in enumerate(gammas):
        problem = factory(g)
        records: list[RestartRecord] = []
        if previous is not None and warm_start:
            sol = warm_solver(solver).solve(problem, previous)
            if restarts > 1:  # the warm start competes with K cold restarts; the best objective wins
                cold, records = solve_restarts(problem, range(seed, seed + restarts), solver, tol)
                records = [record(problem, None, sol, tol), *records]
                sol = [sol, cold][best_index([sol, cold])]
        elif restarts > 1:
            sol, records = solve_restarts(problem, range(seed, seed + restarts), solver, tol)
        else:
            sol = solver.solve(problem, init, seed)
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
    solver: Solver | None = None,
    init: Any = "random",
    seed: int = 0,
    restarts: int = 1,
    warm_start: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Solution]:
    """Solve the problem for every γ in ``gammas`` (in that order); return the Solutions.

    ``problem_or_factory`` is a :class:`~ocp_resnet.model.problem.Problem` (its stage weights are
    replaced by each γ) or a callable ``γ -> Problem``. The first point starts from ``init``
    (weights of init seed ``seed``); every later point is warm-started from the previous
    solution's NLP iterate and multipliers with :data:`WARM_START_IPOPT` added to the IPOPT
    options of ``solver`` (default: :func:`~ocp_resnet.solvers.make_solver`'s; ``warm_start=False``:
    every point starts cold from ``init``/``seed``). With ``restarts`` K > 1
    the first point keeps the best of K cold starts (init seeds seed..seed+K-1) and every later
    point the best of the warm start and those K cold starts.
    """
    return [sol for _, _, sol, _ in iter_path(problem_or_factory, gammas, solver, init, seed, restarts,
                                               warm_start, log=log)]


def _fmt_gamma(g: float) -> str:
    return f"gamma{g:g}"


@dataclass
class _PathRun:
    """A written path's fixed inputs: what every point's run directory records."""

    out: Path
    solver: Solver
    init: Any
    seed: int
    restarts: int
    warm_start: bool
    tol: float
    val: Any
    config: Mapping[str, Any] | None

    def solver_record(self, warm_from: float | None) -> dict[str, Any]:
        """The ``config.json`` solver record of a point (``warm_from``: the γ it was warm-started from)."""
        return {**self.solver.record(), "init": str(self.init),
                "seed": self.seed, "restarts": self.restarts,
                "warm_start_from": None if warm_from is None else _fmt_gamma(warm_from)}


def run_path(
    base: Any,
    gammas: Sequence[float],
    out: str | os.PathLike,
    solver: Solver | None = None,
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
    from ocp_resnet.analysis.sweep import write_csv
    from ocp_resnet.runs import check_target

    gammas = check_gammas(gammas)
    if len(set(gammas)) != len(gammas):
        raise ValidationError("gammas lists a value twice: every point of a path gets its own run directory")
    pr = _PathRun(Path(out), solver or make_solver(), init, check_int("init seed", seed, 0),
                  check_int("restarts", restarts, 1), warm_start, check_float("vanishing tol", tol, 0.0), val, config)
    pr.out = check_target(out, overwrite)  # every input is checked before anything is written
    _start(pr, gammas)
    rows: list[dict[str, Any]] = []
    analyses = []
    for g, problem, sol, records in iter_path(base, gammas, pr.solver, init, pr.seed, pr.restarts,
                                              warm_start, pr.tol, log):
        an = analyze(problem, sol.w, pr.tol, evaluation=sol.evaluation)
        rows.append(_write_point(pr, g, problem, sol, records, an, rows[-1]["gamma"] if rows else None))
        analyses.append(an)
        write_csv(pr.out / "path.csv", rows, COLUMNS)
        if sol.status == Status.INTERRUPTED:
            break
    if plot and rows:
        from ocp_resnet.plotting import plot_gamma_path

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
        json.dump({"gammas": gammas, "solver": pr.solver.record(), "init": str(pr.init),
                   "init_seed": pr.seed, "restarts": pr.restarts, "warm_start": pr.warm_start,
                   "warm_start_ipopt": WARM_START_IPOPT, "tol": pr.tol, **dict(pr.config or {})},
                  fh, indent=2, default=str)


def _write_point(pr: _PathRun, g: float, problem: Problem, sol: Solution, records: list, an: Any,
                 previous: float | None) -> dict[str, Any]:
    """Write one point's run directory; returns its ``path.csv`` row (``previous``: the γ before it)."""
    from ocp_resnet.analysis.restarts import solution_metrics
    from ocp_resnet.runs import multiplier_files, write_run

    warm_from = previous if pr.warm_start else None
    metrics = {**sol.metrics(), **solution_metrics(problem, sol, records, pr.val, analysis=an),
               "warm_started": warm_from is not None}
    extra = multiplier_files(sol)
    if pr.val is not None:
        from ocp_resnet.data.validation import val_data_file

        extra.update(val_data_file(pr.val))
    rd = pr.out / "runs" / _fmt_gamma(g)
    cfg = dict(pr.config or {})
    cfg.update(command="path", architecture=problem.spec.to_dict(), objective=problem.objective.to_dict(),
               solver=pr.solver_record(warm_from))
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
