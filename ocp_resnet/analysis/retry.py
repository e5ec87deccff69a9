"""No collapsed model handed back silently: a solver that starts again when a solve collapses.

A solve *collapses* when it ends at the best linear classifier's loss (:mod:`.collapse`): a
near-linear local optimum that every non-convex training problem has. :class:`RetryOnCollapse`
wraps any :class:`~ocp_resnet.solvers.Solver`; after a collapsed solve it solves again from the
random initial weights of fresh init seeds (``seed + j·RETRY_SEED_STRIDE``, j = 1..retries), says
so in the log, records every attempt in ``stats["collapse_attempts"]`` and returns the first
attempt that did not collapse — or, when all did, the one with the lowest objective (then
reported ``collapsed: true``). Restarts (best of K init seeds) compose with it: each restart is
retried on its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ocp_resnet.analysis.collapse import head_ranks
from ocp_resnet.errors import check_int
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers import Backend, Init, Log, Solution, Solver, make_solver
from ocp_resnet.status import Status

#: Fresh starts after a collapsed solve before a collapsed result is returned (the default of
#: every command and of the estimator; 0 switches retries off).
COLLAPSE_RETRIES = 3
#: Init seeds of the retries: far from the seeds s..s+K-1 that restarts use.
RETRY_SEED_STRIDE = 1000


def _collapse(problem: Problem, sol: Solution) -> dict[str, Any]:
    from ocp_resnet.analysis.collapse import solution_collapse_record

    return solution_collapse_record(problem, sol)


@dataclass(frozen=True)
class RetryOnCollapse:
    """``solver`` with up to ``retries`` fresh starts after a collapsed solve (see the module)."""

    solver: Solver = field(default_factory=make_solver)
    retries: int = COLLAPSE_RETRIES

    def __post_init__(self) -> None:
        check_int("retries", self.retries, 0)

    @property
    def backend(self) -> Backend:
        """The wrapped solver's back-end."""
        return self.solver.backend

    @property
    def name(self) -> str:
        """The wrapped solver's name."""
        return self.solver.name

    def record(self) -> dict[str, Any]:
        """The wrapped solver's record plus ``collapse_retries``."""
        return {**self.solver.record(), "collapse_retries": self.retries}

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """Solve; after a collapsed result solve again from fresh random weights (see the module)."""
        sol = self.solver.solve(problem, init, seed, log)
        if self.retries == 0 or problem.spec.n_blocks == 0 or sol.status == Status.INTERRUPTED:
            return sol  # a linear model cannot do better than the linear classifier
        rec = _collapse(problem, sol)
        attempts = [self._attempt(init, seed, sol, rec)]
        tried = [sol]
        j = 0
        ranks = head_ranks(problem.spec, problem.data.n_classes)
        if rec["collapsed"] and ranks is not None:  # a limit of the architecture, not of the start (narrow_head)
            if log is not None:
                log(f"collapsed: final loss {sol.evaluation.final_loss:.6g} is the best linear classifier's "
                    f"({rec['linear_loss']:.6g}); no retries: with width < {ranks[1]} for "
                    f"{problem.data.n_classes} classes fresh starts seldom do better")
            return sol
        while rec["collapsed"] and j < self.retries:
            j += 1
            s = seed + j * RETRY_SEED_STRIDE
            if log is not None:
                log(f"collapsed: final loss {sol.evaluation.final_loss:.6g} is the best linear classifier's "
                    f"({rec['linear_loss']:.6g}); trying again from the random weights of init seed {s} "
                    f"(attempt {j + 1} of at most {self.retries + 1})")
            sol = self.solver.solve(problem, "random", s, log)
            if sol.status == Status.INTERRUPTED:
                break
            rec = _collapse(problem, sol)
            attempts.append(self._attempt("random", s, sol, rec))
            tried.append(sol)
        if len(attempts) == 1:
            return sol
        if rec["collapsed"] and sol.status != Status.INTERRUPTED:  # every attempt collapsed: the best of them
            sol = min(tried, key=lambda t: t.objective if math.isfinite(t.objective) else math.inf)
            if log is not None:
                log(f"every one of {len(attempts)} attempts collapsed: returning the lowest objective")
        return replace(sol, stats={**sol.stats, "collapse_attempts": attempts})

    @staticmethod
    def _attempt(init: Init, seed: int, sol: Solution, rec: dict[str, Any]) -> dict[str, Any]:
        return {"init": str(init) if isinstance(init, str) else "given", "init_seed": seed,
                "objective": sol.objective, "status": sol.status.value, "collapsed": rec["collapsed"]}
