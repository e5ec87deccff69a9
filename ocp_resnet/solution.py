"""The result of a solve: weights, numbers, and a status that explains itself."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .problem import Evaluation


class Status(str, enum.Enum):
    """How a solve ended. ``status.message`` says what it means and what to do."""

    SUCCESS = "success"
    ACCEPTABLE = "acceptable"
    MAX_ITER = "max_iter"
    MAX_TIME = "max_time"
    RESTORATION_FAILED = "restoration_failed"
    INFEASIBLE = "infeasible"
    NAN = "nan"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def success(self) -> bool:
        return self in (Status.SUCCESS, Status.ACCEPTABLE)

    @classmethod
    def from_ipopt(cls, return_status: str) -> "Status":
        return _IPOPT.get(return_status, cls.ERROR)


_MESSAGES = {
    Status.SUCCESS: "converged: the KKT conditions hold to the requested tolerance",
    Status.ACCEPTABLE: "converged to IPOPT's looser 'acceptable' tolerance only; tighten nothing, but check the gradient norm",
    Status.MAX_ITER: "stopped at the iteration limit before converging; raise --max-iter or warm-start from this run with --init",
    Status.MAX_TIME: "stopped at the time limit before converging; raise the limit or warm-start from this run",
    Status.RESTORATION_FAILED: "IPOPT's restoration phase failed (usually a poor start or bad scaling); try another --seed, --init zeros, or --hessian lbfgs",
    Status.INFEASIBLE: "IPOPT judged the constraints infeasible, which should not happen for this problem; report it",
    Status.NAN: "an evaluation produced NaN or inf; lower --step or the initial scale, or standardise the data",
    Status.INTERRUPTED: "interrupted by the user (Ctrl-C or a callback); the last iterate was kept: continue with --init RUN_DIR",
    Status.ERROR: "the solver stopped with an error; see stats.json for IPOPT's return status",
}

_IPOPT = {
    "Solve_Succeeded": Status.SUCCESS,
    "Solved_To_Acceptable_Level": Status.ACCEPTABLE,
    "Maximum_Iterations_Exceeded": Status.MAX_ITER,
    "Maximum_CpuTime_Exceeded": Status.MAX_TIME,
    "Maximum_WallTime_Exceeded": Status.MAX_TIME,
    "Restoration_Failed": Status.RESTORATION_FAILED,
    "Infeasible_Problem_Detected": Status.INFEASIBLE,
    "Invalid_Number_Detected": Status.NAN,
    "User_Requested_Stop": Status.INTERRUPTED,
}


@dataclass
class Solution:
    """A (possibly failed) solve. Failed solves keep their last iterate in ``w``.

    Learned quantities: ``weights`` (name → array), ``w`` (flat), ``evaluation`` (objective,
    stage losses/accuracies, block and residual norms), ``grad_norm`` (‖∇J(w)‖).
    """

    weights: dict[str, np.ndarray]
    w: np.ndarray
    evaluation: Evaluation
    grad_norm: float
    status: Status
    iterations: int
    build_time_s: float
    solve_time_s: float
    n_variables: int
    n_constraints: int
    method: str
    backend: str = "casadi"
    stats: dict = field(default_factory=dict)
    #: The full NLP iterate (weights and, for multiple shooting, the states) and IPOPT's
    #: multipliers at it: ``lam_g`` of the constraints (for multiple shooting, of the dynamics
    #: x_{k+1}^i = f_k(x_k^i, w), in the NLP's sample-by-sample order) and ``lam_x`` of the
    #: variable bounds. ``None`` where the back-end has none (torch).
    x: np.ndarray | None = None
    lam_g: np.ndarray | None = None
    lam_x: np.ndarray | None = None

    @property
    def success(self) -> bool:
        return self.status.success

    @property
    def objective(self) -> float:
        return self.evaluation.objective

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` record (the same schema for every back-end)."""
        ev = self.evaluation
        return {
            **ev.metrics(),
            "grad_norm": self.grad_norm,
            "status": self.status.value,
            "status_message": self.status.message,
            "success": self.success,
            "iterations": self.iterations,
            "build_time_s": self.build_time_s,
            "solve_time_s": self.solve_time_s,
            "n_variables": self.n_variables,
            "n_constraints": self.n_constraints,
            "method": self.method,
            "backend": self.backend,
        }

    def __repr__(self) -> str:
        return (
            f"Solution(status={self.status.value!r}, objective={self.objective:.10g}, "
            f"grad_norm={self.grad_norm:.3g}, iterations={self.iterations}, method={self.method!r})"
        )


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` without its wall-clock fields (every key ending in ``_s``, e.g. ``solve_time_s``).

    Everything else in ``metrics.json`` is deterministic: two runs with the same seed on the same
    CPU build write identical numbers (tests/test_determinism.py).
    """
    return {k: v for k, v in metrics.items() if not k.endswith("_s")}


class SolveError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` on failure; ``.solution`` holds the last iterate."""

    def __init__(self, solution: Solution):
        super().__init__(f"solve failed: {solution.status.value}: {solution.status.message}")
        self.solution = solution
