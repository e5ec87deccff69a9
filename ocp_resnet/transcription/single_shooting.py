"""Single shooting: the weights are the decision variables; states are simulated forward.

The per-sample cost (trajectory + stage costs) is one SX Function, mapped over the samples and
inlined, so the NLP has ``n_params`` variables, no constraints and a dense Hessian.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import casadi as ca
import numpy as np

from .. import architecture as arch
from .. import objective as objective_mod
from .._ops import CASADI
from ._common import NLP, check_smooth, sample_symbols


def _sample_cost_function(problem) -> tuple[Any, Any, Any, Any]:
    """Symbols u, t, w and the per-sample cost Function (u, t, w) -> Σ_k γ_k ℓ(ŷ_k)."""
    spec, obj = problem.spec, problem.objective
    u, t, w, P = sample_symbols(problem)
    xs = arch.trajectory(spec, P, u, CASADI)
    return u, t, w, ca.Function("sample_cost", [u, t, w], [objective_mod.sample_cost(spec, obj, P, xs, t, CASADI)])


def _objective(problem, cost: Any, w: Any) -> Any:
    """J(w): the mapped per-sample cost averaged over the data, plus weight decay (SX or MX w)."""
    n = problem.n_samples
    return ca.sum2(cost.map(n)(problem.U, problem.T, w)) / n + objective_mod.regularization(problem.objective, w, CASADI)


def _objective_expr(problem) -> tuple[Any, Any]:
    u, t, w, cost = _sample_cost_function(problem)
    return w, _objective(problem, cost, w)


def single_shooting(problem) -> NLP:
    """Transcribe ``problem`` by single shooting."""
    check_smooth(problem)
    w, J = _objective_expr(problem)
    nw = problem.spec.n_params
    return NLP(
        method="single-shooting",
        x=w,
        f=J,
        g=ca.SX(0, 1),
        lbg=np.zeros(0),
        ubg=np.zeros(0),
        n_weights=nw,
        initial_guess=lambda w0: np.asarray(w0, dtype=float).ravel(),
        weights=lambda x: np.asarray(x, dtype=float).ravel()[:nw],
    )


def objective_and_gradient(problem, w: np.ndarray) -> tuple[float, np.ndarray]:
    """J(w) and ∇J(w) by CasADi's algorithmic differentiation (float64).

    Built in MX over the mapped per-sample SX function (no expansion), so building is cheap;
    the Function is cached on the problem.
    """
    fn = problem.__dict__.get("_casadi_grad_fn")
    if fn is None:
        cost = _sample_cost_function(problem)[3]
        wm = ca.MX.sym("w", problem.spec.n_params)
        J = _objective(problem, cost, wm)
        fn = ca.Function("J_grad", [wm], [J, ca.gradient(J, wm)])
        problem.__dict__["_casadi_grad_fn"] = fn
    J, g = fn(np.asarray(w, dtype=float).ravel())
    return float(J), np.asarray(g).ravel()
