"""The result of a solve: weights, numbers, and a status that explains itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.model.evaluation import Evaluation, metrics_record
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.solvers.base import Backend


@dataclass
class Solution:
    """A (possibly failed) solve. Failed solves keep their last iterate in ``w``.

    Learned quantities: ``weights`` (name → array), ``w`` (flat), ``evaluation`` (objective,
    stage losses/accuracies, block and residual norms), ``grad_norm`` (‖∇J(w)‖).
    """

    weights: dict[str, np.ndarray]
    w: np.ndarray
    evaluation: Evaluation
    status: Status
    iterations: int
    build_time_s: float
    solve_time_s: float
    n_variables: int
    n_constraints: int
    method: str  # the transcription (IPOPT) or the optimizer (torch)
    backend: Backend = "casadi"
    stats: dict[str, Any] = field(default_factory=dict)
    #: The full NLP iterate (weights and, for multiple shooting, the states) and IPOPT's
    #: multipliers at it: ``lam_g`` of the constraints (for multiple shooting, of the dynamics
    #: x_{k+1}^i = f_k(x_k^i, w), in the NLP's sample-by-sample order) and ``lam_x`` of the
    #: variable bounds. ``None`` where the back-end has none (torch).
    x: np.ndarray | None = None
    lam_g: np.ndarray | None = None
    lam_x: np.ndarray | None = None
    #: what the status means for this solver when it says more than ``status.message`` (a
    #: torch training that ran all its epochs names its gradient tolerance)
    status_message: str | None = None

    @property
    def success(self) -> bool:
        """Whether the solve converged (``status.success``: ``SUCCESS`` or ``ACCEPTABLE``)."""
        return self.status.success

    @property
    def objective(self) -> float:
        """J(w) at the returned weights."""
        return self.evaluation.objective

    @property
    def grad_norm(self) -> float:
        """‖∇J(w)‖ at the returned weights (``nan`` when they are not finite or it was not computed)."""
        g = self.evaluation.grad_norm
        return float("nan") if g is None else float(g)

    def metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` record (the same schema for every back-end)."""
        return metrics_record(
            self.evaluation, self.status, status_message=self.status_message,
            iterations=self.iterations,
            build_time_s=self.build_time_s,
            solve_time_s=self.solve_time_s,
            n_variables=self.n_variables,
            n_constraints=self.n_constraints,
            method=self.method,
            backend=self.backend,
        )

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
