"""Single shooting: the weights are the decision variables; states are simulated forward.

The per-sample cost (trajectory + stage costs) is one SX Function, mapped over the samples
(not inlined), so the NLP has ``n_params`` variables, no constraints and a dense Hessian; its
gradient and Hessian are differentiated for one sample and mapped
(:func:`~._common.structured_nlp`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import casadi as ca
import numpy as np

from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import CASADI
from ocp_resnet.solvers.ipopt.transcription._common import (
    NLP,
    SampleSymbols,
    check_smooth,
    sample_functions,
    sample_symbols,
    structured_nlp,
)

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem


def _sample_cost_function(problem: Problem) -> tuple[Any, Any, Any, Any]:
    """Symbols u, t, w and the per-sample cost Function (u, t, w) -> Σ_k γ_k ℓ(ŷ_k)."""
    spec, obj = problem.spec, problem.objective
    u, t, w, P = sample_symbols(problem)
    xs = arch.trajectory(spec, P, u, CASADI)
    return u, t, w, ca.Function("sample_cost", [u, t, w], [objective_mod.sample_cost(spec, obj, P, xs, t, CASADI)])


def _objective(problem: Problem, cost: Any, w: Any) -> Any:
    """J(w): the mapped per-sample cost averaged over the data, plus weight decay (SX or MX w)."""
    n = problem.n_samples
    return ca.sum2(cost.map(n)(problem.U, problem.T, w)) / n + objective_mod.regularization(problem.objective, w, CASADI)


def _sample_problem(problem: Problem) -> SampleSymbols:
    spec, obj = problem.spec, problem.objective
    u, t, w, P = sample_symbols(problem)
    xs = arch.trajectory(spec, P, u, CASADI)
    return u, t, ca.SX(0, 1), w, objective_mod.sample_cost(spec, obj, P, xs, t, CASADI), ca.SX(0, 1)


def single_shooting(problem: Problem, jit: bool = False, threads: int = 1) -> NLP:
    """Transcribe ``problem`` by single shooting."""
    check_smooth(problem)
    key = ("single-shooting", repr(problem.spec), repr(problem.objective), problem.T.shape[0])
    sf = sample_functions(key, lambda: _sample_problem(problem), jit)
    parts = structured_nlp(sf, problem.U, problem.T, problem.objective.weight_decay, threads)
    nw = problem.spec.n_params
    return NLP(
        method="single-shooting",
        x=parts["x"],
        f=parts["f"],
        g=parts["g"],
        lbg=np.zeros(0),
        ubg=np.zeros(0),
        n_weights=nw,
        initial_guess=lambda w0: np.asarray(w0, dtype=float).ravel(),
        weights=lambda x: np.asarray(x, dtype=float).ravel()[:nw],
        functions=parts["functions"],
        meta={"jit": parts["jit"]},
    )


def objective_and_gradient(problem: Problem, w: np.ndarray) -> tuple[float, np.ndarray]:
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
