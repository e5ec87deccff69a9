"""Hessian-free trust-region Newton–CG (ocp_resnet.solvers.newton_cg): products, convergence, routing."""
from __future__ import annotations

import numpy as np
import pytest

from ocp_resnet import Problem, Status
from ocp_resnet.errors import ValidationError
from ocp_resnet.model.evaluation import objective_and_gradient
from ocp_resnet.solvers import initial_weights
from ocp_resnet.solvers.newton import _derivatives, _objective, _StageFunctions, newton_solve
from ocp_resnet.solvers.newton_cg import NewtonCGOptions, _steihaug, newton_cg_solve

from .problems import SMOOTH_CONFIGS, bfgs_reference, problem, random_weights, tiny_multiclass, tiny_spirals

pytest.importorskip("torch")

CONFIGS = SMOOTH_CONFIGS


@pytest.mark.parametrize("kw", CONFIGS)
def test_hessian_vector_products_match_the_dense_hessian_and_finite_differences(kw):
    from ocp_resnet.torch.gradient import FlatObjective

    prob = problem(**kw)
    w = random_weights(prob)
    f = FlatObjective(prob)
    J_ref, g_ref = objective_and_gradient(prob, w)
    assert f.value(w) == pytest.approx(J_ref, rel=1e-13)
    np.testing.assert_allclose(f.gradient(w), g_ref, rtol=0, atol=1e-12)
    _, xs = _objective(prob, w)
    _, H, _ = _derivatives(_StageFunctions(prob), prob, w, xs)  # exact Newton's dense Hessian
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(3):
        v = rng.standard_normal(prob.spec.n_params)
        Hv = f.hvp(w, v)
        np.testing.assert_allclose(Hv, H @ v, rtol=0, atol=1e-11 * max(1.0, np.abs(H @ v).max()))
        # central differences of the (CasADi) gradient along v
        fd = (objective_and_gradient(prob, w + eps * v)[1] - objective_and_gradient(prob, w - eps * v)[1]) / (2 * eps)
        np.testing.assert_allclose(Hv, fd, rtol=0, atol=1e-6 * max(1.0, np.abs(fd).max()))
    assert f.evaluations["gradients"] == 1  # one graph served every product at w


def test_states_metric_diagonal_estimates_the_exact_one():
    from ocp_resnet.torch.gradient import FlatObjective

    prob = problem()
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    _, _, M = _derivatives(_StageFunctions(prob), prob, w, xs)
    est = FlatObjective(prob).states_metric_diagonal(w, probes=4000)
    # Hutchinson: unbiased, the error falls like 1/√probes
    np.testing.assert_allclose(est, np.diag(M), rtol=0.1)


def test_steihaug_step_solves_the_subproblem():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((8, 8))
    H = A @ A.T + 0.1 * np.eye(8)  # convex: the interior step is the Newton step
    g = rng.standard_normal(8)
    newton = -np.linalg.solve(H, g)
    path = _steihaug(g, lambda v: H @ v, np.ones(8), 10 * np.linalg.norm(newton), 50, 1e-12)
    np.testing.assert_allclose(path.step, newton, rtol=1e-8)
    assert not path.boundary and path.pred == pytest.approx(-(g @ newton + 0.5 * newton @ H @ newton), rel=1e-10)
    # a small region: the step lies on its boundary (in the scaled norm), with the model's decrease
    scale = np.linspace(1.0, 3.0, 8)
    radius = 0.1 * np.linalg.norm(newton)
    path = _steihaug(g, lambda v: H @ v, scale, radius, 50, 1e-12)
    s = path.step
    assert path.boundary and np.linalg.norm(scale * s) == pytest.approx(radius, rel=1e-10)
    assert path.pred == pytest.approx(-(g @ s + 0.5 * s @ H @ s), rel=1e-10)
    # cutting the path back gives the step of the smaller radius without new products
    path.cut(0.5 * radius, scale)
    s2 = path.step
    assert np.linalg.norm(scale * s2) == pytest.approx(0.5 * radius, rel=1e-10)
    assert path.pred == pytest.approx(-(g @ s2 + 0.5 * s2 @ H @ s2), rel=1e-10)
    # negative curvature is followed to the boundary
    Hn = H - 5.0 * np.eye(8)
    path = _steihaug(g, lambda v: Hn @ v, np.ones(8), 2.0, 50, 1e-12)
    assert path.boundary and np.linalg.norm(path.step) == pytest.approx(2.0, rel=1e-10)
    assert path.pred > 0 and path.pred == pytest.approx(-(g @ path.step + 0.5 * path.step @ Hn @ path.step), rel=1e-10)


def test_zero_blocks_is_logistic_regression():
    ds = tiny_spirals(40)
    prob = Problem.build(ds, blocks=0, width=2, loss="bce", weight_decay=1e-2)
    sol = newton_cg_solve(prob, np.zeros(prob.spec.n_params), NewtonCGOptions(tol=1e-10))
    assert sol.success and sol.method == "newton-cg"

    ref = bfgs_reference(prob)
    np.testing.assert_allclose(sol.w, ref.x, atol=1e-7)
    assert sol.objective == pytest.approx(ref.fun, rel=1e-12)


