"""Solver robustness and the size-aware defaults (no timings: benchmarks/robustness.py and
benchmarks/run.py measure speed).

* the γ values that made the previous IPOPT defaults diverge (γ = 0.0909 on the canonical
  problem never finished) converge with the defaults, the fast subset of the robustness suite;
* ``--method auto`` / ``--hessian auto`` choose multiple shooting + exact Hessian for small
  problems and single shooting + L-BFGS where the KKT factorisation would be too large, and
  refuse at once what no path can build;
* the compiled (JIT) per-sample functions and the thread map give the same iterates as the
  interpreted, serial ones; compiled libraries are cached by the hash of their code.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ocp_resnet import IpoptOptions, Problem, load_dataset, solve
from ocp_resnet.errors import ValidationError
from ocp_resnet.solvers.ipopt.sizing import plan
from ocp_resnet.solvers.ipopt.transcription import _common

from .problems import problem, tiny_spirals


def _canonical(loss: str, gamma: float, seed: int = 0, n: int = 200) -> Problem:
    return Problem.build(load_dataset("spirals", n_samples=n, seed=seed), blocks=10, width=2, branch="single",
                         activation="tanh", step=1.0, loss=loss, gamma=gamma, weight_decay=1e-4)


@pytest.mark.parametrize("loss,gamma", [("bce", 0.0909), ("bce", 0.09), ("mse", 0.0909), ("mse", 1 / 11)])
def test_fourth_digit_gammas_converge_with_the_defaults(loss, gamma):
    # bce/0.0909 ran into 1e9 dual infeasibility and never finished with the previous defaults
    # (reachable with ipopt={"recalc_y": "no"}); mse/(1/11) diverged with recalc_y too and needs
    # the restart from re-simulated states. The iteration cap keeps a regression bounded.
    sol = solve(_canonical(loss, gamma), options=IpoptOptions(tol=1e-8, max_iter=400), seed=0)
    assert sol.status.value == "success", sol
    assert sol.method == "multiple-shooting" and sol.stats["hessian"] == "exact"
    assert sol.grad_norm < 1e-6


def test_diverging_multipliers_restart_from_resimulated_states():
    logs: list[str] = []
    prob = _canonical("mse", 1 / 11)
    sol = solve(prob, options=IpoptOptions(tol=1e-8, max_iter=400), seed=0, log=logs.append)
    assert sol.success and sol.stats["divergence_restarts"] >= 1
    assert any("multipliers diverged" in m for m in logs)
    assert sol.iterations == sol.stats["iter_count"]  # counted over all attempts
    off = solve(prob, options=IpoptOptions(tol=1e-8, max_iter=60, divergence_restarts=0), seed=0)
    assert off.stats["divergence_restarts"] == 0


def test_previous_defaults_stay_reachable():
    opts = IpoptOptions(ipopt={"recalc_y": "no"})
    assert opts.ipopt_dict()["recalc_y"] == "no"
    assert IpoptOptions().ipopt_dict()["recalc_y"] == "yes"


def test_auto_plan_by_size():
    small = plan(_canonical("bce", 0.1))
    assert (small.method, small.hessian) == ("multiple-shooting", "exact") and not small.jit
    big = plan(Problem.build(load_dataset("spirals", n_samples=2000), blocks=20, width=4))
    assert (big.method, big.hessian) == ("single-shooting", "lbfgs")
    assert big.ipopt["limited_memory_max_history"] == 30
    assert "multiple-shooting + exact would need" in big.reason
    kept = plan(_canonical("bce", 0.1), "single-shooting", "exact")  # explicit choices are kept
    assert (kept.method, kept.hessian) == ("single-shooting", "exact")


def test_auto_estimates_grow_with_size():
    est = {e.method + e.hessian: e for e in plan(_canonical("bce", 0.1, n=100)).estimates}
    est2 = {e.method + e.hessian: e for e in plan(_canonical("bce", 0.1, n=400)).estimates}
    for k in est:
        assert est2[k].iteration_s > est[k].iteration_s
    assert est2["multiple-shootingexact"].memory_bytes > 3 * est["multiple-shootingexact"].memory_bytes


def test_oversize_problem_is_refused_before_building():
    huge = Problem.build(load_dataset("spirals", n_samples=50), blocks=100_000, width=2)
    with pytest.raises(ValidationError, match=r"use blocks <= 29410, or train it with PyTorch"):
        solve(huge)


def test_cli_refuses_oversize_with_exit_2(tmp_path):
    cmd = [sys.executable, "-c", "from ocp_resnet.cli import entry; entry()", "solve", "--blocks", "100000",
           "--n-samples", "50", "--out", str(tmp_path / "r")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "too large for the solver" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()


def test_cli_prints_the_choice(tmp_path):
    from ocp_resnet.cli import main

    out = tmp_path / "r"
    cmd = ["solve", "--n-samples", "30", "--blocks", "2", "--max-iter", "3", "--print-level", "0", "--out", str(out)]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(cmd)
    # a problem this small takes the Newton path; with IPOPT options passed through it stays with IPOPT
    assert "auto: newton, exact trust-region Newton" in buf.getvalue()
    import json

    cfg = json.loads((out / "config.json").read_text())
    assert cfg["solver"]["method"] == "newton" and cfg["solver"]["requested"] == {"method": "auto", "hessian": "auto"}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main([*cmd[:-1], str(tmp_path / "r2"), "--ipopt", "mu_init=0.1"])
    assert "auto: multiple-shooting + exact Hessian" in buf.getvalue()
    cfg = json.loads((tmp_path / "r2" / "config.json").read_text())
    assert cfg["solver"]["method"] == "multiple-shooting" and cfg["solver"]["hessian"] == "exact"


@pytest.mark.skipif(_common.c_compiler() is None, reason="needs a C compiler")
@pytest.mark.parametrize("method,hessian", [("multiple-shooting", "exact"), ("single-shooting", "lbfgs")])
def test_compiled_and_threaded_evaluation_give_the_same_iterates(method, hessian, tmp_path, monkeypatch):
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    prob = problem(tiny_spirals(20), blocks=3, loss="bce", gamma=0.3)
    ref = solve(prob, method=method, options=IpoptOptions(hessian=hessian, jit=False, max_iter=15))
    fast = solve(prob, method=method, options=IpoptOptions(hessian=hessian, jit=True, threads=2, max_iter=15))
    assert fast.stats["jit"] and not ref.stats["jit"]
    assert fast.iterations == ref.iterations
    np.testing.assert_allclose(fast.w, ref.w, rtol=1e-12, atol=1e-12)
    libs = sorted(p.name for p in tmp_path.glob("*.so"))
    assert libs and all(p.startswith("sample_") for p in libs)
    again = solve(prob, method=method, options=IpoptOptions(hessian=hessian, jit=True, max_iter=15))
    assert sorted(p.name for p in tmp_path.glob("*.so")) == libs  # reused, not recompiled
    np.testing.assert_allclose(again.w, ref.w, rtol=1e-12, atol=1e-12)


def test_compiled_falls_back_without_a_compiler(monkeypatch):
    import casadi as ca

    monkeypatch.setattr(_common, "c_compiler", lambda: None)
    x = ca.SX.sym("x")
    f = ca.Function("f", [x], [x * x])
    assert _common.compiled(f) is f
    _common._SAMPLE_CACHE.clear()  # structures compiled by earlier tests must not be reused
    sol = solve(problem(tiny_spirals(12), blocks=2, loss="bce"), options=IpoptOptions(jit=True, max_iter=3))
    assert sol.stats["jit"] is False  # says what ran, not what was asked for


def test_bad_solver_options_name_the_fix():
    with pytest.raises(ValidationError, match="jit"):
        IpoptOptions(jit="sometimes")
    with pytest.raises(ValidationError, match="threads"):
        IpoptOptions(threads=0)
    with pytest.raises(ValidationError, match="use one of auto, multiple-shooting"):
        solve(problem(), method="collocation")
