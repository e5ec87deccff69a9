"""Exact trust-region Newton (ocp_resnet.solvers.newton): derivatives, convergence, stopping."""
from __future__ import annotations

import math
import os
import signal

import numpy as np
import pytest

from ocp_resnet import IpoptOptions, Problem, Status, solve
from ocp_resnet.errors import ValidationError
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import NUMPY
from ocp_resnet.model.evaluation import objective_and_gradient
from ocp_resnet.solvers import initial_weights, newton
from ocp_resnet.solvers.forked import can_fork
from ocp_resnet.solvers.ipopt.transcription import _common
from ocp_resnet.solvers.newton import (
    NewtonOptions,
    _Derivatives,
    _derivatives,
    _objective,
    _shrunk,
    _StageFunctions,
    _tr_step,
    exact_derivatives,
    newton_solve,
)

from .problems import SMOOTH_CONFIGS, bfgs_reference, problem, random_weights, tiny_multiclass, tiny_spirals

CONFIGS = SMOOTH_CONFIGS


@pytest.mark.parametrize("kw", CONFIGS)
def test_derivatives_match_casadi_gradient_and_finite_differences(kw):
    prob = problem(**kw)
    w = random_weights(prob)
    J, xs = _objective(prob, w)
    g, H, M = _derivatives(_StageFunctions(prob), prob, w, xs)
    J_ref, g_ref = objective_and_gradient(prob, w)
    assert J == pytest.approx(J_ref, rel=1e-13)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-12)
    eps = 1e-6
    for i in range(0, prob.spec.n_params, 3):  # central differences of the exact gradient
        e = np.zeros_like(w)
        e[i] = eps
        col = (objective_and_gradient(prob, w + e)[1] - objective_and_gradient(prob, w - e)[1]) / (2 * eps)
        np.testing.assert_allclose(H[:, i], col, rtol=0, atol=1e-7 * max(1.0, np.abs(H).max()))
    assert np.allclose(H, H.T)
    assert np.linalg.eigvalsh(M).min() >= 1.0 - 1e-12  # metric: identity plus a Gram matrix


@pytest.mark.parametrize("kw", CONFIGS)
def test_metric_is_identity_plus_the_gram_matrix_of_the_state_sensitivities(kw):
    """M = I + (1/n) Σ_i Σ_k S_kᵀS_k with S_k = ∂x_k/∂w from central differences of the simulated
    states (the backward recursion never forms S_k); ``metric=False`` leaves the rest unchanged."""
    prob = problem(**kw)
    w = random_weights(prob)
    J, xs = _objective(prob, w)
    fns = _StageFunctions(prob)
    g, H, M = _derivatives(fns, prob, w, xs)
    p, eps = w.size, 1e-6
    S = np.empty((sum(x.size for x in xs), p))  # every state of every sample, stacked
    for j in range(p):
        e = np.zeros(p)
        e[j] = eps
        plus = arch.trajectory(prob.spec, prob.spec.unflatten(w + e), prob.U, NUMPY)
        minus = arch.trajectory(prob.spec, prob.spec.unflatten(w - e), prob.U, NUMPY)
        S[:, j] = np.concatenate([(a - b).ravel() for a, b in zip(plus, minus)]) / (2 * eps)
    np.testing.assert_allclose(M, np.eye(p) + S.T @ S / prob.n_samples, rtol=1e-7, atol=1e-8)
    g2, H2, M2 = _derivatives(fns, prob, w, xs, metric=False)
    assert np.array_equal(g2, g) and np.array_equal(H2, H) and np.array_equal(M2, np.eye(p))
    J3, g3, H3 = exact_derivatives(prob, w)
    assert J3 == J and np.array_equal(g3, g) and np.array_equal(H3, H)


@pytest.mark.skipif(_common.c_compiler() is None, reason="needs a C compiler")
def test_stage_functions_compile_once_per_shape_with_the_same_numbers(tmp_path, monkeypatch):
    """Stages of one shape share a function; compiled (once the interpreted time, summed over the
    solves of a process, reaches the estimated compile time) it gives the same derivatives, and a
    problem that differs only in γ, λ and the data loads the library from the cache instead."""
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    monkeypatch.setattr(newton, "_INTERPRETED_S", {})
    prob = problem(blocks=4, width=2, loss="bce", gamma=0.3)
    w = random_weights(prob)
    J, xs = _objective(prob, w)
    fns = _StageFunctions(prob)
    # blocks 0..3 share one function and its metric's, the head stage another pair (one library each)
    assert len(fns.mapped) == 4 and not fns.jit
    before = _derivatives(fns, prob, w, xs)
    assert 0 < fns.interpreted_s < fns.compile_s and not fns.jit
    assert _StageFunctions(prob).interpreted_s == fns.interpreted_s  # a later solve in this process goes on counting
    counts = dict(_common.COMPILE_COUNTS)
    fns.account(fns.compile_s)  # as if that much CPU time had been spent interpreting
    assert fns.jit and _common.COMPILE_COUNTS["compiled"] - counts["compiled"] == 2
    after = _derivatives(fns, prob, w, xs)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)
    # the primal-dual Hessian (other targets and adjoints for ∇²J) from the same functions
    duals = newton._Duals(prob)
    duals.step(w, 0.01 * np.ones_like(w), xs)
    targets = duals.targets(w, xs)
    for a, b in zip(_derivatives(fns, prob, w, xs, targets=targets),
                    _derivatives(_StageFunctions(prob), prob, w, xs, targets=targets)):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)
    other = problem(tiny_spirals(17, seed=2), blocks=4, width=2, loss="bce", gamma=1.5, weight_decay=1e-2)
    counts = dict(_common.COMPILE_COUNTS)
    assert _StageFunctions(other).jit
    assert _common.COMPILE_COUNTS["compiled"] == counts["compiled"]
    assert _common.COMPILE_COUNTS["loaded"] - counts["loaded"] == 2