@pytest.mark.parametrize("metric", ["states", "euclidean"])
def test_agrees_with_exact_newton_from_the_same_start(metric):
    prob = problem(tiny_multiclass(), blocks=2, width=3, loss="sce", gamma=0.1, weight_decay=1e-2)
    w0 = initial_weights(prob, "random", 1)
    exact = newton_solve(prob, w0)
    lines: list[str] = []
    sol = newton_cg_solve(prob, w0, NewtonCGOptions(tol=1e-9, metric=metric), log=lines.append)
    assert exact.success and sol.status is Status.SUCCESS
    assert np.abs(objective_and_gradient(prob, sol.w)[1]).max() <= 1e-9
    assert sol.objective == pytest.approx(exact.objective, rel=1e-10)
    np.testing.assert_allclose(sol.w, exact.w, atol=1e-6)
    assert "objective" in lines[1] and len(lines) >= sol.iterations + 2


def test_callback_max_iter_and_time_limit_keep_the_last_iterate():
    prob = problem()
    w0 = initial_weights(prob, "random", 0)
    seen = []

    def stop_at_three(info):
        seen.append(info)
        return info.iteration >= 3

    sol = newton_cg_solve(prob, w0, callback=stop_at_three)
    assert sol.status is Status.INTERRUPTED and sol.stats["stopped_by"] == "callback"
    assert sol.iterations == 3 and len(seen) == 3
    np.testing.assert_array_equal(sol.w, seen[-1].w)
    sol = newton_cg_solve(prob, w0, NewtonCGOptions(max_iter=4))
    assert sol.status is Status.MAX_ITER and sol.iterations == 4
    assert sol.objective < prob.objective_value(w0)
    sol = newton_cg_solve(prob, w0, NewtonCGOptions(max_time_s=1e-9))
    assert sol.status is Status.MAX_TIME and sol.iterations == 1


def test_bad_options_and_inputs_are_refused():
    with pytest.raises(ValidationError, match="tol"):
        NewtonCGOptions(tol=0.0)
    with pytest.raises(ValidationError, match="metric"):
        NewtonCGOptions(metric="l1")
    prob = problem()
    with pytest.raises(ValidationError, match="entries"):
        newton_cg_solve(prob, np.zeros(3))
    with pytest.raises(ValidationError, match="NaN"):
        newton_cg_solve(prob, np.full(prob.spec.n_params, np.nan))
    relu = problem(activation="relu")
    with pytest.raises(ValidationError, match="twice differentiable"):
        newton_cg_solve(relu, np.zeros(relu.spec.n_params))


def test_factory_record_and_cli(tmp_path) -> None:
    import json

    from ocp_resnet.cli import main
    from ocp_resnet.solvers import Solver, make_solver, solver_from_record
    from ocp_resnet.solvers.newton_cg import NewtonCGSolver

    s = make_solver("casadi", method="newton-cg", tol=1e-9, max_iter=500, hessian="exact")
    assert isinstance(s, NewtonCGSolver) and isinstance(s, Solver)
    assert s.options.tol == 1e-9 and s.options.max_iter == 500
    assert solver_from_record(s.record()) == s
    out = tmp_path / "run"
    assert main(["solve", "--n-samples", "40", "--blocks", "3", "--method", "newton-cg", "--quiet",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["method"] == "newton-cg" and metrics["status"] == "success"
    assert config["solver"]["method"] == "newton-cg"


def test_plan_routes_problems_beyond_exact_newton_to_newton_cg():
    """By the sizes alone: the two-spirals yardstick (n = 2000, 20 blocks of width 4, p = 410) stays
    with exact Newton (measured faster there); 32 times its samples make exact Newton's iteration too
    slow and go to Newton–CG; without Newton–CG (no torch) they go to IPOPT; a small problem
    stays with exact Newton."""
    from ocp_resnet import load_dataset
    from ocp_resnet.solvers.ipopt.sizing import plan

    p2 = Problem.build(load_dataset("spirals", n_samples=2000), blocks=20, width=4)
    assert plan(p2, newton=True, newton_cg=True).method == "newton"
    big = Problem.build(load_dataset("spirals", n_samples=64000), blocks=20, width=4)
    chosen = plan(big, newton=True, newton_cg=True)
    assert chosen.method == "newton-cg" and chosen.reason.startswith("auto: newton-cg")
    assert "410x410" in chosen.reason
    assert plan(big, newton=True, newton_cg=False).method in ("multiple-shooting", "single-shooting")
    assert plan(problem(), newton=True, newton_cg=True).method == "newton"


def test_plan_sends_width_six_census_problems_to_exact_newton_and_refuses_digits_sized_ones():
    """The census problems of width 6 (p41/p42 of benchmarks/results/census-auto.jsonl: IPOPT timed
    out on both, exact Newton solved p41) go to exact Newton; a problem of the digits yardstick's
    size (8970 weights) is refused under auto with the torch route named; an explicit path is kept."""
    from ocp_resnet import load_dataset
    from ocp_resnet.solvers.ipopt.sizing import plan

    p41 = Problem.build(load_dataset("xor", n_samples=249, noise=0.1, seed=4), blocks=7, width=6, gamma=0.2,
                        weight_decay=1e-5)
    p42 = Problem.build(load_dataset("moons", n_samples=210, noise=0.05, seed=8), blocks=9, width=6, gamma=2.0,
                        weight_decay=1e-5)
    for prob in (p41, p42):
        assert plan(prob, newton=True, newton_cg=True).method == "newton"
    digits = Problem.build(load_dataset("digits"), blocks=2, width=64)
    with pytest.raises(ValidationError, match="ocp-resnet train") as err:
        plan(digits, newton=True, newton_cg=True)
    assert "8,970 weights" in str(err.value) and "method='newton-cg'" in str(err.value)
    assert plan(digits, "single-shooting", "lbfgs", newton=True, newton_cg=True).method == "single-shooting"
