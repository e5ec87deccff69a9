"""Multiple shooting: states x_1..x_N of every sample are variables, tied by the dynamics.

Variables are ordered sample by sample (all states of sample 1, then sample 2, …) with the
shared weights last, and each sample's constraints likewise, so the KKT matrix is an
arrowhead: independent per-sample blocks bordered by the weights. The derivatives are built
for one sample and mapped (:func:`~._common.structured_nlp`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import casadi as ca
import numpy as np

from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import CASADI, NUMPY
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


def _sample_problem(problem: Problem) -> SampleSymbols:
    """One sample's symbols (u, t, s, w), its cost and its dynamics defects G(s, w) = 0."""
    spec, obj = problem.spec, problem.objective
    u, t, w, P = sample_symbols(problem)
    widths = spec.widths
    s = ca.SX.sym("s", sum(widths[1:]))
    xs = [arch.stem(spec, P, u, CASADI)]
    off = 0
    for d in widths[1:]:
        xs.append(s[off : off + d])
        off += d
    defects = [arch.block(spec, k, P, xs[k], CASADI) - xs[k + 1] for k in range(spec.n_blocks)]
    cost = objective_mod.sample_cost(spec, obj, P, xs, t, CASADI)
    return u, t, s, w, cost, ca.vertcat(*defects) if defects else ca.SX(0, 1)


def multiple_shooting(problem: Problem, jit: bool = False, threads: int = 1) -> NLP:
    """Transcribe ``problem`` by multiple shooting."""
    check_smooth(problem)
    spec = problem.spec
    key = ("multiple-shooting", repr(spec), repr(problem.objective), problem.T.shape[0])
    sf = sample_functions(key, lambda: _sample_problem(problem), jit)
    ns, n, nw = sf.ns, problem.n_samples, spec.n_params
    parts = structured_nlp(sf, problem.U, problem.T, problem.objective.weight_decay, threads)
    g = parts["g"]

    def initial_guess(w0: np.ndarray) -> np.ndarray:
        w0 = np.asarray(w0, dtype=float).ravel()
        traj = arch.trajectory(spec, spec.unflatten(w0), problem.U, NUMPY)
        states = np.concatenate(traj[1:], axis=0) if spec.n_blocks else np.zeros((0, n))
        return np.concatenate([states.ravel(order="F"), w0])

    return NLP(
        method="multiple-shooting",
        x=parts["x"],
        f=parts["f"],
        g=g,
        lbg=np.zeros(g.numel()),
        ubg=np.zeros(g.numel()),
        n_weights=nw,
        initial_guess=initial_guess,
        weights=lambda xv: np.asarray(xv, dtype=float).ravel()[ns * n :],
        meta={"states_per_sample": ns, "jit": parts["jit"]},
        functions=parts["functions"],
    )
