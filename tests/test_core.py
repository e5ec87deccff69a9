"""Known-answer and consistency tests of the CasADi core."""
from __future__ import annotations

import casadi as ca
import numpy as np
import pytest
from scipy.optimize import minimize

from ocp_resnet import IpoptOptions, ObjectiveSpec, Problem, load_dataset, solve
from ocp_resnet.model import architecture as arch
from ocp_resnet.model._ops import NUMPY
from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient, transcribe

from .problems import problem, random_weights, tiny_multiclass, tiny_spirals

SPEC_VARIANTS = [
    dict(blocks=3, width=2, branch="single", loss="mse"),
    dict(blocks=2, width=3, branch="basic", hidden=4, loss="ce", activation="softplus"),
    dict(blocks=3, width=[2, 3, 3, 2], branch="single", loss="sce", gamma=[0.1, 0.5, 1.0]),
    dict(blocks=2, width=[4, 2, 3], branch="basic", stem="linear", loss="bce", activation="smooth_relu"),
    dict(blocks=0, width=2, loss="bce"),
]


def nlp_objective(prob: Problem, method: str, w: np.ndarray) -> float:
    nlp = transcribe(prob, method)
    return float(ca.Function("f", [nlp.x], [nlp.f])(nlp.initial_guess(w)))


# ----------------------------------------------------------------------------- known answer
def test_zero_blocks_is_l2_logistic_regression():
    """N = 0, bce: J(W, b) = mean softplus(z) − y z + λ(|W|² + b²), solved by scipy."""
    ds = load_dataset("moons", n_samples=80, noise=0.3, seed=2)
    lam = 1e-2
    prob = Problem.build(ds, blocks=0, width=2, loss="bce", weight_decay=lam)
    sol = solve(prob, "single-shooting", IpoptOptions(tol=1e-12))
    assert sol.success

    X, y = ds.X, ds.y

    def f(v):
        z = X @ v[:2] + v[2]
        return np.mean(np.logaddexp(0, z) - y * z) + lam * np.sum(v**2)

    def g(v):
        z = X @ v[:2] + v[2]
        r = (1 / (1 + np.exp(-z)) - y) / len(y)
        return np.concatenate([X.T @ r, [r.sum()]]) + 2 * lam * v

    ref = minimize(f, np.zeros(3), jac=g, method="BFGS", options={"gtol": 1e-12})
    ours = np.concatenate([sol.weights["head.W"].ravel(), sol.weights["head.b"]])
    np.testing.assert_allclose(ours, ref.x, atol=1e-6)
    assert abs(sol.objective - ref.fun) < 1e-10
    # the multiple-shooting transcription of N = 0 has no states and gives the same optimum
    sol_ms = solve(prob, "multiple-shooting", IpoptOptions(tol=1e-12))
    np.testing.assert_allclose(sol_ms.w, sol.w, atol=1e-8)


# ----------------------------------------------------------------------------- transcriptions
@pytest.mark.parametrize("kw", SPEC_VARIANTS)
def test_single_and_multiple_shooting_objectives_agree(kw):
    ds = tiny_spirals() if kw.get("loss") != "ce" else tiny_multiclass()
    prob = problem(ds, **kw)
    for seed in range(3):
        w = random_weights(prob, seed)
        ref = prob.objective_value(w)  # numpy
        ss = nlp_objective(prob, "single-shooting", w)
        ms = nlp_objective(prob, "multiple-shooting", w)
        assert abs(ss - ref) <= 1e-12 * max(1, abs(ref))
        assert abs(ms - ref) <= 1e-12 * max(1, abs(ref))
        assert abs(objective_and_gradient(prob, w)[0] - ref) <= 1e-12 * max(1, abs(ref))


@pytest.mark.parametrize("method", ["single-shooting", "multiple-shooting"])
def test_both_transcriptions_reach_kkt_tolerance(method):
    prob = problem(tiny_spirals(16), blocks=2, width=2, loss="mse", gamma=0.5, weight_decay=1e-2)
    sol = solve(prob, method, IpoptOptions(tol=1e-8))
    assert sol.success, sol.status.message
    assert sol.stats["return_status"] == "Solve_Succeeded"
    assert sol.grad_norm < 1e-6


def test_transcriptions_reach_the_same_optimum_from_the_same_start():
    prob = problem(tiny_spirals(16), blocks=2, width=2, loss="mse", gamma=0.5, weight_decay=1e-2)
    a = solve(prob, "single-shooting", IpoptOptions(tol=1e-10), seed=3)
    b = solve(prob, "multiple-shooting", IpoptOptions(tol=1e-10), seed=3)
    # Non-convex: both must be stationary; when they land on the same point it is to tolerance.
    assert a.grad_norm < 1e-6 and b.grad_norm < 1e-6
    if abs(a.objective - b.objective) < 1e-6:
        np.testing.assert_allclose(a.w, b.w, atol=1e-5)