@pytest.mark.skipif(_common.c_compiler() is None, reason="needs a C compiler")
@pytest.mark.parametrize("n", [5, newton.BLOCK, 2 * newton.BLOCK + 7])
def test_compiled_blocks_of_samples_give_each_samples_numbers(n, tmp_path, monkeypatch):
    """Compiled, a stage function runs over blocks of BLOCK samples (the last one padded): every
    sample's outputs are those of the compiled function called sample by sample, bit for bit, also
    when an input is a view of an output (the adjoints) and after a resize (a chunk's)."""
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    prob = problem(tiny_spirals(n, seed=3), blocks=2, width=3, loss="sce", gamma=0.5)
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    st = _StageFunctions(prob).stages[0]
    m = st.fn
    m.compile()
    assert m.compiled and m.block is not None
    one = newton._Mapped(m.base, n, m.shared, m.constant)
    one.swap(m.one)  # compiled, one sample at a time
    rng = np.random.default_rng(0)
    lam, tp = rng.normal(size=(st.e, n)), prob.T + rng.normal(size=prob.T.shape)
    Ph = rng.normal(size=(st.e**2, n))
    ref = [o.copy() for o in one(xs[0], w[st.K], prob.T, lam, st.gamma, tp, lam, Ph)]
    for mapped in (m, m.resized(n)):
        out = mapped(xs[0], w[st.K], prob.T, lam, st.gamma, tp, lam, Ph)
        assert all(np.array_equal(a, b) for a, b in zip(out, ref))
    # the next stage's adjoints are a view of this call's output: copied in before it is overwritten
    lam2 = out[2][:, :st.d].T
    expect = [o.copy() for o in one(xs[0], w[st.K], prob.T, np.array(lam2), st.gamma, tp, np.array(lam2), Ph)]
    again = m(xs[0], w[st.K], prob.T, lam2, st.gamma, tp, lam2, Ph)
    assert all(np.array_equal(a, b) for a, b in zip(again, expect))


@pytest.mark.parametrize("kw", [CONFIGS[0], CONFIGS[1], CONFIGS[-1]])
def test_chunks_of_samples_give_the_same_derivatives(kw):
    """Swept over chunks of samples (uneven, a stem included where the config has one), ∇J, ∇²J
    and M are the one-piece sweep's to rounding; a chunk is the problem on those samples."""
    prob = problem(**kw)
    w = random_weights(prob)
    J, xs = _objective(prob, w)
    whole = _Derivatives(prob, chunks=1)
    assert whole.chunks == 1
    for chunks in (2, 3):
        split = _Derivatives(prob, chunks=chunks)
        assert split.chunks == chunks
        assert sum(sub.n_samples for sub, _, _ in split.parts) == prob.n_samples
        for metric in (True, False):
            for a, b in zip(split(w, xs, metric), whole(w, xs, metric)):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * max(1.0, np.abs(b).max()))
    sub = prob.rows(slice(3, 9))
    assert sub.n_samples == 6 and np.array_equal(sub.U, prob.U[:, 3:9]) and np.array_equal(sub.T, prob.T[:, 3:9])
    assert sub.objective_value(w) == pytest.approx(
        np.mean(objective_mod.sample_cost(prob.spec, prob.objective, prob.spec.unflatten(w),
                                          [x[:, 3:9] for x in xs], prob.T[:, 3:9], NUMPY))
        + objective_mod.regularization(prob.objective, w, NUMPY), rel=1e-14)


