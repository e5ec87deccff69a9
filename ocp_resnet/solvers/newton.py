"""Trust-region Newton on the condensed objective J(w), with a trust region measured in the states.

The states are eliminated (single shooting: x_{k+1} = f_k(x_k, w) is simulated), but the
derivatives are assembled block by block the way multiple shooting sees them, which keeps them
cheap and vectorised over the samples:

* per stage k, one small CasADi function of one sample gives the block Jacobians
  A_k = ∂f_k/∂x_k, B_k = ∂f_k/∂w_k (w_k: the weights stage k touches), the gradient of the
  stage Lagrangian L_k = γ_k ℓ(ŷ_k) + λ_{k+1}·f_k over (x_k, w_k), and its Hessian already
  combined with the next stage's second-order adjoint (:func:`_derivatives`); it is mapped over
  the samples (one call per stage, no Python loop over samples), and stages of one shape share it
  (compiled with the C compiler once a solve has spent as long in it as the compile would take,
  see ``_StageFunctions._jit_setup``);
* the adjoints λ_N = ∇ℓ_N, λ_k = γ_k ∇_x ℓ_k + A_kᵀ λ_{k+1} give the gradient ∇J;
* with the sensitivities S_0 = ∂x_0/∂w, S_{k+1} = A_k S_k + B_k the exact Hessian is
  ∇²J = (1/n) Σ_i Σ_k Z_kᵀ ∇²L_k Z_k + 2λI with Z_k = [S_k; E_k] (E_k picks w_k out of w); it
  is summed in the same backward sweep by second-order adjoints (:func:`_derivatives`), at
  n·d·|w_k|·p flops per stage instead of the n·d·p² of forming Σ S_kᵀ(·)S_k.

The step solves the trust-region subproblem min g·s + ½ sᵀHs subject to ‖s‖_M ≤ Δ exactly
(:class:`_Subproblem`): below :data:`CHOLESKY_MIN_PARAMS` weights from the generalised
eigendecomposition H Q = M Q diag(μ), Qᵀ M Q = I (the secular equation in the eigenbasis, hard
case included), from there by Moré–Sorensen (Cholesky factorisations of H + σM, the eigen route
as fallback), which costs a few factorisations instead of one eigendecomposition. The metric
M = I + (1/n) Σ_i Σ_k S_kᵀ S_k measures a weight step by how far it moves the weights *and
every state of every sample* (to first order): the norm a multiple-shooting step is regularised
in. Measured against the plain ‖s‖₂ region it reached markedly lower local minima (the
two-spirals default problem: J = 0.146 instead of 0.250, IPOPT multiple shooting 0.147). It
only shapes the region, so one M may serve ``NewtonOptions.metric_every`` iterations
(:class:`_LazyMetric`; the sweeps between form ∇²J alone, at about half the cost); the default
forms it every iteration (measured: docs/performance.md).
Negative curvature is followed, not regularised away, and a step inside the region is the
plain Newton step (quadratic convergence at the end).

The model's Hessian is by default the *primal-dual* one (``NewtonOptions.curvature``,
:class:`_Duals`): the loss gradients at the stage outputs, which weigh the outputs' second
derivatives in ∇²J, are carried from one iterate to the next by their linearisation along the
step instead of being re-evaluated — Newton's method on the optimality conditions with those
gradients as variables of their own, as primal-dual interior-point methods treat their
multipliers. It equals ∇²J at a solution; the gradient is always exact. Where a weakly
regularised net nearly interpolates its data the primal model holds only over short steps along
the curved set of exact fits, and the path crawled for hundreds of iterations.

Large sample sets are swept in chunks of samples (:class:`_Derivatives`), fixed by the sizes,
which threads share without changing the numbers; mid-size ones sweep the metric's part in a
forked worker process while the solve's own sweeps ∇J and ∇²J (the same numbers too).

Convergence: ‖∇J(w)‖_∞ ≤ ``tol``, with J and ∇J those of :meth:`Problem.objective_value` and
:func:`ocp_resnet.model.evaluation.objective_and_gradient` (they agree to rounding).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import CASADI, NUMPY
from ocp_resnet.model.evaluation import evaluate
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.base import Backend, Init, Log
from ocp_resnet.solvers.forked import ForkedCall, can_fork
from ocp_resnet.solvers.ipopt.options import CURVATURES
from ocp_resnet.solvers.iteration import IterCallback, StopOnSigint, stop_after_iteration
from ocp_resnet.solvers.solution import Solution
from ocp_resnet.status import Status

METHOD = "newton"
METRICS = ("states", "euclidean")
SHRINKS = ("fixed", "interp")
#: a step is taken when it achieves this fraction of the model's predicted decrease
_ETA = 1e-4


@dataclass
class NewtonOptions:
    """Options of :func:`newton_solve`, validated when set.

    ``tol`` bounds ‖∇J‖_∞ at the returned point. ``max_iter`` counts iterations, i.e. Hessian
    evaluations (a rejected trial point costs a simulation, not an iteration). ``max_time_s``
    (0: no limit) is checked after each iteration. ``print_level`` 0 is silent, 1 logs a header
    and one line per iteration through ``log``. ``radius`` is the initial trust-region radius,
    ``metric`` the norm it is measured in: ``"states"`` (the default, see the module docstring)
    or ``"euclidean"`` (‖s‖₂ of the weights).

    Radius rules: after a step on the boundary with ρ (actual / predicted decrease) above 0.75
    the radius grows by ``expand``; after a step with
    ρ < 0.25 it becomes a quarter of the step (``shrink="fixed"``) or, for a rejected step, the
    minimiser of the quadratic through J, g·s and J(w + s), kept within 0.1–0.5 of the step
    (``"interp"``). ``nonmonotone`` m > 1 accepts a step that decreases J below the largest of
    the last m accepted values (1: monotone), so every iterate stays below the start.
    ``benchmarks/newton_iterations.py`` measured the alternatives on the 46 census problems:
    none cut the iteration counts (docs/performance.md), so the defaults stay 2×, ¼, monotone.

    ``metric_every``: the states metric M is formed at the first iteration and every this many
    after, the iterations between reuse it. M only shapes the trust region, so any uniformly
    positive definite M keeps the convergence, and forming it costs about as much as ∇²J (census
    p42: 25 ms a sweep with M, 16 ms without). But which local minimum a path reaches, and in
    how many iterations, moves with any change of the region: over the census, P1 and P2 the
    default 1 cost the least in all (docs/performance.md, "Cost of a Newton iteration").

    ``threads``: how many threads sweep the derivatives, each over its own chunk of samples
    (0: :func:`auto_threads`); problems too small to gain use one whatever the setting. An
    unchunked problem of size n·d·p ≥ :data:`SPLIT_MIN_SIZE` given two or more sweeps the
    metric's part in a forked worker process on Linux (two threads would mostly wait for each
    other's interpreter lock). Neither changes the numbers.

    ``curvature``: ``"primal-dual"`` (the default) builds ∇²J with the loss gradients at the
    stage outputs carried along the last step by their linearisation (:class:`_Duals`);
    ``"primal"`` re-evaluates them at each iterate (the exact Hessian of J at every iterate);
    ``ocp-resnet solve --curvature`` sets it.
    The gradient is exact either way and both Hessians agree at a solution. On the census the
    primal-dual model cut the slow tail's iterations several fold (docs/performance.md).
    """

    tol: float = 1e-8
    max_iter: int = 1000
    max_time_s: float = 0.0
    print_level: int = 1
    radius: float = 0.01
    max_radius: float = 1e3
    metric: str = "states"
    expand: float = 2.0
    shrink: str = "fixed"
    nonmonotone: int = 1
    metric_every: int = 1
    threads: int = 0
    curvature: str = "primal-dual"

    def __post_init__(self) -> None:
        self.tol = check_float("tol", self.tol, 0.0, strict=True)
        self.max_iter = check_int("max_iter", self.max_iter, 0)
        self.max_time_s = check_float("max_time_s", self.max_time_s, 0.0)
        self.print_level = check_int("print_level", self.print_level, 0)
        self.radius = check_float("radius", self.radius, 0.0, strict=True)
        self.max_radius = check_float("max_radius", self.max_radius, 0.0, strict=True)
        check_choice("metric", self.metric, METRICS)
        self.expand = check_float("expand", self.expand, 1.0, strict=True)
        check_choice("shrink", self.shrink, SHRINKS)
        self.nonmonotone = check_int("nonmonotone", self.nonmonotone, 1)
        self.metric_every = check_int("metric_every", self.metric_every, 1)
        self.threads = check_int("threads", self.threads, 0)
        check_choice("curvature", self.curvature, CURVATURES)
        if self.max_radius < self.radius:
            raise ValidationError(f"max_radius {self.max_radius} is below radius {self.radius}: raise max_radius")


# --------------------------------------------------------------------------- derivatives
def _index(idx: np.ndarray) -> np.ndarray | slice:
    """``idx`` (ascending) as a slice when it is a contiguous range (cheaper to index with)."""
    if idx.size and idx[-1] - idx[0] + 1 == idx.size:
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def _distinct(idx: np.ndarray) -> np.ndarray:
    """The distinct values of an index array, ascending (np.unique's first call imports
    numpy.ma: ~10 ms of every solve's start-up)."""
    return np.array(sorted(set(idx.tolist())), dtype=int)


#: At most this many runs of consecutive indices are copied as slices (:class:`_Entries`), and only
#: where a run moves this many numbers on average (its length times the samples); others by fancy
#: indexing, which costs per number but not per run (census p42, 12 runs of 28 entries, 210
#: samples: 0.16 ms a stage instead of 0.27 ms; P1's 4 runs of 4–5 entries, 200 samples: 0.021 ms
#: instead of 0.011 ms; P2's chunks, 8 runs of 5–20 entries, 1000 samples: slices ~0.6 ms faster).
_MAX_RUNS, _MIN_RUN_NUMBERS = 32, 4000


def _runs(src: np.ndarray, dst: np.ndarray) -> list[tuple[int, int, int]]:
    """``src`` → ``dst`` (index arrays of one length) as runs (start in src, start in dst, length)
    where both are consecutive."""
    if not src.size:
        return []
    cut = np.flatnonzero((np.diff(src) != 1) | (np.diff(dst) != 1)) + 1
    starts, ends = np.concatenate([[0], cut]), np.concatenate([cut, [src.size]])
    return [(int(src[a]), int(dst[a]), int(b - a)) for a, b in zip(starts, ends)]


class _Entries:
    """Some entries of a stage function's per-sample output (columns ``src`` of an (n, nnz)
    array) placed into a per-sample work array (columns ``dst`` of an (n, size) array): written
    (``put``) or added (``add``), as slices where the entries come in a few long runs, else by
    fancy indexing."""

    def __init__(self, src: np.ndarray, dst: np.ndarray) -> None:
        self.src, self.dst = src, dst
        runs = _runs(src, dst)
        self.runs = runs if len(runs) <= _MAX_RUNS else None
        self.mean_run = src.size / max(len(runs), 1)

    def _sliced(self, n: int) -> bool:
        return self.runs is not None and n * self.mean_run >= _MIN_RUN_NUMBERS

    def put(self, out: np.ndarray, vals: np.ndarray) -> None:
        if self._sliced(out.shape[0]):
            for a, b, ln in self.runs or ():
                out[:, b:b + ln] = vals[:, a:a + ln]
        elif self.src.size:
            out[:, self.dst] = vals[:, self.src]

    def add(self, out: np.ndarray, vals: np.ndarray) -> None:
        if self._sliced(out.shape[0]):
            for a, b, ln in self.runs or ():
                out[:, b:b + ln] += vals[:, a:a + ln]
        elif self.src.size:
            out[:, self.dst] += vals[:, self.src]


class _Stage:
    """Stage k's mapped functions (its own and its metric's) and where their outputs go: the
    weights K_k it touches (global indices), the state widths d_k, d_{k+1}, the sparsity of B_k
    and of the lower triangle of ∇²L_k + [[AᵀPA, ·], [BᵀPA, 0]]."""

    def __init__(self, fn: _Mapped, fm: _Mapped, K: np.ndarray, d: int, e: int, gamma: float, p: int) -> None:
        self.fn, self.fm, self.K, self.d, self.e, self.gamma = fn, fm, K, d, e, gamma
        rB, cB = fn.triplets[1]
        #: the columns of K that B_k touches (the weights of f_k), and each nonzero's place in (e, qf)
        self.fcols = _distinct(cB)
        # the stage functions' P_{k+1}B_k is dense on these columns, in this order (the sweep reshapes it so)
        assert fn.shapes[5] == fm.shapes[3] == (e, self.fcols.size)
        self.B_at = (rB, np.searchsorted(self.fcols, cB))
        #: B_k's nonzeros row by row: (row, their indices in the output, their weights), for the
        #: products with B_kᵀ (B_k is sparse: a single branch's ∂f/∂W is an outer product)
        self.B_rows = [(int(i), np.flatnonzero(rB == i), K[cB[rB == i]]) for i in _distinct(rB)]
        #: the same as one batched product when every row has as many nonzeros and no weight is in
        #: two rows (a single branch: row r holds W_r and b_r): (rows, (rows, m) indices, weights)
        self.B_batch: tuple[np.ndarray | slice, np.ndarray, np.ndarray] | None = None
        if self.B_rows and len({nz.size for _, nz, _ in self.B_rows}) == 1:
            cols = np.concatenate([c for _, _, c in self.B_rows])
            if _distinct(cols).size == cols.size:
                rows = np.array([r for r, _, _ in self.B_rows])
                self.B_batch = (_index(rows), np.stack([nz for _, nz, _ in self.B_rows]), cols)
        self.Kf = _index(K[self.fcols])
        self.KfKf = (self.Kf, self.Kf) if isinstance(self.Kf, slice) else np.ix_(self.Kf, self.Kf)
        #: the block (the weights of B_batch) × Kf of U that (B_kE_k)ᵀP_{k+1}(B_kE_k) fills
        self.colsKf: tuple[Any, ...] | None = None
        if self.B_batch is not None:
            cols = self.B_batch[2]
            self.colsKf = (cols, self.Kf) if isinstance(self.Kf, slice) else np.ix_(cols, self.Kf)
        # the lower triangle of ∇²L_k (+ the products with P_{k+1}) over (x_k, w_K); the metric's
        # function gives its part with the same entries
        r, c = fn.triplets[3]
        xx, wx, ww = (r < d) & (c < d), (r >= d) & (c < d), (r >= d) & (c >= d)
        # ∂²L/∂x² (lower triangle) into P_k as the whole symmetric matrix, in one fancy-indexed add:
        # each entry at (r, c), the off-diagonal ones at (c, r) too (no place twice)
        ixx, rx, cx = np.flatnonzero(xx), r[xx], c[xx]
        off = rx != cx
        self.xx = (np.concatenate([ixx, ixx[off]]), np.concatenate([rx, cx[off]]), np.concatenate([cx, rx[off]]))
        #: the x-w entries (∂²L/∂x∂w_K + A_kᵀP_{k+1}B_k) and their places in Q_k, (n, d·p): all
        #: added, until :meth:`plan` splits off those it may write instead
        self.wx = (np.flatnonzero(wx), c[wx] * p + K[r[wx] - d])
        self.wx_put: _Entries | None = None
        self.wx_add = _Entries(*self.wx)
        rw, cw = r[ww] - d, c[ww] - d
        # Hww's lower triangle into the half-matrix U (∇²J = U + Uᵀ): off-diagonal entries whole,
        # diagonal entries halved (the pairs are distinct, so a fancy-indexed += adds each once)
        self.ww = (np.flatnonzero(ww), K[rw], K[cw], np.where(rw == cw, 0.5, 1.0))

    def plan(self, lo: int, lo1: int, p: int) -> None:
        """Where the x-w entries fill Q_k's new columns lo..lo1 (the weights no later stage
        touches) whole, they are written there instead of added to cleared columns (a chain of
        blocks: A_kᵀP_{k+1}B_k is dense on the block's own weights)."""
        i, flat = self.wx
        own = (flat % p >= lo) & (flat % p < lo1)
        if own.sum() == self.d * (lo1 - lo) and _distinct(flat[own]).size == own.sum() and lo1 > lo:
            self.wx_put, self.wx_add = _Entries(i[own], flat[own]), _Entries(i[~own], flat[~own])


#: CPU seconds spent in interpreted stage functions in this process, by structure (the serialised
#: stage Lagrangians): a path of many short solves of one structure adds up to a compile.
_INTERPRETED_S: dict[tuple[str, ...], float] = {}
#: The same count is kept across processes in the compile cache (one small file per structure),
#: written each time it has grown by this many seconds: repeated short solves of one structure
#: (the canonical problem spends ~0.17 s in them, its compile costs ~0.4 s) add up to a compile too.
_LEDGER_STEP_S = 0.05


def _ledger(key: tuple[str, ...]) -> Path:
    """The file that keeps the interpreted seconds of structure ``key`` between processes."""
    import hashlib

    from ocp_resnet.solvers.ipopt.transcription._common import cache_dir

    return cache_dir() / "interpreted" / (hashlib.sha256("\n".join(key).encode()).hexdigest()[:24] + ".txt")


def _read_ledger(key: tuple[str, ...]) -> float:
    try:
        value = float(_ledger(key).read_text())
    except (OSError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0


def _write_ledger(key: tuple[str, ...], seconds: float) -> None:
    """Best effort (an unwritable cache only loses the count); atomic, so a concurrent reader
    sees a whole number."""
    path = _ledger(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(repr(seconds))
        os.replace(tmp, path)
    except OSError:
        pass
#: gcc -O2 seconds of one stage library (a shape's stage function, its metric's and their loops
#: over :data:`BLOCK` samples) as a + b·instructions^c: one compiler start (~0.19 s) and a
#: superlinear part, fitted to the libraries of the census's structures (`benchmarks/stage_compile.py`:
#: 153 instructions 0.18 s, 1,291 0.37 s, 2,830 0.63 s, 6,637 1.76–1.83 s; a rerun's fit 0.207 +
#: 7.09e-6·n^1.40). The transcriptions' estimate (fitted to single shooting's Hessians) put 6,637 at 2.9 s.
STAGE_COMPILE_FIT = (0.19, 6.9e-6, 1.4)


def stage_compile_seconds(instructions: float) -> float:
    """Estimated compile seconds of a stage library of ``instructions`` SX instructions
    (:data:`STAGE_COMPILE_FIT`)."""
    a, b, c = STAGE_COMPILE_FIT
    return float(a + b * max(float(instructions), 0.0) ** c)


#: Structures whose compile failed in this process (not tried again).
_COMPILE_FAILED: set[tuple[str, ...]] = set()


def _lifted(P: Any, Hl: Any, A: Any, B: Any) -> Any:
    """tril(Hl + [[AᵀPA, ·], [BᵀPA, 0]]) (SX): the stage's block of Z_kᵀP_{k+1}Z_k, Z_k = [A_k B_k],
    added to ∇²L_k over (x_k, w_K), without its w-w block (summed over the samples by BLAS from
    P_{k+1}B_k instead: fewer flops than per sample for wide blocks)."""
    import casadi as ca

    d, q = A.size2(), B.size2()
    PA = ca.mtimes(P, A)
    top = ca.horzcat(ca.mtimes(A.T, PA), ca.SX(d, q))
    low = ca.horzcat(ca.mtimes(B.T, PA), ca.SX(q, q))
    return ca.tril(Hl + ca.vertcat(top, low))


class _StageFunctions:
    """The per-sample CasADi functions of one problem structure, mapped over its samples.

    Stage k's function takes the state x_k, the weights w_K it touches (not all of w), the target,
    λ_{k+1}, γ_k, the primal-dual model's target t' and adjoint λ'_{k+1} (:class:`_Duals`) and the
    second-order adjoint P_{k+1} of ∇²J (all inputs, not constants), so stages of the same shape
    share one function (in a uniform net every block's); it returns A_k (dense), B_k, ∇L_k at
    (t, λ), the lower triangle of ∇²L_k (at (t', λ')) + [[A_kᵀP_{k+1}A_k, ·], [B_kᵀP_{k+1}A_k, 0]]
    over (x_k, w_K) (B_k and that triangle sparse: only their nonzeros are computed and copied),
    the x-part of ∇L_k at (t', λ'), which carries λ', and P_{k+1}B_k on the weights of f_k. Its
    metric's function takes x_k, w_K and the metric's P_{k+1} and returns A_k, B_k and the same
    products with I for ∇²L_k. A shape's two functions compile into one library (``groups``).
    """

    def __init__(self, problem: Problem) -> None:
        import casadi as ca

        spec, obj = problem.spec, problem.objective
        n, p, N = problem.n_samples, spec.n_params, spec.n_blocks
        self.n, self.p, self.N = n, p, N
        self.widths = widths = spec.widths
        gammas = obj.stage_weights(N)
        const = obj.target_entropy(spec.n_outputs if obj.loss != "bce" else 2)
        w = ca.SX.sym("w", p)
        t = ca.SX.sym("t", problem.T.shape[0])
        P = spec.unflatten(w, CASADI)
        # by the serialised stage Lagrangian, shared between stages: the stage function and its metric's
        mapped: dict[str, tuple[_Mapped, _Mapped]] = {}
        self.stages: list[_Stage] = []
        for k in range(N + 1):
            x = ca.SX.sym("x", widths[k])
            gam = ca.SX.sym("gamma")
            # ŷ_k through the later skips and the head (the other states are not needed)
            xs = [x if j == k else ca.SX.zeros(widths[j], 1) for j in range(N + 1)]
            c = gam * objective_mod.loss(obj, arch.stage_outputs(spec, P, xs, CASADI, only=k)[k], t, const, CASADI) \
                if gammas[k] != 0.0 else ca.SX(0)
            f = arch.block(spec, k, P, x, CASADI) if k < N else ca.SX(0, 1)
            lam = ca.SX.sym("lam", f.numel())
            K = np.flatnonzero(np.asarray(ca.which_depends(ca.vertcat(f, c), w, 1, False), dtype=bool)).astype(int)
            wk = ca.SX.sym("wk", K.size)
            if K.size:
                f, c = ca.substitute([f, c], [ca.vertcat(*[w[int(i)] for i in K])], [wk])
            L = c + ca.dot(lam, f)
            key = ca.Function("L", [x, wk, t, lam, gam], [L, f]).serialize()
            if key not in mapped:
                # the Hessian with the targets t' and adjoints λ' of the primal-dual model
                # (:class:`_Duals`; t' = t, λ' = λ: the exact one), the gradient with t and λ
                tp, lamp = ca.SX.sym("tp", t.numel()), ca.SX.sym("lamp", lam.numel())
                Lp = ca.substitute(L, ca.vertcat(t, lam), ca.vertcat(tp, lamp))
                z = ca.vertcat(x, wk)
                H, gLp = ca.hessian(Lp, z)
                A, B = ca.jacobian(f, x), ca.jacobian(f, wk)
                # the second-order adjoints P_{k+1} of ∇²J and of the metric go in, their
                # per-sample products come out (:func:`_derivatives`): P_k, the x-w entries of Q_k
                # and P_{k+1}B_k (for the w-w sums over the samples, which BLAS does best)
                Ph, Pm = ca.SX.sym("Ph", f.numel(), f.numel()), ca.SX.sym("Pm", f.numel(), f.numel())
                fcols = [int(j) for j in _distinct(np.asarray(B.sparsity().get_triplet()[1], dtype=int))]
                Bf = ca.densify(B[:, fcols]) if fcols else ca.SX(f.numel(), 0)
                Ch = _lifted(Ph, H, A, B)
                Cm = _lifted(Pm, ca.diagcat(ca.SX.eye(x.numel()), ca.SX(K.size, K.size)), A, B)
                pattern = (Ch + Cm).sparsity()  # one pattern for both parts: one set of indices
                fn = ca.Function(f"stage{len(mapped)}", [x, wk, t, lam, gam, tp, lamp, Ph],
                                 [ca.densify(A), B, ca.densify(ca.gradient(L, z)), ca.project(Ch, pattern),
                                  ca.densify(gLp[:x.numel()]), ca.mtimes(Ph, Bf)])
                # the metric's part (a function of its own: a sweep often needs only one part)
                fm = ca.Function(f"metric{len(mapped)}", [x, wk, Pm],
                                 [ca.densify(A), B, ca.project(Cm, pattern), ca.mtimes(Pm, Bf)])
                mapped[key] = (_Mapped(fn, n, shared=(1, 4), constant=(2,)), _Mapped(fm, n, shared=(1,)))
            self.stages.append(_Stage(*mapped[key], K, widths[k], f.numel(), gammas[k], p))
        #: each shape's stage function and its metric's, compiled together (one library)
        self.groups: list[tuple[_Mapped, ...]] = list(mapped.values())
        self.mapped = [m for pair in self.groups for m in pair]
        self._key = tuple(sorted(mapped))
        #: the whole problem's functions when these are a chunk's (:meth:`rows`)
        self.owner: _StageFunctions | None = None
        self._lock = threading.Lock()
        self._jit_setup()
        self._buffers: dict[tuple[int, int], np.ndarray] = {}
        #: the first column of the weights stage k or a later one touches: the second-order
        #: adjoints Q_k (∂²/∂x_k∂w of the cost to go) are zero left of it
        self.lo = [p] * (N + 2)
        for k in range(N, -1, -1):
            K = self.stages[k].K
            self.lo[k] = min(self.lo[k + 1], int(K.min()) if K.size else p)
        for k, st in enumerate(self.stages):
            st.plan(self.lo[k], self.lo[k + 1], p)
        # ∂x_0/∂w of the stem: the stem is affine in the weights, so it is a constant of the data
        u = ca.SX.sym("u", spec.input_dim)
        x0 = arch.stem(spec, P, u, CASADI)
        K0 = np.flatnonzero(np.asarray(ca.which_depends(x0, w, 1, False), dtype=bool)) if spec.stem == "linear" \
            else np.zeros(0, dtype=int)
        self.stem: tuple[np.ndarray, np.ndarray] | None = None
        if K0.size:
            wK0 = ca.vertcat(*[w[int(i)] for i in K0])
            sfn = _Mapped(ca.Function("stem", [u, w], [ca.densify(ca.jacobian(x0, wK0))]), n, shared=(1,))
            self.stem = (sfn.dense(sfn(problem.U, np.zeros(p))[0], 0), K0)

    def _jit_setup(self) -> None:
        """Load compiled stage functions from the cache (:func:`~ocp_resnet.solvers.ipopt.transcription._common.compiled`)
        when an earlier run compiled them, else plan when to compile them.

        Compiled, a stage function runs ~5x faster (width 4: 0.16 ms instead of 0.85 ms for 283
        samples, the same numbers to the bit), but compiling costs about
        :func:`stage_compile_seconds` per library (~0.2 s at the least), more than a short solve
        spends in the interpreted ones. So they are compiled
        once the CPU time spent in them reaches that estimate (a rent-or-buy rule: never more than
        twice the cost of the better choice in hindsight), and not at all without a C compiler or
        when the compile would be too large. γ, the data and the weights are inputs, so one
        library serves every stage of that shape, every γ and every data set of the same dimensions.
        """
        from ocp_resnet.solvers.ipopt.transcription import _common

        self.jit = False
        # earlier solves of this structure count, in this process and (through the cache) in others
        self.interpreted_s = max(_INTERPRETED_S.get(self._key, 0.0), _read_ledger(self._key))
        self._ledger_s = self.interpreted_s
        self.compile_s = math.inf
        if _common.c_compiler() is None:
            return
        for group in self.groups:
            _compile(group, cached_only=True)
        fns = [m.base for m in self.mapped if not m.compiled]
        if not fns:
            self.jit = True
        elif self._key not in _COMPILE_FAILED and _common.compile_too_large(*fns) is None:
            self.compile_s = sum(stage_compile_seconds(sum(int(m.base.n_instructions()) for m in group))
                                 for group in self.groups if not all(m.compiled for m in group))

    def account(self, seconds: float) -> None:
        """Add ``seconds`` of CPU time spent in interpreted stage functions; compile them once
        that reaches the estimated compile time (:meth:`_jit_setup`). A chunk's seconds count
        for the whole problem's functions (:meth:`rows`)."""
        if self.owner is not None:
            self.owner.account(seconds)
            return
        with self._lock:  # chunks swept in threads report here concurrently
            self._account(seconds)

    def _account(self, seconds: float) -> None:
        if self.jit:
            return
        self.interpreted_s += seconds
        _INTERPRETED_S[self._key] = self.interpreted_s
        if self.interpreted_s - self._ledger_s >= _LEDGER_STEP_S and math.isfinite(self.compile_s):
            _write_ledger(self._key, self.interpreted_s)
            self._ledger_s = self.interpreted_s
        if self.interpreted_s >= self.compile_s:
            for group in self.groups:
                if not all(m.compiled for m in group):
                    _compile(group)
            self.jit = all(m.compiled for m in self.mapped)
            self.compile_s = math.inf
            if not self.jit:  # one attempt per process: a failed compile stays interpreted
                _COMPILE_FAILED.add(self._key)

    def rows(self, samples: slice, n: int) -> _StageFunctions:
        """These functions for the ``n`` samples ``samples`` (a chunk of this problem's): the
        same one-sample functions mapped over fewer samples, with their own work arrays; the
        compile decision stays with the whole problem's functions (:meth:`account`, :meth:`follow`)."""
        new = copy.copy(self)
        new.n, new.owner, new._buffers = n, self, {}
        remap = {id(m): m.resized(n) for m in self.mapped}
        new.groups = [tuple(remap[id(m)] for m in group) for group in self.groups]
        new.mapped = list(remap.values())
        new.stages = [copy.copy(st) for st in self.stages]
        for st in new.stages:
            st.fn, st.fm = remap[id(st.fn)], remap[id(st.fm)]
        if self.stem is not None:
            new.stem = (self.stem[0][samples], self.stem[1])
        return new

    def follow(self) -> None:
        """Load the compiled functions once the owner compiled them (a chunk's, :meth:`rows`)."""
        if self.owner is None or self.jit or not self.owner.jit:
            return
        for m, mo in zip(self.mapped, self.owner.mapped):
            if not m.compiled and mo.compiled:
                m.swap(mo.one, mo.block)
        self.jit = all(m.compiled for m in self.mapped)

    def buffer(self, k: int, nm: int, d: int) -> np.ndarray:
        """An (nm, n, d, p) work array for Q_k, one of two that alternate between the stages and
        are kept between calls (fresh arrays this size cost more in page faults than in flops)."""
        size = nm * self.n * max(self.widths) * self.p
        buf = self._buffers.get((k % 2, nm))
        if buf is None:
            buf = self._buffers[(k % 2, nm)] = np.empty(size)
        return buf[:nm * self.n * d * self.p].reshape(nm, self.n, d, self.p)


#: Samples per call of a compiled stage function's loop (:class:`_Mapped`): CasADi's map of a
#: compiled function over the samples costs ~0.2 µs a sample on top of the code (P1's block stage,
#: 336 instructions: 65 µs for 192 samples), a loop over 32 samples compiled into the same library
#: 26 µs (16: 28 µs, 64: 37 µs; scratch measurement, docs/performance.md).
BLOCK = 32


def _compile(group: tuple[_Mapped, ...], cached_only: bool = False) -> None:
    """Compile the functions of ``group`` and their loops over :data:`BLOCK` samples into one
    library (:func:`~ocp_resnet.solvers.ipopt.transcription._common.compiled_library`: one
    compiler run, one file) and swap them in; with ``cached_only`` only when the cache has it.
    Without a compiler, or when the compile fails, the functions stay interpreted."""
    from ocp_resnet.solvers.ipopt.transcription._common import compiled_library

    fns = [f for m in group for f in (m.base, m.base.map(f"{m.base.name()}_block", "serial", BLOCK,
                                                           list(m.shared), []))]
    out = compiled_library(fns, cached_only=cached_only)
    if out[0] is not fns[0]:
        for i, m in enumerate(group):
            m.swap(out[2 * i], out[2 * i + 1])


class _Mapped:
    """A one-sample function mapped over n samples, called through CasADi buffers set once (the
    inputs are copied into them, the outputs written in place).

    The inputs listed in ``shared`` (weights, γ) are the same for every sample; the others are
    (rows, n) arrays, samples as columns. Each output comes back as an (n, nnz) array of its
    nonzeros (CasADi's column-major order; ``triplets[j]`` gives their rows and columns, and
    :meth:`dense` reshapes a dense output to (n, rows, cols)). Compiled (:meth:`compile`), the
    samples go in blocks of :data:`BLOCK` through a loop compiled with the function (the last
    block padded with zero inputs whose outputs are dropped); every sample's numbers are those of
    the compiled function called alone.
    """

    def __init__(self, fn: Any, n: int, shared: tuple[int, ...] = (), constant: tuple[int, ...] = (),
                 compiled: tuple[Any, Any] | None = None) -> None:
        self.base = fn  # the one-sample SX function
        self.n, self.shared = n, shared
        # inputs that are the same array on every call (the targets): converted and set once
        self.constant = constant
        self.shapes = [(fn.size1_out(i), fn.size2_out(i)) for i in range(fn.n_out())]
        self.nnz = [fn.nnz_out(i) for i in range(fn.n_out())]
        self.triplets = [tuple(np.asarray(v, dtype=int) for v in fn.sparsity_out(i).get_triplet())
                         for i in range(fn.n_out())]
        self.swap(*(compiled or (fn, None)))  # ``compiled``: its compiled twin and loop (:meth:`swap`)

    def compile(self, cached_only: bool = False) -> None:
        """Swap in the compiled function and its loop over :data:`BLOCK` samples (:func:`_compile`)."""
        _compile((self,), cached_only)

    def swap(self, fn: Any, block: Any = None) -> None:
        """Map ``fn`` (the base function, or the same compiled, with ``block`` its compiled loop
        over :data:`BLOCK` samples) over the samples; the map and its arrays are built on the
        next call (a function compiled right after its build never builds the interpreted map)."""
        self.compiled = fn is not self.base
        self.one, self.block = fn, block  # what is mapped: the base or its compiled twins
        self._eval: Any = None

    def _build(self) -> None:
        fn, block = self.one, self.block
        f, size = (block, BLOCK) if block is not None else (fn, 1)
        count = -(-self.n // size)
        pad = count * size  # the samples past n (zeros in, ignored out) fill the last block
        buf, self._eval = f.map(f"{f.name()}_map", "serial", count, list(self.shared), []).buffer()
        # Inputs and outputs live in arrays set once: a call copies its inputs in and overwrites
        # the outputs (a fresh array per argument and call, or setting CasADi's pointers anew,
        # cost more than the copies: a sizeable part of a width-2 iteration)
        self._ins = [np.zeros(fn.nnz_in(i) if i in self.shared else (pad, fn.nnz_in(i))) for i in range(fn.n_in())]
        outs = [np.empty((pad, nnz)) for nnz in self.nnz]
        self._dummy = np.zeros(1)
        for i, a in enumerate(self._ins):
            buf.set_arg(i, (a if a.size else self._dummy).data)
        for j, o in enumerate(outs):
            buf.set_res(j, (o if o.size else self._dummy).data)
        self._buf = buf  # (holds the pointers: kept alive with the arrays)
        self.outs = [o[:self.n] for o in outs]
        self._held: dict[int, Any] = {}

    def __call__(self, *args: Any) -> list[np.ndarray]:
        """The outputs for these inputs; the arrays are overwritten by the next call (an input
        may be a view of an output: it is copied in first)."""
        if self._eval is None:
            self._build()
        for i, a in enumerate(args):
            if i in self.constant:
                if self._held.get(i) is a:
                    continue
                self._held[i] = a
            dst = self._ins[i]
            if i in self.shared:
                dst[...] = a
            elif dst.size:
                dst[:self.n] = a.T
        self._eval()
        return self.outs

    def resized(self, n: int) -> _Mapped:
        """The same function mapped over ``n`` samples (compiled if this one is)."""
        return _Mapped(self.base, n, self.shared, self.constant, (self.one, self.block) if self.compiled else None)

    def dense(self, o: np.ndarray, j: int) -> np.ndarray:
        """Output ``j`` (dense) of :meth:`__call__` as (n, rows, cols) (a transposed view)."""
        r, c = self.shapes[j]
        return o.reshape(self.n, c, r).transpose(0, 2, 1)


def _derivatives(fns: _StageFunctions, problem: Problem, w: np.ndarray, xs: list[np.ndarray], metric: bool = True,
                 hessian: bool = True, targets: list[np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """∇J(w), ∇²J(w) and the state metric M = I + (1/n) Σ_k S_kᵀS_k from the simulated states ``xs``
    (``metric=False``: M is the identity, not computed; ``hessian=False``: neither ∇²J nor ∇J is
    computed, ∇²J comes back empty and ∇J as 2λw; one of the two is asked for), in one backward sweep. ``targets`` (one
    array per stage) replace the problem's targets in the stage costs of ∇²J alone: the
    primal-dual Hessian (:class:`_Duals`), its adjoints λ' carried beside the gradient's λ (each
    stage function takes both); ∇J is always the exact gradient.

    With S_k = ∂x_k/∂w, ∇²J = (1/n) Σ_i Σ_k Z_kᵀ ∇²L_k Z_k (module docstring) is never formed from
    the S_k (that costs n·d·p² per stage): the sum over the stages j ≥ k is a quadratic form in
    S_k, Σ_{j≥k} Z_jᵀ∇²L_jZ_j = S_kᵀP_kS_k + S_kᵀQ_k + Q_kᵀS_k + R_k, and S_{k+1} = A_kS_k + B_kE_k
    gives the backward recursion (second-order adjoints, the condensing of multiple shooting)

        P_k = Hxx_k + A_kᵀ P_{k+1} A_k,   Y_k = P_{k+1} B_k E_k + Q_{k+1},   Q_k = Hxw_k E_k + A_kᵀ Y_k,
        R_k = R_{k+1} + E_kᵀ Hww_k E_k + (B_kE_k)ᵀ Y_k + [(B_kE_k)ᵀ Q_{k+1}]ᵀ,

    per sample, with P_k (d_k × d_k) and Q_k (d_k × p) small; the per-sample products with P_{k+1}
    come from the stage functions (:class:`_StageFunctions`), the products summed over the samples,
    (B_kE_k)ᵀ Y_k, cost n·d·q_k·p per stage (BLAS). M is the same recursion with Hxx = I and no
    weight terms (the cost Σ_k ½‖x_k‖²), carried in the same arrays, from its own functions. Each
    part's numbers are the same whether it is swept alone or with the other (every product is per
    part), so the two can be swept in two processes (:class:`_Derivatives`) without changing them.
    """
    n, p, N = fns.n, fns.p, fns.N
    T = problem.T
    # P, Q and U hold the ∇²J part (index h) and the M part (index m), each when asked for
    nm = int(hessian) + int(metric)
    h, m = (0 if hessian else -1), (nm - 1 if metric else -1)
    g = np.zeros(p)
    U = np.zeros((nm, p, p))  # ∇²J·n = U[h] + U[h]ᵀ, (M − I)·n = U[m] + U[m]ᵀ
    lam = lamp = np.zeros((0, n))  # λ_{k+1} of ∇J, λ'_{k+1} of ∇²J (the same without targets)
    Pn = np.zeros((nm, n, 0, 0))  # P_{k+1}
    Qn = np.zeros((nm, n, 0, p))  # Q_{k+1}, only its columns lo_{k+1}.. are set
    spent = 0.0  # CPU seconds in the stage functions
    for k in range(N, -1, -1):
        st = fns.stages[k]
        fn, K, d, e = st.fn, st.K, st.d, st.e
        lo, lo1 = fns.lo[k], fns.lo[k + 1]
        t0 = time.thread_time()  # (process_time costs ~10 µs a call here, thread_time 0.3 µs)
        # each part's function takes its P_{k+1} and returns its products with it per sample:
        # C, the lower triangle of ∇²L_k + [[AᵀPA, ·], [BᵀPA, 0]] (the metric's: I for ∇²L_k),
        # and P_{k+1}B_k on the weights of f_k
        Cs, PBs = [], []
        if hessian:
            Araw, Bnz, gL, Ch, gLp, PBh = fn(xs[k], w[K], T, lam, st.gamma, T if targets is None else targets[k],
                                             lamp, Pn[h].reshape(n, e * e).T)
            Cs.append(Ch)
            PBs.append(PBh)
        if metric:
            Am, Bm, Cm, PBm = st.fm(xs[k], w[K], Pn[m].reshape(n, e * e).T)
            if not hessian:
                Araw, Bnz = Am, Bm
            Cs.append(Cm)
            PBs.append(PBm)
        spent += time.thread_time() - t0
        A = fn.dense(Araw, 0)  # (n, e, d)
        At = A.transpose(0, 2, 1)
        if hessian:  # (the metric alone needs no adjoints)
            g[K] += gL[:, d:].sum(axis=0)
            lam = gL[:, :d].T
            lamp = lam if targets is None else gLp.T
        qf = st.fcols.size
        # Q_k = Hxw_k E_k + A_kᵀ (P_{k+1} B_k E_k + Q_{k+1}), and the terms of R_k summed over the samples
        Q = fns.buffer(k, nm, d)
        if st.wx_put is None:  # (else its x-w entries write the columns lo..lo1 whole, below)
            Q[:, :, :, lo:lo1] = 0.0
        V = None
        if st.B_batch is not None and e:
            rows, nzs, cols = st.B_batch
            V = Bnz[:, nzs].transpose(1, 2, 0)  # (rows, m, n)
        if lo1 < p:
            if e:
                np.matmul(At, Qn[:, :, :, lo1:], out=Q[:, :, :, lo1:])
                # Σ_i (B_kE_k)ᵀ Q_{k+1}, by the sparse rows of B_k
                if V is not None:
                    for j in range(nm):
                        U[j, cols, lo1:] += np.matmul(V, Qn[j][:, rows, lo1:].transpose(1, 0, 2)).reshape(cols.size, -1)
                else:
                    for j in range(nm):
                        for r, nz, cols in st.B_rows:
                            U[j, cols, lo1:] += Bnz[:, nz].T @ Qn[j, :, r, lo1:]
            else:
                Q[:, :, :, lo1:] = 0.0
        if qf:
            PB = [o.reshape(n, qf, e).transpose(0, 2, 1) for o in PBs]  # P_{k+1}B_kE_k on K[fcols]: (n, e, qf) each
            # (B_kE_k)ᵀP_{k+1}(B_kE_k) is symmetric: half of it in U; by the sparse rows of B_k
            # as above where it has them (qf times fewer flops than the dense product)
            if V is not None and st.colsKf is not None:
                for j in range(nm):
                    U[j][st.colsKf] += 0.5 * np.matmul(V, PB[j][:, rows, :].transpose(1, 0, 2)).reshape(cols.size, qf)
            else:
                B = np.zeros((n, e, qf))  # B_k E_k on the weights of f_k (K[fcols]), dense per sample: (n, e, qf)
                B[:, st.B_at[0], st.B_at[1]] = Bnz
                Bf = B.reshape(n * e, qf).T
                for j in range(nm):
                    U[j][st.KfKf] += 0.5 * (Bf @ PB[j].reshape(n * e, qf))
        # P_k = Hxx_k + A_kᵀ P_{k+1} A_k (the metric's: I + A_kᵀ P_{k+1} A_k) and Q_k's x-w
        # entries Hxw_k + A_kᵀP_{k+1}B_k, per sample from the stage function
        Pk = np.zeros((nm, n, d, d))
        i, a, b = st.xx
        Q0 = Q.reshape(nm, n, d * p)
        for j, Cj in enumerate(Cs):  # (each part on its own: stacking them would copy)
            Pk[j][:, a, b] = Cj[:, i]
            if st.wx_put is not None:
                st.wx_put.put(Q0[j], Cj)
            st.wx_add.add(Q0[j], Cj)
        if hessian:
            i, r, c, half = st.ww
            U[h, r, c] += half * Cs[h][:, i].sum(axis=0)
        Pn, Qn = Pk, Q
    if fns.stem is not None:  # x_0 = E(u): S_0 is the stem's constant Jacobian on its weights K0
        S0, K0 = fns.stem
        lo = fns.lo[0]
        if hessian:
            g[K0] += np.einsum("ndq,dn->q", S0, lam)
        S0f = S0.reshape(-1, K0.size)
        for j in range(nm):
            U[j][K0, lo:] += S0f.T @ Qn[j, :, :, lo:].reshape(-1, p - lo)
            U[j][np.ix_(K0, K0)] += 0.5 * (S0f.T @ np.matmul(Pn[j], S0).reshape(-1, K0.size))
    fns.account(spent)
    lamb = problem.objective.weight_decay
    g = g / n + 2.0 * lamb * w
    if hessian:
        Hs = (U[h] + U[h].T) / n
        Hs[np.diag_indices(p)] += 2.0 * lamb
    else:
        Hs = np.zeros((0, 0))
    M = (U[m] + U[m].T) / n if metric else np.zeros((p, p))
    M[np.diag_indices(p)] += 1.0
    return g, Hs, M


class _LazyMetric:
    """The derivatives of each iteration with the states metric M formed only every ``every``
    iterations (the ``metric`` of :func:`_derivatives`), the last one kept in between; without
    the states region (``states=False``) M is the identity."""

    def __init__(self, states: bool, every: int) -> None:
        self.states, self.every = states, every
        self.M: np.ndarray | None = None
        self.age = 0

    def derivatives(self, sweep: _Derivatives, w: np.ndarray, xs: list[np.ndarray],
                    targets: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """∇J(w), ∇²J(w) (by ``sweep``, with ``targets`` the primal-dual one) and the metric to use at w."""
        fresh = self.states and (self.M is None or self.age >= self.every)
        g, H, M = sweep(w, xs, metric=fresh, targets=targets)
        if fresh:
            self.M, self.age = M, 0
        self.age += 1
        return g, H, self.M if self.M is not None else M


def _stage_seeds(problem: Problem, w: np.ndarray, xs: list[np.ndarray] | None = None) -> list[np.ndarray | None]:
    """∂ℓ/∂ŷ_k per sample at w (:func:`~ocp_resnet.model.objective.loss_gradient`) for the stages
    that have a cost (γ_k ≠ 0; None for the others), from the states ``xs`` when given."""
    spec, obj = problem.spec, problem.objective
    with np.errstate(all="ignore"):
        zs = getattr(xs, "outputs", None)  # (:class:`_States`: computed with J there)
        if zs is None:
            P = spec.unflatten(w)
            if xs is None:
                xs = arch.trajectory(spec, P, problem.U, NUMPY)
            zs = arch.stage_outputs(spec, P, xs, NUMPY)
        return [objective_mod.loss_gradient(obj, z, problem.T) if gam != 0.0 else None
                for z, gam in zip(zs, obj.stage_weights(spec.n_blocks))]


#: relative size of the forward difference that linearises the loss gradients (:class:`_Duals`)
_FD_STEP = 1e-6


class _Duals:
    """The multipliers of the primal-dual Hessian (``NewtonOptions.curvature``).

    ∇²J weighs the second derivatives of each stage output ŷ_k by the loss gradient there, the
    "multiplier" y_k = ∂ℓ/∂ŷ_k (the adjoints of the sweep start from it). The primal Hessian takes
    y at the new point; the primal-dual one carries it as its linearisation along the step,
    y⁺ = y(w) + Dy(w)[s] — Newton's update of y as a variable of its own, what a primal-dual
    interior-point method does for its barrier's multipliers — and builds ∇²J with it by
    replacing the targets t of each stage cost by t' = t + y(w⁺) − y⁺ (every loss is affine in t
    with slope −1: the adjoints then start from y⁺). Where a weakly regularised net fits its data
    almost exactly, J is a quadratic penalty of a curved manifold of exact fits, where the primal
    Newton model is only good over short steps; with y⁺ the model follows the manifold's
    curvature. y⁺ − y(w⁺) = O(‖s‖²), so the Hessian is exact in the limit (fast local
    convergence), and ∇J is always the exact gradient."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.y: list[np.ndarray | None] | None = None  # None: the primal Hessian (the first iteration)
        self._at: tuple[np.ndarray, list[np.ndarray | None]] | None = None  # y(w) of the last targets

    def _seeds(self, w: np.ndarray, xs: list[np.ndarray]) -> list[np.ndarray | None]:
        if self._at is not None and self._at[0] is w:
            return self._at[1]
        seeds = _stage_seeds(self.problem, w, xs)
        self._at = (w, seeds)
        return seeds

    def targets(self, w: np.ndarray, xs: list[np.ndarray]) -> list[np.ndarray] | None:
        """The targets t' of each stage at w (None before the first step: the primal Hessian)."""
        seeds = self._seeds(w, xs)
        if self.y is None:
            return None
        T = self.problem.T
        return [T if y is None or s is None else T + s - y for s, y in zip(seeds, self.y)]

    def step(self, w: np.ndarray, s: np.ndarray, xs: list[np.ndarray]) -> None:
        """Carry y over the accepted step w → w + s (``xs`` the states at w): y(w) + Dy(w)[s], the
        directional derivative by a forward difference of relative size :data:`_FD_STEP` (its
        error, O(h‖s‖²), is far below the O(‖s‖²) by which y⁺ differs from y(w + s) anyway)."""
        size = float(np.max(np.abs(s), initial=0.0))
        if size == 0.0:
            return
        h = _FD_STEP * (1.0 + float(np.max(np.abs(w)))) / size
        y0 = self._seeds(w, xs)
        yh = _stage_seeds(self.problem, w + h * s)
        self.y = [None if a is None or b is None else a + (b - a) / h for a, b in zip(y0, yh)]


def exact_derivatives(problem: Problem, w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """J(w), ∇J(w) and the exact Hessian ∇²J(w) (dense, symmetric) of the condensed objective,
    assembled stage by stage as the Newton path does (:func:`_derivatives`, without the metric).

    Needs a twice-differentiable activation. Where J or its derivatives overflow the values are
    not finite (no error): the caller checks.
    """
    why = smooth_activation_error(problem, "the exact Hessian")
    if why is not None:
        raise ValidationError(why)
    w = np.asarray(w, dtype=float).ravel()
    if w.size != problem.spec.n_params:
        raise ValidationError(f"the weights have {w.size} entries, this spec needs {problem.spec.n_params}")
    J, xs = _objective(problem, w)
    with np.errstate(all="ignore"):
        g, H, _ = derivatives_of(problem)(w, xs, metric=False)
    return J, g, H


#: The stage functions of each live problem: a solve, its restarts and retries and the
#: certificate after it share one build (and one compile decision).
_BUILT: weakref.WeakKeyDictionary[Problem, _StageFunctions] = weakref.WeakKeyDictionary()


def stage_functions(problem: Problem) -> _StageFunctions:
    """The :class:`_StageFunctions` of ``problem``, built on first use."""
    fns = _BUILT.get(problem)
    if fns is None:
        fns = _BUILT[problem] = _StageFunctions(problem)
    return fns


#: Bytes of one second-order-adjoint work array (n·d·p floats, :func:`_derivatives`) above which
#: the samples are swept in chunks (each chunk's arrays closer to the cache), which two threads
#: can then share. On this project's 2-core machine (2 MiB L2 per core), spirals n = 2000, 20
#: blocks of width 4 (p = 410, 26 MB), quiet machine, ms per call with / without the metric:
#: one piece 351 / 185, two chunks 286 / 173, four 263 / 180; two chunks in two threads
#: 179 / 101, four in two 202 / 121. Below this size chunks only cost: at 4 MB (width 6,
#: n = 210, p = 392) two chunks took 27 / 18 ms serially and 19 / 14 in two threads against
#: 20 / 13 in one piece (``benchmarks/newton_derivatives.py --chunks 1,2 --threads 1,2``).
CHUNK_BYTES = 16 * 2**20
#: the fewest samples in a chunk (below, numpy's per-call overhead outweighs the cache)
CHUNK_MIN_SAMPLES = 128
#: the most threads :func:`auto_threads` gives a solve
MAX_THREADS = 4


def auto_threads() -> int:
    """Threads for a Newton solve's derivative sweeps: ``OCP_RESNET_THREADS`` when set (the
    workers of parallel sweeps set it to 1), else the cores this process may run on, at most
    :data:`MAX_THREADS`."""
    env = os.environ.get("OCP_RESNET_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValidationError(f"OCP_RESNET_THREADS must be a whole number of threads, got {env!r}") from None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


#: how often a sweep that may use threads times the other way again (calls)
_PROBE_EVERY = 25
#: the cost of a sweep without the metric relative to one with it (so both time the same scale)
_NO_METRIC_SHARE = 0.55

_POOL: Any = None


def _pool() -> Any:
    """The threads that sweep chunks (started on first use: most solves never need them)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="ocp-resnet-sweep")
    return _POOL


#: The size n·d·p (samples × widest state × weights) from which an unchunked sweep may put the
#: metric's part in a worker process (:meth:`_Derivatives._worker`): below, the process's
#: hand-offs (~0.2 ms a call) eat what it gains.
SPLIT_MIN_SIZE = 20_000
#: ... and only after this many sweeps of the problem in one process: starting the worker costs
#: about a sweep (the fork, copy-on-write faults in the parent; the child's set-up runs beside a
#: sweep), which a solve of a few iterations does not earn back. Interleaved over the census, 5
#: against 30: wall sum 76.7 → 73.1 s, CPU even (docs/performance.md, "Cost of a Newton iteration").
SPLIT_AFTER = 5


def split_size(problem: Problem) -> int:
    """n·d·p of ``problem``: the size of a second-order-adjoint work array, in floats."""
    return problem.n_samples * max(problem.spec.widths) * problem.spec.n_params


def _usable_threads(threads: int, chunks: int, split: bool) -> int:
    """Threads a sweep of ``chunks`` chunks can use: one per chunk; for one piece two where its
    metric's part may go to a worker process (``split``), else one."""
    return max(1, min(int(threads), chunks if chunks > 1 else 1 + int(split)))


def sweep_chunks(problem: Problem) -> int:
    """How many chunks of samples :class:`_Derivatives` sweeps ``problem`` in (sizes alone)."""
    n = problem.n_samples
    return max(1, min(math.ceil(8.0 * split_size(problem) / CHUNK_BYTES), n // CHUNK_MIN_SAMPLES))


def _median(values: list[float]) -> float:
    """The median of a few timings (np.median costs ~0.1 ms a call and imports numpy.ma on its
    first, ~15 ms: P1 called it twice an iteration)."""
    s = sorted(values)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


class _Derivatives:
    """∇J, ∇²J and M of one problem at simulated states (:func:`_derivatives`), swept over
    chunks of samples when the work arrays outgrow :data:`CHUNK_BYTES`, the chunks shared by up
    to ``threads`` threads (the chunks are fixed by the sizes, so the threads never change the
    numbers). Each term of J is a
    mean over the samples, so the whole is the sample-weighted mean of the chunks' (the weight
    decay's terms too, since the weights sum to one); the chunks are summed in a fixed order,
    so the result does not depend on which thread finished first."""

    def __init__(self, problem: Problem, chunks: int | None = None, threads: int = 1) -> None:
        self.problem = problem
        self.fns = stage_functions(problem)
        n = problem.n_samples
        if chunks is None:  # by the sizes alone, so the numbers do not depend on the threads
            chunks = sweep_chunks(problem)
        chunks = max(1, min(int(chunks), n))
        self._split = chunks == 1 and can_fork() and split_size(problem) >= SPLIT_MIN_SIZE
        self.threads = _usable_threads(threads, chunks, self._split)
        self._calls = 0
        #: wall seconds of the last three calls each way, serial [False] and threaded [True]
        #: (metric-equivalent)
        self._seconds: dict[bool, list[float]] = {False: [], True: []}
        bounds = [round(i * n / chunks) for i in range(chunks + 1)]
        self.parts = [(problem.rows(sl), self.fns.rows(sl, sl.stop - sl.start), sl)
                      for sl in (slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]))] if chunks > 1 else []
        #: one piece: the metric's part may be swept in a worker process (:meth:`_worker`)
        self._metric_worker: ForkedCall | None = None
        #: a worker process was started and not called yet: its first call pays for the child's
        #: set-up, so it runs beside a whole sweep here, not waited for, and neither is timed (timed,
        #: it made P1's one process look the faster way, and the solve then kept the slower one)
        self._fresh_worker = False
        self._sweeps = 0  # one-piece sweeps so far (:data:`SPLIT_AFTER`)
        #: the last M from the worker and its inverse Cholesky factor (:meth:`inverse_factor`)
        self.factor: tuple[np.ndarray, np.ndarray] | None = None

    def _threaded(self) -> bool:
        """Whether this call runs in parallel (the chunks in threads, or one piece's metric in
        the worker process: :meth:`_one_piece`). Threads pay only while cores are free
        (on a loaded 2-core machine they made the n = 2000 sweep 1.5x slower), so both ways are
        timed on the first calls and again every :data:`_PROBE_EVERY` calls, and the faster
        (median wall time) is used; the numbers are the same either way."""
        if self.threads <= 1:
            return False
        self._calls += 1
        serial, threaded = self._seconds[False], self._seconds[True]
        # three timings each way before the first choice: the median of two is their mean, and one
        # slow call of this VM's jitter (P1: ~1 ms on a 2.5 ms sweep) then decided the whole solve
        if len(threaded) < 3 or self._calls % _PROBE_EVERY == 0:
            return True
        if len(serial) < 3 or self._calls % _PROBE_EVERY == 1:
            return False
        return _median(threaded) < _median(serial)

    @property
    def splits(self) -> bool:
        """Whether the metric's part may be swept in a worker process (:meth:`_worker`)."""
        return self._split and self.threads > 1

    @property
    def chunks(self) -> int:
        """How many chunks of samples a call sweeps."""
        return max(1, len(self.parts))

    def __call__(self, w: np.ndarray, xs: list[np.ndarray], metric: bool = True,
                 targets: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """∇J, ∇²J and M at w (:func:`_derivatives`; ``targets``: ∇²J is the primal-dual Hessian)."""
        if not self.parts:
            return self._one_piece(w, xs, metric, targets)
        n = self.problem.n_samples
        p = w.size
        for _, fns, _ in self.parts:
            fns.follow()
        jobs = [(fns, sub, w, [x[:, sl] for x in xs], metric, True,
                 None if targets is None else [t[:, sl] for t in targets])
                for sub, fns, sl in self.parts]
        threaded = self._threaded()
        t0 = time.perf_counter()
        if threaded:
            results = [f.result() for f in [_pool().submit(_derivatives, *job) for job in jobs]]
        else:
            results = [_derivatives(*job) for job in jobs]
        if self.threads > 1:
            self._timed(threaded, (time.perf_counter() - t0) / (1.0 if metric else _NO_METRIC_SHARE))
        g, H, M = np.zeros(p), np.zeros((p, p)), np.zeros((p, p))
        for (sub, _, _), (gi, Hi, Mi) in zip(self.parts, results):
            share = sub.n_samples / n
            g += share * gi
            H += share * Hi
            M += share * Mi
        return g, H, M

    def _one_piece(self, w: np.ndarray, xs: list[np.ndarray], metric: bool, targets: list[np.ndarray] | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sweep of an unchunked problem (:func:`_derivatives`), or, when that is the faster
        way (timed as for chunks), the metric's part in a forked worker process
        (:mod:`~ocp_resnet.solvers.forked`) while this one sweeps ∇J's and ∇²J's: the same numbers."""
        worker = self._worker(metric)
        if worker is not None and self._fresh_worker:
            # a new worker's first call pays for its own set-up (building its maps: ~5 ms at P1):
            # it starts on this call's inputs, its answer dropped, while this process sweeps the
            # whole itself (neither way timed)
            self._fresh_worker = False
            try:
                self._start(worker, w, xs)
            except RuntimeError:
                self._drop(worker)
            return _derivatives(self.fns, self.problem, w, xs, metric, True, targets)
        split = worker is not None and self._threaded()
        t0 = time.perf_counter()
        if worker is not None and split:
            try:
                self._start(worker, w, xs)
                g, H, _ = _derivatives(self.fns, self.problem, w, xs, False, True, targets)
                M = worker.result()
                if M.ndim == 3:  # M and its inverse Cholesky factor
                    M, Linv = M
                    if np.all(np.isfinite(Linv)):
                        self.factor = (M, Linv)
            except RuntimeError:
                self._drop(worker)
                return _derivatives(self.fns, self.problem, w, xs, metric, True, targets)
        else:
            g, H, M = _derivatives(self.fns, self.problem, w, xs, metric, True, targets)
        if worker is not None:
            self._timed(split, time.perf_counter() - t0)
        return g, H, M

    def _start(self, worker: ForkedCall, w: np.ndarray, xs: list[np.ndarray]) -> None:
        """Start the worker's sweep of the metric at w and the states ``xs`` (after its previous
        answer: the shared inputs are the child's until then)."""
        worker.wait()
        _to_shared(worker, w, xs)
        worker.submit(self.fns.jit)

    def _drop(self, worker: ForkedCall) -> None:
        """The worker died (killed, out of memory): on in one process."""
        self._split = False
        worker.close()

    def _timed(self, parallel: bool, seconds: float) -> None:
        """Keep the last three timings of one way (:meth:`_threaded` compares their medians)."""
        recent = self._seconds[parallel]
        recent.append(seconds)
        del recent[:-3]

    def inverse_factor(self, M: np.ndarray | None) -> np.ndarray | None:
        """L⁻¹ of M = L Lᵀ when the worker computed it with M (this very array), else None."""
        if M is None or self.factor is None or self.factor[0] is not M:
            return None
        return self.factor[1]

    def release(self) -> None:
        """End the metric's worker process (a later call starts another)."""
        if self._metric_worker is not None:
            self._metric_worker.close()
            self._metric_worker = None

    def _worker(self, metric: bool) -> ForkedCall | None:
        """The process that sweeps the metric, started on first use, or None where the metric
        is not asked for, the problem is too small to gain (:data:`SPLIT_MIN_SIZE`), it has not
        been swept :data:`SPLIT_AFTER` times yet, only one thread is allowed or this platform
        cannot fork."""
        if not (metric and self._split and self.threads > 1):
            return None
        if self._metric_worker is None:
            self._sweeps += 1
            if self._sweeps <= SPLIT_AFTER:
                return None
            twin = self.fns.rows(slice(0, self.fns.n), self.fns.n)
            # the worker's copy decides nothing: its time does not count for the compile and it never
            # compiles (it loads what the parent compiled: _metric_sweep)
            twin.owner, twin.compile_s = None, math.inf
            try:
                self._metric_worker = ForkedCall(functools.partial(_metric_sweep, twin, self.problem),
                                                 (2,) * _eigen_path(self.fns.p) + (self.fns.p, self.fns.p),
                                                 name="metric worker",
                                                 inputs=self.fns.p + sum(self.fns.widths) * self.fns.n)
                self._fresh_worker = True
            except (OSError, RuntimeError, AssertionError):  # no process to be had: one process it is
                self._split = False
                return None
        return self._metric_worker


def _to_shared(worker: ForkedCall, w: np.ndarray, xs: list[np.ndarray]) -> None:
    """Write w and the states x_0..x_N into the worker's shared inputs (:func:`_from_shared`):
    pickling them through the pipe cost ~0.15 ms a call at P1's size."""
    buf = worker.inputs
    assert buf is not None
    buf[:w.size] = w
    at = w.size
    for x in xs:
        buf[at:at + x.size].reshape(x.shape)[...] = x
        at += x.size


def _from_shared(fns: _StageFunctions, buf: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """w and the states (views of the shared inputs) that :func:`_to_shared` wrote."""
    w, xs, at = buf[:fns.p], [], fns.p
    for d in fns.widths:
        xs.append(buf[at:at + d * fns.n].reshape(d, fns.n))
        at += d * fns.n
    return w, xs


def _metric_sweep(fns: _StageFunctions, problem: Problem, shared: np.ndarray, jit: bool) -> np.ndarray:
    """M (and, on the eigendecomposition's path, :func:`_eigen_path`, its inverse Cholesky factor,
    stacked) at the w and states in ``shared`` (:func:`_to_shared`;
    :func:`_derivatives`' metric part alone) in the worker process of :meth:`_Derivatives._worker`:
    with the compiled stage functions once the parent has them (loaded from the compile cache; the
    same numbers either way), and never compiling itself."""
    w, xs = _from_shared(fns, shared)
    if jit and not fns.jit:
        for group in fns.groups:
            if not all(m.compiled for m in group):
                _compile(group, cached_only=True)
        fns.jit = all(m.compiled for m in fns.mapped)
    with np.errstate(all="ignore"):
        M = _derivatives(fns, problem, w, xs, True, False)[2]
    if not _eigen_path(fns.p):
        return M
    # and M's inverse Cholesky factor, which the solve needs next (:func:`_eigh_metric`): here,
    # while the solve's own process still sweeps ∇²J (NaN where M is not positive definite)
    try:
        Linv = _inverse_factor(M)
    except np.linalg.LinAlgError:
        Linv = np.full_like(M, np.nan)
    return np.stack([M, Linv])


#: The derivative sweeps of each live problem (the solve, its restarts and its certificate).
_SWEEPS: weakref.WeakKeyDictionary[Problem, _Derivatives] = weakref.WeakKeyDictionary()


def derivatives_of(problem: Problem, threads: int | None = None) -> _Derivatives:
    """The :class:`_Derivatives` of ``problem``, built on first use; ``threads`` (None: as
    before, else up to that many) only changes how its chunks are shared out, never its numbers."""
    d = _SWEEPS.get(problem)
    if d is None:
        d = _SWEEPS[problem] = _Derivatives(problem, threads=threads or 1)
    elif threads is not None:
        d.threads = _usable_threads(threads, d.chunks, d._split)
    return d


class _States(list[np.ndarray]):
    """The states x_0..x_N of one point, with the stage outputs ŷ_k that J was computed from
    (``outputs``): the primal-dual model's targets at an accepted point reuse them."""

    outputs: list[np.ndarray] | None = None


def _objective(problem: Problem, w: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """J(w) and the states x_0..x_N (numpy, the same formulas as :meth:`Problem.objective_value`)."""
    spec = problem.spec
    P = spec.unflatten(w)
    with np.errstate(all="ignore"):
        xs = _States(arch.trajectory(spec, P, problem.U, NUMPY))
        xs.outputs = arch.stage_outputs(spec, P, xs, NUMPY)
        cost = objective_mod.sample_cost(spec, problem.objective, P, xs, problem.T, NUMPY, outputs=xs.outputs)
        J = float(np.mean(cost)) + objective_mod.regularization(problem.objective, w, NUMPY)
    return J, xs


# --------------------------------------------------------------------------- trust-region step
def _inverse_factor(M: np.ndarray) -> np.ndarray:
    """L⁻¹ for the Cholesky factor M = L Lᵀ of a symmetric positive definite M."""
    return np.linalg.inv(np.linalg.cholesky(M))


def _eigh_metric(H: np.ndarray, M: np.ndarray, Linv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The generalised eigendecomposition H Q = M Q diag(μ), Qᵀ M Q = I, μ ascending (M symmetric
    positive definite): Cholesky M = L Lᵀ, then the ordinary one of L⁻¹ H L⁻ᵀ — what LAPACK's
    sygv does behind ``scipy.linalg.eigh(H, M)``, with numpy alone (importing scipy.linalg costs
    ~0.2 s of every solve's start-up). ``Linv``: L⁻¹ when known (:func:`_inverse_factor`)."""
    if Linv is None:
        Linv = _inverse_factor(M)
    C = Linv @ H @ Linv.T
    mu, V = np.linalg.eigh(0.5 * (C + C.T))
    return mu, Linv.T @ V


def _tr_step(mu: np.ndarray, Q: np.ndarray, g: np.ndarray, radius: float) -> tuple[np.ndarray, float, bool]:
    """min g·s + ½ sᵀHs subject to ‖s‖ ≤ radius, with H = Q diag(μ) Qᵀ (μ ascending).

    Returns the step, the predicted decrease (> 0) and whether the step is the interior Newton
    step. On the boundary σ ≥ max(0, −μ_min) solves ‖(H + σI)⁻¹g‖ = radius (secular equation,
    safeguarded Newton on 1/‖s(σ)‖); in the hard case (g ⟂ the lowest eigenvectors) the
    lowest eigenvector fills the step up to the boundary.
    """
    a = Q.T @ g
    if mu[0] > 0.0:
        z = -a / mu
        if np.linalg.norm(z) <= radius:
            return Q @ z, float(-(a @ z + 0.5 * (mu * z) @ z)), True
    lo = max(0.0, -float(mu[0]))
    scale = max(abs(float(mu[0])), abs(float(mu[-1])), 1e-300)
    anorm = float(np.linalg.norm(a))
    low = mu <= mu[0] + 1e-12 * scale  # the (numerically) lowest eigenspace
    # hard case: at σ = −μ_min the rest of the step is still inside the region
    if mu[0] <= 0.0 and float(np.linalg.norm(a[low])) <= 1e-12 * max(anorm, 1e-300):
        z = np.zeros_like(a)
        rest = ~low
        z[rest] = -a[rest] / (mu[rest] + lo)
        nz = float(np.linalg.norm(z))
        if nz <= radius:
            z[np.flatnonzero(low)[0]] = math.sqrt(max(radius**2 - nz**2, 0.0))
            return Q @ z, float(-(a @ z + 0.5 * (mu * z) @ z)), False

    def norm_s(sig: float) -> tuple[float, float]:
        z = a / (mu + sig)
        nz = float(np.linalg.norm(z))
        dnz = -float(z @ (z / (mu + sig))) / max(nz, 1e-300)  # d‖s‖/dσ
        return nz, dnz

    # ‖s(σ)‖ falls from +inf at σ = lo; at `right` every μ_i + σ ≥ ‖g'‖/radius, so ‖s‖ ≤ radius
    left, right = lo, lo + anorm / radius + scale
    sig = right
    for _ in range(100):
        nz, dnz = norm_s(sig)
        if abs(nz - radius) <= 1e-10 * radius:
            break
        if nz > radius:
            left = sig
        else:
            right = sig
        # Newton on φ(σ) = 1/‖s(σ)‖ − 1/radius (nearly linear in σ), bisection when it leaves the bracket
        new = sig - (1.0 / nz - 1.0 / radius) / (-dnz / nz**2)
        sig = new if left < new < right else 0.5 * (left + right)
        if right - left <= 1e-15 * max(right, 1.0):
            break
    z = -a / (mu + sig)
    return Q @ z, float(-(a @ z + 0.5 * (mu * z) @ z)), False


#: Weights from which the trust-region subproblem is solved by Cholesky factorisations of
#: H + σM (Moré–Sorensen) instead of one eigendecomposition: a p×p eigh costs ~20 Cholesky
#: factorisations (p = 392: 62 ms against 3 ms, one thread), and Moré–Sorensen needs a few.
#: Below it the eigendecomposition is cheap (p = 63: 0.5 ms) and scipy is not imported.
CHOLESKY_MIN_PARAMS = 100
#: Factorisations after which Moré–Sorensen gives up for the eigendecomposition (the hard case,
#: g nearly orthogonal to the lowest eigenvectors, converges slowly or not at all).
_MS_MAX_FACTORISATIONS = 30
#: Relative accuracy of ‖s‖_M = radius on the boundary (a step of M-norm within 1e-4 of the
#: radius is the exact solution for that radius): Newton on the secular equation converges
#: quadratically, so the last digits cost about one factorisation per step.
_MS_RTOL = 1e-4


def _eigen_path(p: int) -> bool:
    """Whether a subproblem of ``p`` weights is solved by one eigendecomposition (:class:`_Subproblem`)."""
    return p < CHOLESKY_MIN_PARAMS


class _Subproblem:
    """min g·s + ½ sᵀHs subject to ‖s‖_M ≤ radius for one iteration's H, M (None: ‖s‖₂) and g,
    solved for as many radii as the iteration tries.

    For p ≥ :data:`CHOLESKY_MIN_PARAMS`: Moré–Sorensen, i.e. the σ ≥ max(0, −λ_min(H, M)) with
    ‖(H + σM)⁻¹g‖_M = radius by safeguarded Newton on 1/‖s(σ)‖_M, one Cholesky factorisation of
    H + σM per trial σ (a failed one raises the lower bound on σ), to the relative accuracy
    :data:`_MS_RTOL`. Below that size, or when Moré–Sorensen does not converge, the
    eigendecomposition and :func:`_tr_step` (hard case included). ``indefinite`` says whether H
    has negative curvature (its Cholesky factorisation at σ = 0 failed, or λ_min < 0).
    """

    def __init__(self, H: np.ndarray, M: np.ndarray | None, g: np.ndarray, sigma0: float = 0.0,
                 Linv: np.ndarray | None = None) -> None:
        self.H, self.M, self.g = H, M, g
        self.Linv = Linv  # M's inverse Cholesky factor when known (:func:`_eigh_metric`)
        self.p = g.size
        self.eig: tuple[np.ndarray, np.ndarray] | None = None
        # the shift of the last step (the trust region's multiplier); the first guess is the
        # previous iteration's, which is usually close
        self.sigma = sigma0 if math.isfinite(sigma0) else 0.0
        self.factorisations = 0
        self.fallbacks = 0
        self.newton: np.ndarray | None = None
        self.indefinite: bool = False
        self.cholesky = not _eigen_path(self.p)
        if not self.cholesky:
            self._eigen()
            assert self.eig is not None
            self.indefinite = bool(self.eig[0][0] < 0)
            return
        # LAPACK directly: scipy.linalg's cho_factor / cho_solve wrappers cost more than a
        # factorisation of this size, and a failed potrf tells where it failed (see _factor)
        from scipy.linalg import lapack  # type: ignore[import-untyped]

        self._lapack = lapack
        self.Mx = np.eye(self.p) if M is None else M
        # bounds on σ: Rayleigh quotients of the unit vectors give λ_min(H, M) ≤ min H_ii/M_ii,
        # and since M ⪰ I, at σ = ‖H‖_F + ‖g‖/radius the step is inside any region of that radius
        self.lo = max(0.0, float(np.max(-np.diag(H) / np.diag(self.Mx))))
        self.hnorm = float(np.linalg.norm(H))
        self.f0 = self._factor(0.0)
        self.indefinite = self.f0 is None
        if self.f0 is not None:
            self.newton = -self._solve(self.f0, g)

    def _eigen(self) -> tuple[np.ndarray, np.ndarray]:
        if self.eig is None:
            self.eig = _eigh_metric(self.H, self.M, self.Linv) if self.M is not None else np.linalg.eigh(self.H)
        return self.eig

    def _factor(self, sigma: float) -> np.ndarray | None:
        """The lower Cholesky factor of H + σM (upper triangle not cleared), or None when it is not
        positive definite; then ``lo`` (the lower bound on σ) rises to at least σ, and past it by
        the Rayleigh quotient of the vector the failed factorisation exhibits: where the leading
        minor of order k + 1 is the first not positive, z = (−A₁₁⁻¹a, 1, 0…) has
        zᵀ(H + σM)z ≤ 0, so λ_min(H, M) ≤ zᵀHz / zᵀMz."""
        self.factorisations += 1
        A = self.H + sigma * self.Mx
        # A is symmetric, so its transpose is the Fortran-ordered array LAPACK factors in place
        L, info = self._lapack.dpotrf(A.T, lower=1, clean=0, overwrite_a=1)
        if info == 0:
            return L  # type: ignore[no-any-return]
        self.lo = max(self.lo, sigma)
        k = int(info) - 1
        if k >= 0:
            z = np.zeros(self.p)
            z[k] = 1.0
            if k > 0:
                a = self.H[:k, k] + sigma * self.Mx[:k, k]
                z[:k] = -self._lapack.dpotrs(L[:k, :k], a, lower=1)[0]
            zMz = float(z @ self.Mx @ z)
            if zMz > 0.0:
                bound = -float(z @ self.H @ z) / zMz
                if math.isfinite(bound):
                    self.lo = max(self.lo, bound)
        return None

    def _solve(self, L: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._lapack.dpotrs(L, b, lower=1)[0]  # type: ignore[no-any-return]

    def norm(self, s: np.ndarray) -> float:
        """‖s‖ in the region's metric: √(sᵀMs), or ‖s‖₂ without M."""
        return float(np.linalg.norm(s)) if self.M is None else float(np.sqrt(s @ self.M @ s))

    def _pred(self, s: np.ndarray) -> float:
        return float(-(self.g @ s + 0.5 * s @ (self.H @ s)))

    def step(self, radius: float) -> tuple[np.ndarray, float, bool]:
        """The step for ``radius``, its predicted decrease and whether it is the interior Newton step."""
        if not self.cholesky or self.eig is not None:
            return self._eigen_step(radius)
        if self.newton is not None and self.norm(self.newton) <= radius:
            self.sigma = 0.0
            return self.newton, self._pred(self.newton), True
        lo, hi = self.lo, self.hnorm + float(np.linalg.norm(self.g)) / radius
        sigma = min(max(self.sigma, lo), hi) if self.sigma > 0 else lo
        for _ in range(_MS_MAX_FACTORISATIONS):
            f = self.f0 if sigma == 0.0 else self._factor(sigma)
            if f is None:  # H + σM not positive definite: σ is below −λ_min
                lo = max(lo, self.lo)
                # the previous iteration's σ, just below the new −λ_min, is the usual failure:
                # doubling the bound stays near it (the bracket's middle can be orders above)
                sigma = 2.0 * lo if 0.0 < 2.0 * lo < hi else max(np.sqrt(max(lo, 1e-300) * hi), lo + 0.01 * (hi - lo))
                continue
            s = -self._solve(f, self.g)
            Ms = self.Mx @ s
            ns = float(np.sqrt(s @ Ms))
            if abs(ns - radius) <= _MS_RTOL * radius:
                self.sigma = sigma
                return s, self._pred(s), False
            if ns < radius:
                hi = sigma
            else:
                lo = sigma
            # Newton on φ(σ) = 1/‖s(σ)‖_M − 1/radius: φ' = ‖L⁻¹Ms‖² / ‖s‖³
            q = self._lapack.dtrtrs(f, Ms, lower=1)[0]
            new = sigma + (ns / max(float(np.linalg.norm(q)), 1e-300)) ** 2 * (ns - radius) / radius
            sigma = new if lo < new < hi else 0.5 * (lo + hi)
            if hi - lo <= 1e-15 * max(hi, 1.0):
                break
        self.fallbacks += 1
        return self._eigen_step(radius)

    def min_eig_text(self) -> str:
        """λ_min(H, M) for the log when the eigendecomposition was computed, else its sign
        (what the Cholesky factorisation at σ = 0 told)."""
        if self.eig is not None:
            return f"{self.eig[0][0]:.2e}"
        return "< 0" if self.indefinite else "> 0"

    def _eigen_step(self, radius: float) -> tuple[np.ndarray, float, bool]:
        mu, Q = self._eigen()
        self.indefinite = bool(mu[0] < 0)
        s, pred, interior = _tr_step(mu, Q, self.g, radius)
        self.sigma = 0.0 if interior else float("nan")
        return s, pred, interior


def stop_test(g: np.ndarray, finite: bool, J: float, it: int, tol: float, max_iter: int,
              say: Callable[[str], None] | None) -> tuple[Status | None, float]:
    """The convergence test at the top of a trust-region iteration, and ‖g‖_∞: ``NAN`` when g
    or the rest of the model (``finite``) is not finite, ``SUCCESS`` when ‖g‖_∞ ≤ ``tol`` (its
    last log line said), ``MAX_ITER`` after ``max_iter`` iterations, else None (go on)."""
    gnorm = float(np.max(np.abs(g), initial=0.0))
    if not (finite and np.all(np.isfinite(g))):
        return Status.NAN, gnorm
    if gnorm <= tol:
        if say:
            say(f"{it:>5} {J:>22.15e} {gnorm:>10.3e}")
        return Status.SUCCESS, gnorm
    if it >= max_iter:
        return Status.MAX_ITER, gnorm
    return None, gnorm


def log_iteration(say: Callable[[str], None] | None, it: int, J: float, gnorm: float, snorm: float, radius: float,
                  rho: float, detail: str, trials: int) -> None:
    """One line of a trust-region solver's log (``detail``: the solver's own column)."""
    if say:
        say(f"{it:>5} {J:>22.15e} {gnorm:>10.3e} {snorm:>9.2e} {radius:>9.2e} {rho:>9.2e} {detail} {trials:>6}")


def collapsed(stats: dict[str, Any], path: str) -> Status:
    """``ERROR``, with the reason in ``stats``: no trial along ``path`` decreased J."""
    stats["reason"] = f"the trust region collapsed: no decrease along {path}"
    return Status.ERROR


def reduction_ratio(J: float, Jt: float, pred: float, interior: bool) -> float:
    """ρ = actual / predicted decrease of a trust-region trial J → Jt (``pred`` > 0 predicted).
    Where both are below J's rounding error the model is trusted (1, or ½ on the boundary); a
    non-finite trial value is an infinite increase."""
    ared = J - Jt if math.isfinite(Jt) else -math.inf
    noise = 1e-13 * max(1.0, abs(J))
    if pred <= noise and abs(ared) <= 10 * noise:
        return 1.0 if interior else 0.5
    return ared / pred if pred > 0 else -math.inf


def _trial(problem: Problem, w: np.ndarray, J: float, J_ref: float, sub: _Subproblem, radius: float
           ) -> tuple[np.ndarray, float, bool, float, list[np.ndarray], float, float]:
    """The trust-region step of ``radius``, its norm in the region's metric, whether it is
    interior, J and the states at w + s, ρ = actual / predicted decrease, and the ratio that
    decides acceptance: the decrease measured from ``J_ref`` (≥ J, the non-monotone reference)
    instead of J."""
    s, pred, interior = sub.step(radius)
    Jt, xst = _objective(problem, w + s)
    rho = reduction_ratio(J, Jt, pred, interior)
    accept = rho
    if J_ref > J and math.isfinite(Jt) and pred > 0:
        accept = max(rho, (J_ref - Jt) / pred)
    return s, sub.norm(s), interior, Jt, xst, rho, accept


def _shrunk(rule: str, J: float, Jt: float, gs: float, snorm: float) -> float:
    """The radius after a poor step of M-norm ``snorm`` (J → Jt, slope g·s): a quarter of it
    (``"fixed"``), or the minimiser of the quadratic through J, g·s and Jt along the step,
    clipped to [0.1, 0.5] of it (``"interp"``)."""
    if rule == "fixed" or not math.isfinite(Jt):
        return 0.25 * snorm
    c = Jt - J - gs  # curvature of φ(t) = J + (g·s) t + c t²
    t = -gs / (2.0 * c) if c > 0 and gs < 0 else 0.25
    return min(max(t, 0.1), 0.5) * snorm


# --------------------------------------------------------------------------- the solver
def start_weights(problem: Problem, w0: np.ndarray) -> np.ndarray:
    """A float copy of the initial weights ``w0``, checked: as many as the spec has, all finite."""
    p = problem.spec.n_params
    w = np.asarray(w0, dtype=float).ravel().copy()
    if w.size != p:
        raise ValidationError(f"initial weights have {w.size} entries, this spec needs {p}")
    if not np.all(np.isfinite(w)):
        raise ValidationError("the initial weights contain NaN or inf: start from finite weights")
    return w


def smooth_activation_error(problem: Problem, path: str) -> str | None:
    """Why a second-order ``path`` cannot solve ``problem`` (its activation is not twice
    differentiable), or None."""
    if problem.spec.activation in arch.SMOOTH_ACTIVATIONS:
        return None
    return (f"activation {problem.spec.activation!r} is not twice differentiable, so {path} cannot use it: "
            f"use one of {', '.join(arch.SMOOTH_ACTIVATIONS)} (relu is for the torch back-end)")


def check_newton(problem: Problem) -> bool:
    """Whether the Newton path can solve ``problem`` (twice-differentiable activation)."""
    return smooth_activation_error(problem, "Newton") is None


def weights_solution(problem: Problem, w: np.ndarray, status: Status, iterations: int, times: tuple[float, float, float],
                     method: str, stats: dict[str, Any]) -> Solution:
    """The :class:`Solution` of a solver whose only variables are the weights (the Newton paths):
    ``times`` are the perf-counter readings at the start, after the build and at the end."""
    t0, t1, t2 = times
    return Solution(
        weights=problem.params(w), w=w, evaluation=evaluate(problem, w), status=status, iterations=iterations,
        build_time_s=t1 - t0, solve_time_s=t2 - t1, n_variables=w.size, n_constraints=0, method=method,
        backend="casadi", stats=stats, x=w.copy(),
    )


def newton_solve(
    problem: Problem,
    w0: np.ndarray,
    options: NewtonOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    callback: IterCallback | None = None,
) -> Solution:
    """Minimise J(w) of ``problem`` from ``w0`` by exact trust-region Newton (module docstring).

    Returns a :class:`Solution` (``method="newton"``, no constraints): ``SUCCESS`` when
    ‖∇J‖_∞ ≤ ``options.tol``; else ``MAX_ITER``, ``MAX_TIME``, ``NAN`` or ``INTERRUPTED``
    (``callback`` returned True: ``stats["stopped_by"] = "callback"``; Ctrl-C in the main
    thread: ``"SIGINT"``), always with the last accepted iterate.
    """
    opts = options or NewtonOptions()
    why = smooth_activation_error(problem, "Newton")
    if why is not None:
        raise ValidationError(why)
    p = problem.spec.n_params
    w = start_weights(problem, w0)
    say = log if (log is not None and opts.print_level > 0) else None
    t0 = time.perf_counter()
    derivatives = derivatives_of(problem, opts.threads or auto_threads())
    t1 = time.perf_counter()
    stats: dict[str, Any] = {"hessians": 0, "rejected": 0, "negative_curvature": 0, "boundary_steps": 0,
                             "chunks": derivatives.chunks, "threads": derivatives.threads,
                             "metric_process": derivatives.splits}
    status = Status.MAX_ITER
    J, xs = _objective(problem, w)
    radius = opts.radius
    history = [J]
    sub: _Subproblem | None = None
    states = opts.metric == "states"  # the metric M is formed only for the states region
    metric = _LazyMetric(states, opts.metric_every)
    it = 0
    if say:
        sweep = "" if derivatives.chunks == 1 else (
            f"; derivatives over {derivatives.chunks} chunks of samples"
            + (f", up to {derivatives.threads} threads (the faster way, timed)" if derivatives.threads > 1 else ""))
        if derivatives.splits and states:
            sweep += "; the metric swept in a second process (when faster, timed)"
        say(f"Newton ({opts.curvature} Hessian), trust region in the {opts.metric} metric: {p} weights, "
            f"{problem.n_samples} samples, "
            f"{problem.spec.n_blocks} blocks{sweep}")
        say(f"{'iter':>5} {'objective':>22} {'|grad|inf':>10} {'|step|':>9} {'radius':>9} {'rho':>9} "
            f"{'min eig':>10} {'trials':>6}")
    try:
        with StopOnSigint() as sigint:
            if not math.isfinite(J):
                status = Status.NAN
            else:
                g, H, M = metric.derivatives(derivatives, w, xs)
                stats["hessians"] += 1
            duals = _Duals(problem) if opts.curvature == "primal-dual" else None
            while status is Status.MAX_ITER:
                stop, gnorm = stop_test(g, bool(np.all(np.isfinite(H))), J, it, opts.tol, opts.max_iter, say)
                if stop is not None:
                    status = stop
                    break
                # the region is ‖s‖_M ≤ radius (states metric) or ‖s‖₂ ≤ radius
                sub = _Subproblem(H, M if states else None, g, sub.sigma if sub is not None else 0.0,
                                  derivatives.inverse_factor(M) if states else None)
                # non-monotone acceptance: a trial is measured against the largest of the last
                # `nonmonotone` accepted objectives (all ≤ the start's, so the result is too)
                J_ref = max(history[-opts.nonmonotone:])
                # A rejected trial costs one simulation (~1% of a Hessian): shrink the region and try
                # again with the same eigendecomposition before paying for new derivatives.
                # (Also expanding greedily along the path cut no iterations and led to worse local
                # minima on the benchmark problems.)
                s, snorm, interior, Jt, xst, rho, acc = _trial(problem, w, J, J_ref, sub, radius)
                trials = 1
                while acc <= _ETA and snorm > 1e-15 * (1.0 + float(np.linalg.norm(w))):
                    radius = _shrunk(opts.shrink, J, Jt, float(g @ s), snorm)
                    s, snorm, interior, Jt, xst, rho, acc = _trial(problem, w, J, J_ref, sub, radius)
                    trials += 1
                accepted = acc > _ETA
                if rho < 0.25:
                    radius = _shrunk(opts.shrink, J, Jt, float(g @ s), snorm) if rho < _ETA else 0.25 * snorm
                elif rho > 0.75 and snorm >= 0.99 * radius:
                    radius = min(opts.expand * radius, opts.max_radius)
                stats["negative_curvature"] += int(sub.indefinite)
                stats["factorisations"] = stats.get("factorisations", 0) + sub.factorisations
                stats["eigen_fallbacks"] = stats.get("eigen_fallbacks", 0) + sub.fallbacks
                stats["boundary_steps"] += int(not interior)
                stats["rejected"] += trials - 1
                log_iteration(say, it, J, gnorm, snorm, radius, rho, f"{sub.min_eig_text():>10}", trials)
                it += 1
                if not accepted:
                    status = collapsed(stats, "the Newton model's path")
                    break
                if duals is not None:
                    duals.step(w, s, xs)
                w, J, xs = w + s, Jt, xst
                history.append(J)
                g, H, M = metric.derivatives(derivatives, w, xs, None if duals is None else duals.targets(w, xs))
                stats["hessians"] += 1
                stop = stop_after_iteration(callback, sigint, it, J, w, t1, opts.max_time_s, stats)
                if stop is not None:
                    status = stop
                    break
    finally:
        derivatives.release()  # its worker process: a path of many problems would keep one each
    t2 = time.perf_counter()
    if say and status is not Status.SUCCESS:
        say(f"stopped: {status.value}")
    return weights_solution(problem, w, status, it, (t0, t1, t2), METHOD, {**stats, "radius": radius})


#: Weights below which the Newton path runs BLAS on one thread: its matrices are small (p×p
#: and stacks of d×d), where threaded OpenBLAS only adds hand-offs; on a busy 2-core machine the
#: canonical problem (p = 63) took 7.3 s with two threads and 1.3 s with one (whole process).
SINGLE_THREAD_MAX_PARAMS = 1000


def single_threaded_blas(n_params: int) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread while a Newton solve of ``n_params`` weights runs (below
    :data:`SINGLE_THREAD_MAX_PARAMS`); larger problems keep the machine's setting."""
    if n_params >= SINGLE_THREAD_MAX_PARAMS:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    limits: contextlib.AbstractContextManager[Any] = threadpool_limits(limits=1, user_api="blas")
    return limits


class WeightsSolverContract:
    """What the Newton paths' :class:`~ocp_resnet.solvers.base.Solver` classes share: the CasADi
    back-end's family (the run's evaluation is CasADi's), the method name and the record of
    their options. A subclass sets ``method`` and has an ``options`` dataclass."""

    method: ClassVar[str]
    options: Any

    @property
    def backend(self) -> Backend:
        """Always ``"casadi"``."""
        return "casadi"

    @property
    def name(self) -> str:
        """The method, ``newton`` or ``newton-cg``."""
        return self.method

    def record(self) -> dict[str, Any]:
        """``{"backend": "casadi", "method": name, **options}``."""
        return {"backend": "casadi", "method": self.method, **asdict(self.options)}


@dataclass(frozen=True)
class NewtonSolver(WeightsSolverContract):
    """Exact trust-region Newton (:func:`newton_solve`) as a :class:`~ocp_resnet.solvers.base.Solver`.

    ``options``: tolerance on ‖∇J‖_∞, iteration and time limits, the trust-region metric.
    ``callback`` is :func:`newton_solve`'s. A :class:`Solution` given as ``init`` warm-starts from
    its weights (Newton keeps no multipliers).
    """

    method: ClassVar[str] = METHOD
    options: NewtonOptions = field(default_factory=NewtonOptions)
    callback: IterCallback | None = None

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """:func:`newton_solve` from the initial weights ``init`` (seeded by ``seed`` when random)."""
        from ocp_resnet.solvers.init import initial_weights

        w0 = initial_weights(problem, init, seed)
        with single_threaded_blas(problem.spec.n_params):
            return newton_solve(problem, w0, self.options, log=log, callback=self.callback)