def test_lbfgs_hessian_converges():
    prob = problem(tiny_spirals(16), blocks=2, width=2, loss="mse", gamma=0.5, weight_decay=1e-2)
    sol = solve(prob, "multiple-shooting", IpoptOptions(tol=1e-6, hessian="lbfgs", max_iter=2000))
    assert sol.success
    assert sol.grad_norm < 1e-4


def test_failed_solve_returns_last_iterate_and_status():
    prob = problem(tiny_spirals(16), blocks=2)
    sol = solve(prob, "multiple-shooting", IpoptOptions(max_iter=2))
    assert not sol.success and sol.status.value == "max_iter"
    assert sol.iterations == 2
    assert np.all(np.isfinite(sol.w)) and sol.w.size == prob.spec.n_params
    assert "iteration limit" in sol.status.message


# ----------------------------------------------------------------------------- derivatives
@pytest.mark.parametrize("kw", SPEC_VARIANTS)
def test_gradient_matches_finite_differences(kw):
    ds = tiny_spirals() if kw.get("loss") != "ce" else tiny_multiclass()
    prob = problem(ds, **kw)
    w = random_weights(prob, 7)
    _, g = objective_and_gradient(prob, w)
    h = 1e-6
    fd = np.array(
        [(prob.objective_value(w + h * e) - prob.objective_value(w - h * e)) / (2 * h) for e in np.eye(w.size)]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- intermediate outputs
@pytest.mark.parametrize("widths", [[2, 2, 2, 2], [2, 3, 3, 4], [3, 3, 2, 2]])
def test_stage_output_is_network_with_later_branches_switched_off(widths):
    ds = tiny_spirals()
    prob = problem(ds, blocks=3, width=widths, branch="basic", stem="linear")
    p = prob.params(random_weights(prob, 3))
    outs = arch.stage_outputs(prob.spec, p, arch.trajectory(prob.spec, p, prob.U, NUMPY), NUMPY)
    for k in range(prob.spec.n_blocks + 1):
        q = dict(p)
        for j in range(k, prob.spec.n_blocks):
            for name in prob.spec.branch_names(j):
                q[name] = np.zeros_like(p[name])
        xN = arch.trajectory(prob.spec, q, prob.U, NUMPY)[-1]
        np.testing.assert_allclose(outs[k], arch.head(prob.spec, q, xN, NUMPY), atol=1e-13)
        # one stage's output alone (what a symbolic stage cost builds) is the same, the others None
        one = arch.stage_outputs(prob.spec, p, arch.trajectory(prob.spec, p, prob.U, NUMPY), NUMPY, only=k)
        assert np.array_equal(one[k], outs[k]) and all(z is None for j, z in enumerate(one) if j != k)


def test_gamma_zero_is_terminal_loss_plus_weight_decay():
    prob = problem(tiny_spirals(), blocks=3, gamma=0.0, loss="sce", weight_decay=1e-2)
    w = random_weights(prob, 2)
    ev = prob.evaluate(w)
    assert ev.objective == pytest.approx(ev.final_loss + 1e-2 * np.sum(w**2), abs=1e-14)
    assert nlp_objective(prob, "multiple-shooting", w) == pytest.approx(ev.objective, abs=1e-12)


def test_stage_cost_objective_formula():
    prob = problem(tiny_spirals(), blocks=3, gamma=[0.1, 0.2, 0.3], loss="mse", weight_decay=0.0)
    ev = prob.evaluate(random_weights(prob, 4))
    expected = 0.1 * ev.stage_losses[0] + 0.2 * ev.stage_losses[1] + 0.3 * ev.stage_losses[2] + ev.stage_losses[3]
    assert ev.objective == pytest.approx(expected, rel=1e-14)


def test_soft_cross_entropy_minimum_is_zero_at_finite_logits():
    obj = ObjectiveSpec(loss="sce", label_smoothing=0.2)
    from ocp_resnet.model.objective import loss

    C = 3
    t = obj.targets(np.array([1]), C)
    z = np.log(t)  # softmax(z) = t
    assert float(loss(obj, z, t, obj.target_entropy(C), NUMPY)[0, 0]) == pytest.approx(0.0, abs=1e-14)
    assert float(loss(obj, z + 0.3 * np.array([[1], [0], [-1]]), t, obj.target_entropy(C), NUMPY)[0, 0]) > 0


def test_block_norms_and_residual_norms():
    prob = problem(tiny_spirals(), blocks=2, width=2)
    p = prob.spec.init_params("zeros")
    p["block1.W"] = np.array([[3.0, 0.0], [0.0, 4.0]])
    ev = prob.evaluate(p)
    assert ev.block_norms == [0.0, 5.0]
    assert ev.residual_norms[0] == 0.0
    # block 0 is the identity, so x_1 = x_0 = the data and F_1 = tanh(W x_0)
    F = np.tanh(p["block1.W"] @ prob.U)
    assert ev.residual_norms[1] == pytest.approx(np.sqrt(np.mean(np.sum(F**2, axis=0))), rel=1e-14)