def test_threads_sweep_chunks_with_the_same_numbers(monkeypatch):
    """Chunks swept by threads give the serial sweep's numbers bit for bit (fixed summation
    order); the chunks are fixed by the sizes, the threads capped by them, and OCP_RESNET_THREADS
    sets the default."""
    prob = problem(**CONFIGS[1])
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    serial = _Derivatives(prob, chunks=4, threads=1)
    threaded = _Derivatives(prob, chunks=4, threads=2)
    assert threaded.threads == 2 and serial.threads == 1
    ways = []
    for _ in range(8):  # the first calls time both ways (threads, then one thread), three each
        ways.append(threaded._threaded())
        threaded._calls -= 1  # (only asked: the call below counts)
        for a, b in zip(threaded(w, xs), serial(w, xs)):
            assert np.array_equal(a, b)
    assert ways[:6] == [True, True, True, False, False, False]
    assert len(threaded._seconds[True]) >= 3 and len(threaded._seconds[False]) >= 3
    small = _Derivatives(prob, threads=4)  # one chunk (below CHUNK_BYTES): nothing to share
    assert small.chunks == 1 and small.threads == 1
    assert newton.derivatives_of(prob, 3) is newton.derivatives_of(prob, 1)
    monkeypatch.setenv("OCP_RESNET_THREADS", "3")
    assert newton.auto_threads() == 3
    monkeypatch.setenv("OCP_RESNET_THREADS", "many")
    with pytest.raises(ValidationError, match="OCP_RESNET_THREADS"):
        newton.auto_threads()
    monkeypatch.delenv("OCP_RESNET_THREADS")
    assert 1 <= newton.auto_threads() <= newton.MAX_THREADS


@pytest.mark.skipif(not can_fork(), reason="the metric's worker process needs fork (Linux)")
def test_the_worker_sends_no_factor_where_the_subproblem_takes_no_eigendecomposition(monkeypatch):
    """Off the eigendecomposition's path (p ≥ CHOLESKY_MIN_PARAMS: Moré–Sorensen) the worker sends M
    alone: the same numbers, no inverse factor computed for nothing."""
    prob = problem(**CONFIGS[1])
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    monkeypatch.setattr(newton, "SPLIT_MIN_SIZE", 0)
    monkeypatch.setattr(newton, "SPLIT_AFTER", 0)
    monkeypatch.setattr(newton, "CHOLESKY_MIN_PARAMS", 1)
    split = _Derivatives(prob, threads=2)
    split._threaded = lambda: True  # type: ignore[method-assign]
    try:
        split(w, xs)  # the worker's set-up call
        got = split(w, xs)
        assert split._metric_worker is not None and split._metric_worker.out.shape == (w.size, w.size)
        for a, b in zip(got, _Derivatives(prob, threads=1)(w, xs)):
            assert np.array_equal(a, b)
        assert split.inverse_factor(got[2]) is None
    finally:
        split.release()


@pytest.mark.skipif(not can_fork(), reason="the metric's worker process needs fork (Linux)")
def test_metric_in_a_worker_process_gives_the_same_numbers(monkeypatch):
    """The metric's part swept in a forked worker gives the one-piece sweep's numbers bit for
    bit; when the worker dies the sweep goes on in one process, the same numbers again."""
    prob = problem(**CONFIGS[1])
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    serial = _Derivatives(prob, threads=1)
    monkeypatch.setattr(newton, "SPLIT_MIN_SIZE", 0)
    monkeypatch.setattr(newton, "SPLIT_AFTER", 2)
    split = _Derivatives(prob, threads=2)
    assert split.splits and split.threads == 2 and not serial.splits
    assert not _Derivatives(prob, threads=1).splits
    for _ in range(2):  # the first SPLIT_AFTER sweeps in one process: no worker yet
        for a, b in zip(split(w, xs), serial(w, xs)):
            assert np.array_equal(a, b)
        assert split._metric_worker is None
    ways = []
    for _ in range(8):  # split on the first calls, then one process, then the faster
        ways.append(split._threaded())
        split._calls -= 1
        for a, b in zip(split(w, xs), serial(w, xs)):
            assert np.array_equal(a, b)
    # the worker's first call (its set-up, beside a whole sweep here) is not timed: three more timed
    # split calls, then three serial
    assert ways[:7] == [True, True, True, True, False, False, False]
    assert split._metric_worker is not None
    duals = newton._Duals(prob)  # the primal-dual Hessian: the worker's M is the same
    duals.step(w, 0.01 * np.ones_like(w), xs)
    targets = duals.targets(w, xs)
    split._threaded = lambda: True  # type: ignore[method-assign]
    got = split(w, xs, targets=targets)
    for a, b in zip(got, serial(w, xs, targets=targets)):
        assert np.array_equal(a, b)
    # the worker also sends M's inverse Cholesky factor, for that M only, the numbers of computing it here
    assert np.array_equal(split.inverse_factor(got[2]), newton._inverse_factor(got[2]))
    assert split.inverse_factor(got[2].copy()) is None and serial.inverse_factor(got[2]) is None
    g_only = split(w, xs, metric=False)  # without the metric: nothing to split
    assert np.array_equal(g_only[1], serial(w, xs, metric=False)[1])
    os.kill(split._metric_worker.pid, signal.SIGKILL)
    os.waitpid(split._metric_worker.pid, 0)
    split._threaded = lambda: True  # type: ignore[method-assign]
    for a, b in zip(split(w, xs), serial(w, xs)):
        assert np.array_equal(a, b)
    assert not split.splits and split._worker(True) is None
    sol_split = newton_solve(prob, random_weights(prob), NewtonOptions(print_level=0, threads=2))
    sol_one = newton_solve(prob, random_weights(prob), NewtonOptions(print_level=0, threads=1))
    assert sol_split.stats["metric_process"] and not sol_one.stats["metric_process"]
    assert newton.derivatives_of(prob)._metric_worker is None  # each solve ends its worker
    assert sol_split.iterations == sol_one.iterations and np.array_equal(sol_split.w, sol_one.w)


