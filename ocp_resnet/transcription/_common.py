"""What every transcription shares: the NLP container and the per-sample symbols."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import casadi as ca
import numpy as np

from .. import architecture as arch
from ..architecture import SMOOTH_ACTIVATIONS
from ..errors import ValidationError


@dataclass
class NLP:
    """min f(x) s.t. lbg <= g(x) <= ubg, as CasADi SX expressions.

    ``initial_guess(w)`` lifts weights to a full x0 (simulating states where needed) and
    ``weights(x)`` extracts the flat weight vector from a solution vector.
    """

    method: str
    x: Any
    f: Any
    g: Any
    lbg: np.ndarray
    ubg: np.ndarray
    n_weights: int
    initial_guess: Callable[[np.ndarray], np.ndarray]
    weights: Callable[[np.ndarray], np.ndarray]
    meta: dict = field(default_factory=dict)

    @property
    def n_variables(self) -> int:
        return int(self.x.numel())

    @property
    def n_constraints(self) -> int:
        return int(self.g.numel())

    def jacobian_nnz(self) -> int:
        """Non-zeros of the constraint Jacobian (from the sparsity pattern, no derivatives built)."""
        if self.n_constraints == 0:
            return 0
        return int(ca.jacobian_sparsity(self.g, self.x).nnz())


def check_smooth(problem) -> None:
    """IPOPT needs twice-differentiable activations."""
    if problem.spec.activation not in SMOOTH_ACTIVATIONS:
        raise ValidationError(
            f"activation {problem.spec.activation!r} is not twice differentiable, so IPOPT cannot use it: "
            f"use one of {', '.join(SMOOTH_ACTIVATIONS)} (relu is for the torch back-end)"
        )


def sample_symbols(problem) -> tuple[Any, Any, Any, dict]:
    """Symbols of one sample's input u and target t, the flat weights w and named params."""
    spec = problem.spec
    u = ca.SX.sym("u", spec.input_dim)
    t = ca.SX.sym("t", problem.T.shape[0])
    w = ca.SX.sym("w", spec.n_params)
    from .._ops import CASADI

    return u, t, w, spec.unflatten(w, CASADI)
