"""The compiled per-sample functions depend on the structure only.

* γ (every γ_k), λ and the data are inputs of the per-sample code, not constants compiled into
  it: problems that differ only in them share one compiled library (counted by
  ``_common.COMPILE_COUNTS`` and by the files in the cache directory);
* the numbers of the compiled and the interpreted functions equal those of a CasADi build with
  γ and λ as constants (``objective_and_gradient``, the formula the per-sample code had before);
* code estimated to take too long to compile stays interpreted, and the plan says so.
"""
from __future__ import annotations

import casadi as ca
import numpy as np
import pytest

from ocp_resnet.solvers.ipopt import sizing
from ocp_resnet.solvers.ipopt.transcription import _common, objective_and_gradient, transcribe

from .problems import problem, random_weights, tiny_multiclass, tiny_spirals

METHODS = ("single-shooting", "multiple-shooting")
needs_cc = pytest.mark.skipif(_common.c_compiler() is None, reason="needs a C compiler")


def _counts() -> dict:
    return dict(_common.COMPILE_COUNTS)


def _delta(before: dict) -> dict:
    return {k: _common.COMPILE_COUNTS[k] - before[k] for k in before}


@needs_cc
@pytest.mark.parametrize("method", METHODS)
def test_problems_differing_in_gamma_lambda_and_data_share_one_compiled_library(method, tmp_path, monkeypatch):
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    _common._SAMPLE_CACHE.clear()
    a = problem(tiny_spirals(20), blocks=3, loss="bce", gamma=0.1, weight_decay=1e-4)
    b = problem(tiny_spirals(27, seed=3), blocks=3, loss="bce", gamma=(0.3, 0.0, 2.0), weight_decay=1e-2)
    before = _counts()
    na = transcribe(a, method, jit=True)
    na.functions["hess_lag"]  # the Hessian is compiled on first use
    first = _delta(before)
    libs = sorted(p.name for p in tmp_path.glob("*.so"))
    assert na.meta["jit"] and first["compiled"] == len(libs) > 0 and first["loaded"] == 0
    # same process: the very same functions
    nb = transcribe(b, method, jit=True)
    assert nb.meta["sample_functions"] is na.meta["sample_functions"]
    # a new process (the in-process cache emptied): every library comes from the disk cache
    _common._SAMPLE_CACHE.clear()
    before = _counts()
    nb = transcribe(b, method, jit=True)
    nb.functions["hess_lag"]
    second = _delta(before)
    assert nb.meta["jit"] and second == {"compiled": 0, "loaded": first["compiled"], "fallback": 0}
    assert sorted(p.name for p in tmp_path.glob("*.so")) == libs


def _numbers(nlp, w: np.ndarray, lam_g: float = 0.3) -> tuple[float, np.ndarray, np.ndarray]:
    x = nlp.initial_guess(w)
    f, g = nlp.functions["grad_f"](x, [])
    H = nlp.functions["hess_lag"](x, [], 1.0, lam_g * np.ones(nlp.n_constraints))
    return float(f), np.asarray(g).ravel(), np.asarray(ca.densify(H))


CASES = [
    dict(data=lambda: tiny_spirals(25), blocks=3, loss="bce", gamma=0.3, weight_decay=1e-3),
    dict(data=lambda: tiny_multiclass(24), blocks=4, width=3, loss="sce", gamma=(0.1, 0.0, 0.5, 0.2), weight_decay=1e-4),
    dict(data=lambda: tiny_spirals(22, seed=2), blocks=2, loss="mse", gamma=0.0, weight_decay=1e-2),
    dict(data=lambda: tiny_multiclass(21, classes=3), blocks=5, width=3, loss="ce", gamma=1 / 11, weight_decay=1e-4),
]


@needs_cc
@pytest.mark.parametrize("case", range(len(CASES)))
def test_compiled_numbers_equal_the_interpreted_ones_and_the_constant_gamma_build(case, tmp_path, monkeypatch):
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    kw = dict(CASES[case])
    prob = problem(kw.pop("data")(), **kw)
    w = random_weights(prob, seed=case)
    J_ref, g_ref = objective_and_gradient(prob, w)  # γ and λ as constants of the CasADi graph
    assert J_ref == pytest.approx(prob.objective_value(w), rel=1e-13)
    ss_hess = None
    for method in METHODS:
        interp = _numbers(transcribe(prob, method, jit=False), w)
        nlp = transcribe(prob, method, jit=True)
        assert nlp.meta["jit"]
        comp = _numbers(nlp, w)
        for a, b in zip(comp, interp):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        assert comp[0] == pytest.approx(J_ref, rel=1e-12)  # at simulated states J is the same for both
        if method == "single-shooting":
            np.testing.assert_allclose(comp[1], g_ref, rtol=1e-11, atol=1e-12)
            ss_hess = comp[2]
    # the Hessian of the compiled single-shooting objective is CasADi's Hessian of the constant-γ build
    wm = ca.MX.sym("w", prob.spec.n_params)
    from ocp_resnet.solvers.ipopt.transcription.single_shooting import _objective, _sample_cost_function

    J = _objective(prob, _sample_cost_function(prob)[3], wm)
    H_ref = np.asarray(ca.Function("H", [wm], [ca.hessian(J, wm)[0]])(w))
    np.testing.assert_allclose(ss_hess, np.triu(H_ref), rtol=1e-10, atol=1e-12)


def test_code_too_large_to_compile_stays_interpreted(monkeypatch):
    monkeypatch.setattr(_common, "MAX_COMPILE_S", 1e-6)
    _common._SAMPLE_CACHE.clear()
    before = _counts()
    nlp = transcribe(problem(tiny_spirals(12), blocks=2, loss="bce", gamma=0.2), "single-shooting", jit=True)
    assert not nlp.meta["jit"]
    assert "interpreted" in nlp.meta["sample_functions"].jit_note
    assert _delta(before) == {"compiled": 0, "loaded": 0, "fallback": 0}  # the compiler was never called
    _common._SAMPLE_CACHE.clear()


@needs_cc
def test_the_plan_refuses_to_compile_what_would_take_minutes():
    """Width 4, 10 blocks, single shooting + exact Hessian: ~167k instructions, a ~140 s compile."""
    big = problem(tiny_spirals(200), blocks=10, width=4, loss="bce", gamma=0.1)
    n = sizing.compile_instructions(big, "single-shooting", "exact")
    assert _common.compile_seconds(n) > _common.MAX_COMPILE_S
    p = sizing.plan(big, "single-shooting", "exact", jit=True)
    assert not p.jit and "interpreted" in p.reason
    p1 = sizing.plan(problem(tiny_spirals(200), blocks=10, width=2, loss="bce", gamma=0.1),
                     "single-shooting", "exact", jit=True)
    assert p1.jit and "interpreted" not in p1.reason
    assert not sizing.plan(big, "single-shooting", "exact", jit=False).jit


def test_the_compile_estimate_is_close_to_the_built_expression():
    """The structure-only estimate is within a factor 1.5 of the instructions CasADi generates."""
    from ocp_resnet.solvers.ipopt.transcription.single_shooting import _sample_problem

    for blocks, width in ((3, 2), (6, 3)):
        prob = problem(tiny_spirals(10), blocks=blocks, width=width, loss="bce", gamma=0.1)
        sf = _common.SampleFunctions(*_sample_problem(prob, (True,) * blocks), jit=False)
        built = int(sf.hess[0].n_instructions())
        est = sizing.compile_instructions(prob, "single-shooting", "exact")
        assert built / 1.5 < est < 1.5 * built