def test_chunk_size_follows_the_work_array_size():
    """One piece below CHUNK_BYTES (every test problem), more above, never chunks of fewer than
    CHUNK_MIN_SAMPLES samples."""
    prob = problem(blocks=2, width=2, loss="bce", gamma=0.0)
    assert _Derivatives(prob).chunks == 1
    n = prob.n_samples
    size = 8.0 * n * max(prob.spec.widths) * prob.spec.n_params
    old = (newton.CHUNK_BYTES, newton.CHUNK_MIN_SAMPLES)
    try:
        newton.CHUNK_BYTES, newton.CHUNK_MIN_SAMPLES = size / 2.5, 1
        assert _Derivatives(prob).chunks == 3
        newton.CHUNK_MIN_SAMPLES = n // 2
        assert _Derivatives(prob).chunks == 2
    finally:
        newton.CHUNK_BYTES, newton.CHUNK_MIN_SAMPLES = old


@pytest.mark.skipif(_common.c_compiler() is None, reason="needs a C compiler")
def test_chunks_count_their_time_for_the_whole_and_follow_its_compile(tmp_path, monkeypatch):
    """Interpreted seconds spent in chunks count for the problem's one compile decision; once
    it compiled, the chunks run the compiled functions (the same numbers)."""
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    monkeypatch.setattr(newton, "_INTERPRETED_S", {})
    prob = problem(blocks=3, width=2, loss="sce", gamma=0.5)
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    split = _Derivatives(prob, chunks=2)
    owner = split.fns
    assert not owner.jit
    before = split(w, xs)
    assert owner.interpreted_s > 0 and all(f.interpreted_s == 0 for _, f, _ in split.parts)
    owner.account(owner.compile_s)
    assert owner.jit and not any(f.jit for _, f, _ in split.parts)
    after = split(w, xs)
    assert all(f.jit and all(m.compiled for m in f.mapped) for _, f, _ in split.parts)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-15)


@pytest.mark.skipif(_common.c_compiler() is None, reason="needs a C compiler")
def test_interpreted_time_is_counted_across_processes(tmp_path, monkeypatch):
    """The interpreted seconds of a structure survive the process (a file in the compile cache),
    so repeated short solves add up to a compile; an unreadable count is zero."""
    monkeypatch.setenv("OCP_RESNET_CACHE", str(tmp_path))
    monkeypatch.setattr(newton, "_INTERPRETED_S", {})
    prob = problem(blocks=3, width=2, loss="mse", gamma=1.0)
    fns = _StageFunctions(prob)
    assert fns.interpreted_s == 0.0 and 0.0 < fns.compile_s < math.inf
    monkeypatch.setattr(newton, "_LEDGER_STEP_S", 0.0)  # write on every count
    fns.account(0.3 * fns.compile_s)
    fns.account(0.3 * fns.compile_s)
    assert not fns.jit
    monkeypatch.setattr(newton, "_INTERPRETED_S", {})  # as in a new process
    again = _StageFunctions(prob)
    assert again.interpreted_s == pytest.approx(0.6 * fns.compile_s) and not again.jit
    counts = dict(_common.COMPILE_COUNTS)
    again.account(0.5 * fns.compile_s)  # the third "process" crosses the compile cost
    assert again.jit and _common.COMPILE_COUNTS["compiled"] > counts["compiled"]
    monkeypatch.setattr(newton, "_INTERPRETED_S", {})
    assert _StageFunctions(prob).jit  # from now on loaded from the cache
    newton._ledger(fns._key).write_text("garbage")
    monkeypatch.setattr(newton, "_INTERPRETED_S", {})
    other = problem(blocks=3, width=2, loss="mse", gamma=1.0)
    assert newton._read_ledger(_StageFunctions(other)._key) == 0.0


def test_trust_region_step_satisfies_the_optimality_conditions():
    rng = np.random.default_rng(0)
    for trial in range(20):
        A = rng.standard_normal((6, 6))
        H = A + A.T
        g = rng.standard_normal(6)
        if trial % 4 == 0:  # hard case: g orthogonal to the lowest eigenvector
            mu, Q = np.linalg.eigh(H)
            g -= (Q[:, 0] @ g) * Q[:, 0]
        mu, Q = np.linalg.eigh(H)
        radius = 0.5 + trial * 0.1
        s, pred, interior = _tr_step(mu, Q, g, radius)
        assert np.linalg.norm(s) <= radius * (1 + 1e-8)
        assert pred == pytest.approx(-(g @ s + 0.5 * s @ H @ s), rel=1e-10)
        if not interior:
            assert np.linalg.norm(s) == pytest.approx(radius, rel=1e-8)
        sigma = -(s @ (H @ s + g)) / (s @ s)  # (H + σI)s = −g with H + σI ⪰ 0 and σ ≥ 0
        np.testing.assert_allclose((H + sigma * np.eye(6)) @ s, -g, atol=1e-7)
        assert sigma >= max(0.0, -mu[0]) - 1e-7


