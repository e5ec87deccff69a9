"""Correctness of the fast paths (no timings here: benchmarks/run.py measures speed).

* the structured derivatives (one sample differentiated, mapped, scattered) equal CasADi's own
  AD of the whole NLP, for both transcriptions and several architectures;
* the per-sample functions are cached by structure and reused with other data / sample counts,
  giving the same objective as a fresh build and as the numpy evaluation;
* exact-Hessian solves of both transcriptions still reach a KKT point of the same objective, and
  L-BFGS keeps working; the IPOPT defaults (AMD ordering) can be overridden.
"""
from __future__ import annotations

import casadi as ca
import numpy as np
import pytest

from ocp_resnet import IpoptOptions, solve
from ocp_resnet.solvers.ipopt.transcription import _common, transcribe

from .problems import problem, random_weights, tiny_multiclass, tiny_spirals

VARIANTS = [
    dict(blocks=3, width=2, loss="bce", gamma=0.25),
    dict(blocks=2, width=3, branch="basic", hidden=4, loss="ce", activation="softplus"),
    dict(blocks=3, width=[2, 3, 3, 2], loss="sce", gamma=[0.1, 0.5, 1.0]),
    dict(blocks=2, width=[4, 2, 3], branch="basic", stem="linear", loss="bce", activation="smooth_relu"),
    dict(blocks=0, width=2, loss="bce"),
]
METHODS = ("multiple-shooting", "single-shooting")


def _data(kw):
    return tiny_spirals(14) if kw.get("loss") == "bce" or kw.get("blocks") == 0 else tiny_multiclass(12, p=2)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kw", VARIANTS)
def test_structured_derivatives_equal_plain_ad(kw, method):
    prob = problem(_data(kw), **kw)
    nlp = transcribe(prob, method)
    rng = np.random.default_rng(3)
    x = nlp.initial_guess(random_weights(prob)) + 0.1 * rng.standard_normal(nlp.n_variables)
    lam_g = rng.standard_normal(nlp.n_constraints)
    lam_f = 0.7
    L = lam_f * nlp.f + (ca.dot(lam_g, nlp.g) if nlp.n_constraints else 0)
    ref = ca.Function("ref", [nlp.x], [nlp.f, ca.gradient(nlp.f, nlp.x), ca.jacobian(nlp.g, nlp.x),
                                       ca.triu(ca.hessian(L, nlp.x)[0])])
    f, grad, jac, hess = (np.array(ca.densify(v)) for v in ref(x))
    fs = nlp.functions
    f2, grad2 = (np.array(v) for v in fs["grad_f"](x, []))
    np.testing.assert_allclose(f2, f, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(grad2, grad, rtol=1e-11, atol=1e-13)
    if nlp.n_constraints:
        g2, jac2 = fs["jac_g"](x, [])
        np.testing.assert_allclose(np.array(ca.densify(jac2)), jac, rtol=1e-12, atol=1e-13)
        assert nlp.jacobian_nnz() == fs["jac_g"].sparsity_out(1).nnz()
    else:
        assert "jac_g" not in fs
    hess2 = np.array(ca.densify(fs["hess_lag"](x, [], lam_f, lam_g)))
    np.testing.assert_allclose(hess2, hess, rtol=1e-10, atol=1e-12)
    assert np.allclose(np.tril(hess2, -1), 0.0)  # IPOPT gets the upper triangle only


def test_nlp_objective_is_the_numpy_objective_for_other_data_of_the_same_structure():
    """Per-sample functions are cached by structure: a second data set (another n) reuses them."""
    _common._SAMPLE_CACHE.clear()
    a = problem(tiny_spirals(16), blocks=2, width=2, loss="bce", gamma=0.3)
    b = problem(tiny_spirals(23, seed=4), blocks=2, width=2, loss="bce", gamma=0.3)
    for method in METHODS:
        na = transcribe(a, method)
        n_cached = len(_common._SAMPLE_CACHE)
        nb = transcribe(b, method)
        assert len(_common._SAMPLE_CACHE) == n_cached  # nothing rebuilt for new data
        for prob, nlp in ((a, na), (b, nb)):
            w = random_weights(prob, seed=5)
            f = float(ca.Function("f", [nlp.x], [nlp.f])(nlp.initial_guess(w)))
            assert f == pytest.approx(prob.objective_value(w), rel=1e-12)
    # a different structure is a different cache entry
    transcribe(problem(tiny_spirals(16), blocks=2, width=2, loss="bce", gamma=0.0), "multiple-shooting")
    assert len(_common._SAMPLE_CACHE) == 3


@pytest.mark.parametrize("method", METHODS)
def test_exact_solves_reach_a_kkt_point(method):
    prob = problem(tiny_spirals(20), blocks=2, width=2, loss="bce", gamma=0.3, weight_decay=1e-3)
    sol = solve(prob, method, IpoptOptions(tol=1e-10))
    assert sol.success
    assert sol.grad_norm < 1e-7
    assert sol.objective == pytest.approx(prob.objective_value(sol.w), rel=1e-12)


def test_both_transcriptions_agree_at_a_common_optimum():
    """Started at the single-shooting optimum, multiple shooting stays there (same objective)."""
    prob = problem(tiny_spirals(20), blocks=2, width=2, loss="bce", gamma=0.3, weight_decay=1e-3)
    ss = solve(prob, "single-shooting", IpoptOptions(tol=1e-11))
    ms = solve(prob, "multiple-shooting", IpoptOptions(tol=1e-11), init=ss.w)
    assert ms.objective == pytest.approx(ss.objective, abs=1e-10)
    np.testing.assert_allclose(ms.w, ss.w, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_lbfgs_paths(method):
    prob = problem(tiny_spirals(16), blocks=2, width=2, loss="bce", gamma=0.3, weight_decay=1e-2)
    nlp = transcribe(prob, method)
    opts = nlp.nlpsol_options("lbfgs")
    assert "hess_lag" not in opts
    assert opts == ({"expand": True} if method == "multiple-shooting" else {"grad_f": nlp.functions["grad_f"]})
    sol = solve(prob, method, IpoptOptions(tol=1e-6, hessian="lbfgs", max_iter=3000))
    assert sol.success
    assert sol.grad_norm < 1e-4


def test_ipopt_defaults_can_be_overridden():
    d = IpoptOptions().ipopt_dict()
    assert d["mumps_pivot_order"] == 0
    assert IpoptOptions(ipopt={"mumps_pivot_order": 7}).ipopt_dict()["mumps_pivot_order"] == 7
    prob = problem(tiny_spirals(12), blocks=1, width=2, loss="bce")
    a = solve(prob, "multiple-shooting", IpoptOptions(tol=1e-10))
    b = solve(prob, "multiple-shooting", IpoptOptions(tol=1e-10, ipopt={"mumps_pivot_order": 7, "mumps_mem_percent": 1000}))
    assert a.objective == pytest.approx(b.objective, abs=1e-10)
