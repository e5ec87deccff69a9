"""Every second-order path lands on a KKT point of the multiple-shooting NLP.

The paths differ in how they step (IPOPT on the lifted NLP, trust-region Newton on the condensed
objective), so from the same start they may reach different local minima; what must hold is that
the point each returns is a local minimum for the others: IPOPT multiple shooting warm-started
there stops within a few iterations at tol 1e-8 with the same objective, and the certificate
calls it a strict local minimum. The problems are the robustness suite's (two spirals, single
tanh blocks, width 2, λ = 1e-4) scaled down to test size, one per loss.
"""
from __future__ import annotations

import numpy as np
import pytest

from ocp_resnet import IpoptOptions, Problem, Status, load_dataset, solve
from ocp_resnet.analysis.certificate import certify
from ocp_resnet.model.evaluation import objective_and_gradient
from ocp_resnet.solvers import initial_weights, make_solver

SUITE = [("bce", 1 / 11, 0), ("mse", 0.3, 1), ("sce", 1.0, 2)]


def suite_problem(loss: str, gamma: float) -> Problem:
    ds = load_dataset("spirals", n_samples=60, seed=0)
    return Problem.build(ds, blocks=5, width=2, loss=loss, gamma=gamma, weight_decay=1e-4)


@pytest.mark.parametrize("loss, gamma, seed", SUITE)
def test_newton_optimum_is_a_kkt_point_of_multiple_shooting(loss: str, gamma: float, seed: int) -> None:
    prob = suite_problem(loss, gamma)
    sol = make_solver(method="newton", tol=1e-8, print_level=0).solve(prob, "random", seed)
    assert sol.status is Status.SUCCESS
    assert np.abs(objective_and_gradient(prob, sol.w)[1]).max() <= 1e-8
    ms = solve(prob, method="multiple-shooting", init=sol.w, options=IpoptOptions(tol=1e-8))
    assert ms.success and ms.iterations <= 5
    assert ms.objective == pytest.approx(sol.objective, rel=1e-8)
    assert certify(prob, sol.w).kind == "strict local minimum"


def test_paths_from_the_same_start_reach_minima_the_certificate_accepts() -> None:
    """Newton and IPOPT multiple shooting from one start: both certified minima (which one each
    reaches may differ; neither is a saddle)."""
    prob = suite_problem("mse", 1.0)
    w0 = initial_weights(prob, "random", 3)
    for sol in (make_solver(method="newton", print_level=0).solve(prob, w0),
                solve(prob, method="multiple-shooting", init=w0, options=IpoptOptions(tol=1e-8))):
        assert sol.success, sol.method
        assert certify(prob, sol.w).kind == "strict local minimum", sol.method