def test_converges_where_ipopt_multiple_shooting_agrees():
    prob = problem()
    w0 = initial_weights(prob, "random", 0)
    sol = newton_solve(prob, w0)
    assert sol.status is Status.SUCCESS and sol.method == "newton"
    assert np.abs(objective_and_gradient(prob, sol.w)[1]).max() <= 1e-8
    assert sol.objective == pytest.approx(prob.objective_value(sol.w), rel=1e-14)
    assert sol.evaluation.grad_norm <= 1e-7
    # a local minimum for IPOPT too: warm-started there it stops at once
    ms = solve(prob, method="multiple-shooting", init=sol.w, options=IpoptOptions(tol=1e-8))
    assert ms.success and ms.iterations <= 5
    assert ms.objective == pytest.approx(sol.objective, rel=1e-9)


def test_multiclass_sce_converges_with_log_lines():
    prob = problem(tiny_multiclass(), blocks=2, width=3, loss="sce", gamma=0.1)
    lines: list[str] = []
    sol = newton_solve(prob, initial_weights(prob, "random", 1), log=lines.append)
    assert sol.success
    assert np.abs(objective_and_gradient(prob, sol.w)[1]).max() <= 1e-8
    assert "objective" in lines[1] and len(lines) >= sol.iterations + 2


def test_callback_interrupts_with_the_last_iterate():
    prob = problem()
    seen = []

    def stop_at_three(info):
        seen.append(info)
        return info.iteration >= 3

    sol = newton_solve(prob, initial_weights(prob, "random", 0), callback=stop_at_three)
    assert sol.status is Status.INTERRUPTED and sol.stats["stopped_by"] == "callback"
    assert sol.iterations == 3 and len(seen) == 3
    np.testing.assert_array_equal(sol.w, seen[-1].w)
    assert sol.objective == pytest.approx(seen[-1].objective, rel=1e-14)


def test_max_iter_returns_the_last_iterate():
    prob = problem()
    seen = []
    sol = newton_solve(prob, initial_weights(prob, "random", 0), NewtonOptions(max_iter=4), callback=seen.append)
    assert sol.status is Status.MAX_ITER and sol.iterations == 4
    np.testing.assert_array_equal(sol.w, seen[-1].w)
    assert sol.objective < prob.objective_value(initial_weights(prob, "random", 0))


@pytest.mark.parametrize("opts", [dict(), dict(nonmonotone=5, shrink="interp", radius=1.0, expand=8.0)])
def test_zero_blocks_is_logistic_regression(opts):
    ds = tiny_spirals(40)
    prob = Problem.build(ds, blocks=0, width=2, loss="bce", weight_decay=1e-2)
    sol = newton_solve(prob, np.zeros(prob.spec.n_params), NewtonOptions(**opts))
    assert sol.success

    ref = bfgs_reference(prob)
    np.testing.assert_allclose(sol.w, ref.x, atol=1e-7)
    assert sol.objective == pytest.approx(ref.fun, rel=1e-12)


@pytest.mark.parametrize("opts", [dict(nonmonotone=5), dict(nonmonotone=3, shrink="interp", expand=4.0)])
def test_nonmonotone_acceptance_stays_below_the_start_and_reaches_a_local_minimum(opts):
    prob = problem()
    w0 = initial_weights(prob, "random", 0)
    J0 = prob.objective_value(w0)
    seen: list[float] = []
    sol = newton_solve(prob, w0, NewtonOptions(**opts), callback=lambda info: seen.append(info.objective))
    assert sol.success and sol.objective <= J0
    m = opts["nonmonotone"]
    history = [J0, *seen]
    for k in range(1, len(history)):  # each accepted J is below the largest of the m before it
        assert history[k] < max(history[max(0, k - m):k])
    assert max(seen) <= J0
    J, xs = _objective(prob, sol.w)
    g, H, _ = _derivatives(_StageFunctions(prob), prob, sol.w, xs)
    assert np.abs(g).max() <= 1e-8
    assert np.linalg.eigvalsh(H).min() >= -1e-8  # a second-order point, not a saddle


