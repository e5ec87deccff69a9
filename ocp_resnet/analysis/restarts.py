"""Restarts: solve one problem from several initial weights, keep the best objective.

The data stay fixed; restart j starts from the random weights of init seed ``seeds[j]``, so
one plain ``solve(problem, seed=seeds[j])`` (CLI: ``solve --init-seed S+j``) reproduces it.

The restarts are independent: :func:`solve_restarts` maps a picklable one-seed solve over
the seeds with ``mapper`` (the built-in ``map``: one after the other), so a process pool's
``map`` can run them in parallel without changing anything else.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ocp_resnet.analysis.blocks import DEFAULT_TOL, vanished_blocks
from ocp_resnet.analysis.certificate import MAX_PARAMS as CERTIFICATE_MAX_PARAMS
from ocp_resnet.errors import ValidationError, check_int
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers import Solution, Solver, make_solver
from ocp_resnet.status import Status


@dataclass
class RestartRecord:
    """One restart: its init seed, objective, status and vanished blocks."""

    init_seed: int | None  # None: a warm start
    objective: float
    status: str  # a Status value
    vanished: list[int]
    #: no better than the best linear classifier (:mod:`.collapse`)
    collapsed: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return dict(self.__dict__)


def record(problem: Problem, init_seed: int | None, sol: Solution, tol: float = DEFAULT_TOL) -> RestartRecord:
    """The record of one solve (``init_seed`` None: a warm start)."""
    from ocp_resnet.analysis.collapse import collapse_record

    ev = sol.evaluation
    return RestartRecord(init_seed, float(sol.objective), sol.status.value,
                         vanished_blocks(problem.spec, ev.block_norms, ev.residual_norms, tol),
                         collapse_record(problem, ev.final_loss)["collapsed"])


def restart_seeds(init_seed: int, restarts: int) -> list[int]:
    """``[S, S+1, ..., S+K-1]``: the init seeds of ``restarts`` = K restarts from S."""
    init_seed = check_int("init seed", init_seed, 0)
    restarts = check_int("restarts", restarts, 1)
    return [init_seed + j for j in range(restarts)]


def _solve_seed(seed: int, problem: Problem, solver: Solver | None,
                log: Callable[[str], None] | None = None) -> Solution:
    """One solve from the random weights of ``seed`` (picklable for a process pool's ``map``)."""
    return (solver or make_solver()).solve(problem, "random", seed, log)


def best_index(solutions: Sequence[Any]) -> int:
    """The lowest objective among the converged solutions (among all, if none converged)."""
    import math

    def key(j: int) -> tuple:
        s = solutions[j]
        obj = s.objective if math.isfinite(s.objective) else math.inf
        return (not s.success, obj, j)

    return min(range(len(solutions)), key=key)


def solve_restarts(
    problem: Problem,
    seeds: Iterable[int],
    solver: Solver | None = None,
    tol: float = DEFAULT_TOL,
    log: Callable[[str], None] | None = None,
    mapper: Callable[..., Iterable[Any]] = map,
) -> tuple[Any, list[RestartRecord]]:
    """Solve ``problem`` from the random initial weights of every seed; return the best
    :class:`~ocp_resnet.solvers.solution.Solution` and one :class:`RestartRecord` per seed (in seed order).

    ``solver``: how every seed is solved (default :func:`~ocp_resnet.solvers.make_solver`'s, IPOPT
    with the size-aware ``auto`` path). ``tol`` is the vanishing tolerance of the records.
    ``mapper(f, seeds)`` runs the one-seed solves (default: sequentially).
    """
    seeds = [check_int("init seed", s, 0) for s in seeds]
    if not seeds:
        raise ValidationError("restarts need at least one init seed")
    fn = partial(_solve_seed, problem=problem, solver=solver)
    solutions = []
    for s, sol in zip(seeds, mapper(fn, seeds)):
        solutions.append(sol)
        if log is not None:
            log(f"restart init seed {s}: {sol.status.value}, objective {sol.objective:.10g}, "
                f"{sol.iterations} iterations")
        if sol.status == Status.INTERRUPTED:
            break  # Ctrl-C ends the restart set; the best so far is returned
    records = [record(problem, s, sol, tol) for s, sol in zip(seeds, solutions)]
    return solutions[best_index(solutions)], records


def solve_best(problem: Problem, seed: int, restarts: int = 1, solver: Solver | None = None,
               tol: float = DEFAULT_TOL, log: Callable[[str], None] | None = None) -> tuple[Solution, list[RestartRecord]]:
    """One solve from the random weights of init seed ``seed`` (no records) or, with ``restarts``
    K > 1, :func:`solve_restarts` over init seeds seed..seed+K-1."""
    seeds = restart_seeds(seed, restarts)  # checks both
    if len(seeds) > 1:
        return solve_restarts(problem, seeds, solver, tol, log)
    return _solve_seed(seed, problem, solver, log), []


def restart_metrics(records: Sequence[RestartRecord]) -> dict[str, Any]:
    """``{"restarts": [...]}`` for ``metrics.json`` when there were restarts, else ``{}``."""
    return {"restarts": [r.to_dict() for r in records]} if records else {}


def solution_metrics(problem: Problem, sol: Solution, records: Sequence[RestartRecord] = (), val: Any = None,
                     analysis: Any = None, tol: float = DEFAULT_TOL,
                     certificate_max_params: int | None = CERTIFICATE_MAX_PARAMS) -> dict[str, Any]:
    """What ``metrics.json`` adds to a solution's own record: ``vanished``, ``recommended_depth``,
    ``collapsed``/``linear_loss``, ``restarts``, the ``val_*`` numbers of held-out data ``val`` and
    ``second_order`` (:func:`ocp_resnet.analysis.certificate.certify` of the weights, its time in
    ``second_order_time_s``; skipped above ``certificate_max_params`` weights, 0 never computes it).

    ``analysis``: the solution's :class:`~.blocks.BlockAnalysis` when the caller has it already
    (otherwise it is computed at ``tol``).
    """
    from ocp_resnet.analysis.blocks import analyze
    from ocp_resnet.analysis.collapse import solution_collapse_record
    from ocp_resnet.model.evaluation import validation_metrics

    an = analyze(problem, sol.w, tol, evaluation=sol.evaluation) if analysis is None else analysis
    out: dict[str, Any] = {"vanished": an.vanished, "recommended_depth": an.recommended_depth}
    out.update(solution_collapse_record(problem, sol))
    if "collapse_attempts" in sol.stats:
        out["collapse_attempts"] = sol.stats["collapse_attempts"]
    out.update(restart_metrics(records))
    if val is not None:
        out.update(validation_metrics(problem, sol.w, val))
    if sol.status != Status.INTERRUPTED:  # an interrupted solve is no optimum: answer at once
        out.update(certificate_metrics(problem, sol.w, certificate_max_params))
    return out


def certificate_metrics(problem: Any, w: Any, max_params: int | None = CERTIFICATE_MAX_PARAMS) -> dict[str, Any]:
    """``{"second_order": record, "second_order_time_s": seconds}`` of the weights ``w``; empty when
    ``max_params`` is 0 or the weights are not finite (a failed solve's overflow has no curvature)."""
    import numpy as np

    from ocp_resnet.analysis.certificate import certify

    w = np.asarray(w, dtype=float).ravel()
    if max_params == 0 or not np.all(np.isfinite(w)):
        return {}
    cert = certify(problem, w, max_params=max_params)
    return {"second_order": cert.to_dict(timings=False), "second_order_time_s": cert.time_s}