def test_shrink_rules():
    assert _shrunk("fixed", 1.0, 5.0, -1.0, 2.0) == 0.5
    # φ(t) = 1 − t + c t² through φ(1) = Jt: c = Jt − J − g·s, minimiser t = 1 / (2c), kept in [0.1, 0.5]
    assert _shrunk("interp", 1.0, 4.0, -1.0, 2.0) == pytest.approx(2.0 / 8.0)  # c = 4
    assert _shrunk("interp", 1.0, 1.5, -1.0, 2.0) == pytest.approx(2.0 / 3.0)  # c = 1.5
    assert _shrunk("interp", 1.0, 0.5, -1.0, 2.0) == pytest.approx(0.5 * 2.0)  # t = 1, clipped
    assert _shrunk("interp", 1.0, 100.0, -1.0, 2.0) == pytest.approx(0.1 * 2.0)
    assert _shrunk("interp", 1.0, float("inf"), -1.0, 2.0) == pytest.approx(0.25 * 2.0)


def test_bad_options_and_inputs_are_refused():
    with pytest.raises(ValidationError, match="tol"):
        NewtonOptions(tol=0.0)
    with pytest.raises(ValidationError, match="max_iter"):
        NewtonOptions(max_iter=-1)
    with pytest.raises(ValidationError, match="nonmonotone"):
        NewtonOptions(nonmonotone=0)
    with pytest.raises(ValidationError, match="shrink"):
        NewtonOptions(shrink="halve")
    with pytest.raises(ValidationError, match="expand"):
        NewtonOptions(expand=1.0)
    prob = problem()
    with pytest.raises(ValidationError, match="entries"):
        newton_solve(prob, np.zeros(3))
    with pytest.raises(ValidationError, match="NaN"):
        newton_solve(prob, np.full(prob.spec.n_params, np.nan))


def test_ctrl_c_stops_at_the_end_of_the_iteration():
    import os
    import signal

    prob = problem()
    seen = []

    def interrupt_at_two(info):
        seen.append(info)
        if info.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; StopOnSigint catches it

    sol = newton_solve(prob, initial_weights(prob, "random", 0), callback=interrupt_at_two)
    assert sol.status is Status.INTERRUPTED and sol.stats["stopped_by"] == "SIGINT"
    assert sol.iterations == 2
    np.testing.assert_array_equal(sol.w, seen[-1].w)


def test_time_limit_gives_max_time():
    prob = problem()
    sol = newton_solve(prob, initial_weights(prob, "random", 0), NewtonOptions(max_time_s=1e-9))
    assert sol.status is Status.MAX_TIME and sol.iterations == 1


def test_relu_is_refused():
    prob = problem(activation="relu")
    with pytest.raises(ValidationError, match="twice differentiable"):
        newton_solve(prob, np.zeros(prob.spec.n_params))


def test_newton_is_a_solver_object_the_cli_and_the_factory_build() -> None:
    """``method="newton"`` gives a NewtonSolver from the factory; it satisfies the Solver contract,
    its record reads back, and ``ocp-resnet solve --method newton`` writes a converged run."""

    from ocp_resnet.solvers import Solver, make_solver, solver_from_record
    from ocp_resnet.solvers.newton import NewtonSolver

    s = make_solver("casadi", method="newton", tol=1e-9, max_iter=500, hessian="exact")
    assert isinstance(s, NewtonSolver) and isinstance(s, Solver)
    assert s.options.tol == 1e-9 and s.options.max_iter == 500
    assert solver_from_record(s.record()) == s
    prob = Problem.build(tiny_spirals(), blocks=3, width=2)
    sol = s.solve(prob, "random", 0)
    assert sol.method == "newton" and sol.status == Status.SUCCESS


def test_cli_solve_with_newton(tmp_path) -> None:
    import json

    from ocp_resnet.cli import main

    out = tmp_path / "run"
    assert main(["solve", "--n-samples", "40", "--blocks", "3", "--method", "newton", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert metrics["method"] == "newton" and metrics["status"] == "success"
    assert config["solver"]["method"] == "newton" and metrics["second_order"]["kind"] in (
        "strict local minimum", "degenerate", "saddle")
    assert config["solver"]["curvature"] == "primal-dual"
    # --curvature reaches the Newton path whether chosen by name or by auto, and is recorded
    for method in ("newton", "auto"):
        out = tmp_path / f"primal-{method}"
        assert main(["solve", "--n-samples", "40", "--blocks", "3", "--method", method, "--curvature", "primal",
                     "--quiet", "--out", str(out)]) == 0
        config = json.loads((out / "config.json").read_text())
        assert config["solver"]["curvature"] == "primal"
    # an IPOPT method does not use it: refused with exit 2, naming the fix
    assert main(["solve", "--n-samples", "40", "--blocks", "3", "--method", "multiple-shooting", "--curvature",
                 "primal", "--quiet", "--out", str(tmp_path / "ms")]) == 2


def test_generalised_eigendecomposition_matches_scipy() -> None:
    from scipy.linalg import eigh

    from ocp_resnet.solvers.newton import _eigh_metric

    rng = np.random.default_rng(0)
    A = rng.normal(size=(7, 7))
    H = A + A.T
    B = rng.normal(size=(7, 7))
    M = np.eye(7) + B @ B.T
    mu, Q = _eigh_metric(H, M)
    ref = eigh(H, M, eigvals_only=True)
    np.testing.assert_allclose(mu, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(Q.T @ M @ Q, np.eye(7), atol=1e-10)
    np.testing.assert_allclose(H @ Q, M @ Q @ np.diag(mu), atol=1e-9)


@pytest.mark.parametrize("metric", ["states", "euclidean"])
@pytest.mark.parametrize("shift", [3.0, 0.5, -0.5, -3.0])  # positive definite … indefinite
def test_more_sorensen_steps_match_the_eigendecomposition(monkeypatch, metric: str, shift: float) -> None:
    """The Cholesky (Moré–Sorensen) subproblem solution is the eigendecomposition's for every
    radius, interior or on the boundary, with negative curvature too: its M-norm is the radius to
    the relative accuracy ``_MS_RTOL``, and it is the exact solution for the radius it has."""
    from ocp_resnet.solvers import newton

    rng = np.random.default_rng(1)
    p = 12
    A = rng.normal(size=(p, p))
    H = 0.5 * (A + A.T) / np.sqrt(p) + shift * np.eye(p)
    B = rng.normal(size=(p, p)) / np.sqrt(p)
    M = np.eye(p) + B @ B.T if metric == "states" else None
    g = rng.normal(size=p)
    monkeypatch.setattr(newton, "CHOLESKY_MIN_PARAMS", 1)
    ms = newton._Subproblem(H, M, g)
    monkeypatch.setattr(newton, "CHOLESKY_MIN_PARAMS", 10**9)
    ev = newton._Subproblem(H, M, g)
    assert ms.indefinite == ev.indefinite == (np.linalg.eigvalsh(H)[0] < 0 if M is None else ev.eig[0][0] < 0)
    for radius in (1e-3, 0.1, 1.0, 10.0, 1e3):
        s1, pred1, int1 = ms.step(radius)
        assert int1 == ev.step(radius)[2]
        assert ms.norm(s1) == pytest.approx(radius, rel=newton._MS_RTOL) or int1
        s2, pred2, int2 = ev.step(ms.norm(s1) if not int1 else radius)
        assert int1 == int2
        np.testing.assert_allclose(s1, s2, rtol=1e-7, atol=1e-9 * radius)
        assert pred1 == pytest.approx(pred2, rel=1e-8)
    assert ms.fallbacks == 0 and ms.factorisations > 1


@pytest.mark.parametrize("shift", [-0.5, -3.0])
def test_failed_factorisation_raises_a_valid_lower_bound_on_the_shift(monkeypatch: pytest.MonkeyPatch, shift: float) -> None:
    """A Cholesky factorisation of H + σM that fails raises Moré–Sorensen's lower bound on σ past
    σ, but never past −λ_min(H, M) (below it H + σM is indefinite, so no solution lies there)."""
    from ocp_resnet.solvers import newton

    rng = np.random.default_rng(2)
    p = 15
    A = rng.normal(size=(p, p))
    H = 0.5 * (A + A.T) / np.sqrt(p) + shift * np.eye(p)
    B = rng.normal(size=(p, p)) / np.sqrt(p)
    M = np.eye(p) + B @ B.T
    lam_min = newton._eigh_metric(H, M)[0][0]
    assert lam_min < 0
    monkeypatch.setattr(newton, "CHOLESKY_MIN_PARAMS", 1)
    sub = newton._Subproblem(H, M, rng.normal(size=p))
    assert sub.indefinite and sub.f0 is None
    assert 0.0 < sub.lo <= -lam_min * (1 + 1e-12)  # the factorisation at σ = 0 failed
    for sigma in (0.5 * sub.lo, 0.9 * -lam_min, 0.999 * -lam_min):
        lo = sub.lo
        assert sub._factor(sigma) is None
        assert max(lo, sigma) <= sub.lo <= -lam_min * (1 + 1e-12)
    assert sub._factor(-lam_min * 1.001) is not None


@pytest.mark.parametrize("metric", ["states", "euclidean"])
def test_the_states_metric_is_formed_once_per_metric_period(monkeypatch: pytest.MonkeyPatch, metric: str) -> None:
    """The states metric M is formed by the derivative sweep at the first iteration and every
    ``metric_every`` after, and the trust region of the iterations between uses it unchanged;
    the Euclidean region never forms it."""
    from ocp_resnet.solvers import newton

    formed: list[bool] = []
    used: list[np.ndarray | None] = []
    sweep, subproblem = newton._derivatives, newton._Subproblem

    def counting_sweep(fns: newton._StageFunctions, prob: Problem, w: np.ndarray, xs: list[np.ndarray],
                       metric: bool = True, hessian: bool = True, targets: list[np.ndarray] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        formed.append(metric)
        return sweep(fns, prob, w, xs, metric, hessian, targets)

    def recording_subproblem(H: np.ndarray, M: np.ndarray | None, g: np.ndarray, sigma0: float = 0.0,
                             Linv: np.ndarray | None = None) -> newton._Subproblem:
        used.append(M)
        return subproblem(H, M, g, sigma0, Linv)

    monkeypatch.setattr(newton, "_derivatives", counting_sweep)
    monkeypatch.setattr(newton, "_Subproblem", recording_subproblem)
    prob = problem()
    sol = newton_solve(prob, initial_weights(prob, "random", 0), NewtonOptions(max_iter=8, metric=metric, metric_every=3))
    assert sol.iterations == len(used) == 8 and len(formed) == 9
    if metric == "euclidean":
        assert not any(formed) and all(M is None for M in used)
        return
    assert formed == [i % 3 == 0 for i in range(9)]
    for i, M in enumerate(used):
        assert M is not None and M is used[3 * (i // 3)]
        assert np.linalg.eigvalsh(M).min() >= 1.0 - 1e-12
    assert used[0] is not used[3] and not np.array_equal(np.asarray(used[0]), np.asarray(used[3]))


@pytest.mark.parametrize("loss", ["mse", "bce", "sce", "ce"])
def test_loss_gradient_matches_finite_differences_of_the_loss(loss: str) -> None:
    """∂ℓ/∂z (objective.loss_gradient), the multiplier the primal-dual Hessian carries, is the
    derivative of objective.loss, and affine in the targets with slope −1."""
    rng = np.random.default_rng(3)
    C = 1 if loss == "bce" else 3
    obj = objective_mod.ObjectiveSpec(loss=loss)
    z = rng.normal(size=(C, 5)) * 3.0
    t = rng.random((C, 5)) if loss == "bce" else np.eye(C)[:, rng.integers(0, C, 5)]
    G = objective_mod.loss_gradient(obj, z, t)
    h = 1e-6
    for j in range(C):
        e = np.zeros_like(z)
        e[j] = h
        fd = (objective_mod.loss(obj, z + e, t, 0.0, NUMPY) - objective_mod.loss(obj, z - e, t, 0.0, NUMPY)) / (2 * h)
        np.testing.assert_allclose(G[j], np.ravel(fd), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(objective_mod.loss_gradient(obj, z, t + 0.25), G - 0.25, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kw", CONFIGS)
def test_primal_dual_hessian_is_exact_at_its_own_multipliers_and_the_gradient_always(kw) -> None:
    """With y = ∂ℓ/∂ŷ at the current point the primal-dual Hessian is ∇²J; with y carried over a
    step the gradient stays ∇J (against CasADi) and y is the first-order prediction of the loss
    gradients at w + s (error O(‖s‖²))."""
    prob = problem(**kw)
    w = random_weights(prob)
    _, xs = _objective(prob, w)
    fns = _StageFunctions(prob)
    g0, H0, M0 = _derivatives(fns, prob, w, xs)
    duals = newton._Duals(prob)
    assert duals.targets(w, xs) is None  # the first iteration: the primal Hessian
    duals.y = newton._stage_seeds(prob, w)
    g, H, M = _derivatives(fns, prob, w, xs, targets=duals.targets(w, xs))
    np.testing.assert_allclose(H, H0, rtol=0, atol=1e-12 * np.abs(H0).max())
    np.testing.assert_array_equal(g, g0)  # the gradient's adjoints never see the targets
    np.testing.assert_array_equal(M, M0)
    s = np.random.default_rng(1).normal(size=w.size)
    errors = []
    for scale in (1e-2, 5e-3):
        duals.step(w, scale * s, xs)
        actual = newton._stage_seeds(prob, w + scale * s)
        errors.append(max(float(np.abs(a - y).max()) for a, y in zip(actual, duals.y) if a is not None))
    assert errors[1] < 0.35 * errors[0]  # quadratic: a quarter, with room for the next order
    w1 = w + 1e-2 * s
    _, xs1 = _objective(prob, w1)
    duals.step(w, 1e-2 * s, xs)
    g1, H1, _ = _derivatives(fns, prob, w1, xs1, targets=duals.targets(w1, xs1))
    _, g_ref = objective_and_gradient(prob, w1)
    np.testing.assert_allclose(g1, g_ref, rtol=1e-9, atol=1e-12)
    assert not np.allclose(H1, _derivatives(fns, prob, w1, xs1, False)[1], rtol=1e-10, atol=0)


@pytest.mark.parametrize("curvature", ["primal-dual", "primal"])
def test_both_curvatures_reach_a_certified_minimum(curvature: str) -> None:
    prob = problem(blocks=3, width=3, loss="mse", gamma=0.5, weight_decay=1e-5)
    sol = newton_solve(prob, random_weights(prob), NewtonOptions(print_level=0, curvature=curvature))
    assert sol.status is Status.SUCCESS
    _, g = objective_and_gradient(prob, sol.w)
    assert np.abs(g).max() <= 1e-8
    H = exact_derivatives(prob, sol.w)[2]
    assert np.linalg.eigvalsh(H)[0] > -1e-8
    with pytest.raises(ValidationError, match="curvature"):
        NewtonOptions(curvature="dual")
