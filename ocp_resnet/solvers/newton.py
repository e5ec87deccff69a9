"""Exact Newton on the condensed objective J(w), with a trust region measured in the states.

The states are eliminated (single shooting: x_{k+1} = f_k(x_k, w) is simulated), but the
derivatives are assembled block by block the way multiple shooting sees them, which keeps them
cheap and vectorised over the samples:

* per stage k, one small CasADi function of one sample gives the block Jacobians
  A_k = ∂f_k/∂x_k, B_k = ∂f_k/∂w_k (w_k: the weights stage k touches), and the gradient and
  Hessian of the stage Lagrangian L_k = γ_k ℓ(ŷ_k) + λ_{k+1}·f_k over (x_k, w_k); it is mapped
  over the samples (one call per stage, no Python loop over samples);
* the adjoints λ_N = ∇ℓ_N, λ_k = γ_k ∇_x ℓ_k + A_kᵀ λ_{k+1} give the gradient ∇J;
* the forward sensitivities S_0 = ∂x_0/∂w, S_{k+1} = A_k S_k + B_k give the exact Hessian
  ∇²J = (1/n) Σ_i Σ_k Z_kᵀ ∇²L_k Z_k + 2λI with Z_k = [S_k; E_k] (E_k picks w_k out of w),
  a few (n d) × p matrix products per stage (BLAS).

The step solves the trust-region subproblem min g·s + ½ sᵀHs subject to ‖s‖_M ≤ Δ exactly,
from the generalised eigendecomposition H Q = M Q diag(μ), Qᵀ M Q = I (the Moré–Sorensen
secular equation in the eigenbasis, hard case included). The metric
M = I + (1/n) Σ_i Σ_k S_kᵀ S_k measures a weight step by how far it moves the weights *and
every state of every sample* (to first order): the norm a multiple-shooting step is regularised
in. Measured against the plain ‖s‖₂ region it reached markedly lower local minima (the
two-spirals default problem: J = 0.146 instead of 0.250, IPOPT multiple shooting 0.147).
Negative curvature is followed, not regularised away, and a step inside the region is the
plain Newton step (quadratic convergence at the end).

Convergence: ‖∇J(w)‖_∞ ≤ ``tol``, with J and ∇J those of :meth:`Problem.objective_value` and
:func:`ocp_resnet.model.evaluation.objective_and_gradient` (they agree to rounding).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.linalg  # type: ignore[import-untyped]

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import CASADI, NUMPY
from ocp_resnet.model.evaluation import evaluate
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.base import Backend, Init, Log
from ocp_resnet.solvers.iteration import IterCallback, IterInfo, StopOnSigint
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
        if self.max_radius < self.radius:
            raise ValidationError(f"max_radius {self.max_radius} is below radius {self.radius}: raise max_radius")


# --------------------------------------------------------------------------- derivatives
class _StageFunctions:
    """The per-sample CasADi functions of one problem structure, mapped over its samples."""

    def __init__(self, problem: Problem) -> None:
        import casadi as ca

        spec, obj = problem.spec, problem.objective
        n, p, N = problem.n_samples, spec.n_params, spec.n_blocks
        self.n, self.p, self.N = n, p, N
        widths = spec.widths
        gammas = obj.stage_weights(N)
        const = obj.target_entropy(spec.n_outputs if obj.loss != "bce" else 2)
        w = ca.SX.sym("w", p)
        t = ca.SX.sym("t", problem.T.shape[0])
        P = spec.unflatten(w, CASADI)
        self.stages: list[tuple[Any, np.ndarray, int]] = []  # (mapped fn, weight indices K_k, d_k)
        fmasks: list[np.ndarray] = []
        for k in range(N + 1):
            x = ca.SX.sym("x", widths[k])
            # ŷ_k through the later skips and the head (the other states are not needed)
            xs = [x if j == k else ca.SX.zeros(widths[j], 1) for j in range(N + 1)]
            c = gammas[k] * objective_mod.loss(obj, arch.stage_outputs(spec, P, xs, CASADI)[k], t, const, CASADI) \
                if gammas[k] != 0.0 else ca.SX(0)
            if k < N:
                f = arch.block(spec, k, P, x, CASADI)
                lam = ca.SX.sym("lam", widths[k + 1])
                L = c + ca.dot(lam, f)
                dep = ca.vertcat(f, c)
            else:
                f, lam, L, dep = ca.SX(0, 1), ca.SX.sym("lam", 0), c, c
            K = np.flatnonzero(np.asarray(ca.which_depends(dep, w, 1, False), dtype=bool)).astype(int)
            # the weights f_k itself depends on: x_{k+1} depends on these and on x_k's only
            Kf = np.flatnonzero(np.asarray(ca.which_depends(f, w, 1, False), dtype=bool)) if k < N \
                else np.zeros(0, dtype=int)
            fmasks.append(np.isin(K, Kf))
            wK = ca.vertcat(*[w[int(i)] for i in K]) if K.size else ca.SX(0, 1)
            v = ca.vertcat(x, wK)
            H, gL = ca.hessian(L, v)
            outs = [ca.densify(ca.jacobian(f, x)), ca.densify(ca.jacobian(f, wK)), ca.densify(gL), ca.densify(H)]
            fn = ca.Function(f"stage{k}", [x, w, t, lam], outs)
            self.stages.append((_Mapped(fn, n), K, widths[k]))
        # ∂x_0/∂w of the stem (affine in the weights, so its second derivative is zero)
        u = ca.SX.sym("u", spec.input_dim)
        x0 = arch.stem(spec, P, u, CASADI)
        K0 = np.flatnonzero(np.asarray(ca.which_depends(x0, w, 1, False), dtype=bool)) if spec.stem == "linear" \
            else np.zeros(0, dtype=int)
        self.stem: tuple[_Mapped, np.ndarray] | None = None
        if K0.size:
            wK0 = ca.vertcat(*[w[int(i)] for i in K0])
            self.stem = (_Mapped(ca.Function("stem", [u, w], [ca.densify(ca.jacobian(x0, wK0))]), n), K0)
        # S_k = ∂x_k/∂w is zero beyond the weights of the stem and blocks < k: only its first
        # cols[k] columns are kept (about a third of the Hessian's flops on average).
        self.fmasks = fmasks
        self.cols = [int(K0.max()) + 1 if K0.size else 0]
        for k in range(N):
            Kf = self.stages[k][1][fmasks[k]]
            self.cols.append(max(self.cols[-1], int(Kf.max()) + 1 if Kf.size else 0))


class _Mapped:
    """A one-sample function mapped over n samples, called through a CasADi buffer (no copies).

    Input 1 (the weights) is shared; the others are (rows, n) arrays, samples as columns. Each
    output (r, c) comes back as an (n, r, c) array (CasADi is column-major: the buffer holds
    (n, c, r), transposed as a view).
    """

    def __init__(self, fn: Any, n: int) -> None:
        self.fn = fn.map(f"{fn.name()}_map", "serial", n, [1], [])
        self.n = n
        self.shapes = [(fn.size1_out(i), fn.size2_out(i)) for i in range(fn.n_out())]
        self.buf, self.eval = self.fn.buffer()

    def __call__(self, *args: np.ndarray) -> list[np.ndarray]:
        keep = []  # the buffer holds raw pointers: the arrays must live until eval()
        for i, a in enumerate(args):
            a = np.ascontiguousarray(np.asarray(a, dtype=float).T if i != 1 else np.asarray(a, dtype=float))
            keep.append(a)
            self.buf.set_arg(i, (a if a.size else np.zeros(1)).data)
        outs = []
        for j, (r, c) in enumerate(self.shapes):
            o = np.empty((self.n, c, r))
            outs.append(o)
            self.buf.set_res(j, (o if o.size else np.zeros(1)).data)
        self.eval()
        return [o.transpose(0, 2, 1) for o in outs]


def _derivatives(fns: _StageFunctions, problem: Problem, w: np.ndarray, xs: list[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """∇J(w), ∇²J(w) and the state metric M = I + (1/n) Σ_k S_kᵀS_k from the simulated states ``xs``
    (adjoint sweep, then sensitivity sweep)."""
    n, p, N = fns.n, fns.p, fns.N
    T = problem.T
    g = np.zeros(p)
    # backward: the adjoints λ_k and each stage's per-sample pieces (kept for the forward sweep)
    lam = np.zeros((0, n))
    pieces: list[Any] = [None] * (N + 1)
    for k in range(N, -1, -1):
        fn, K, d = fns.stages[k]
        A, B, gL, H = fn(xs[k], w, T, lam)
        gL = gL[:, :, 0]  # (n, d + q)
        g[K] += gL[:, d:].sum(axis=0)
        lam = gL[:, :d].T
        pieces[k] = (A, B, H, K, d)
    Hs = np.zeros((p, p))
    M = np.zeros((p, p))
    # forward: sensitivities S_k = ∂x_k/∂w, (n, d_k, cols_k) (the other columns are zero), and
    # the Hessian blocks
    d0 = problem.spec.widths[0]
    S = np.zeros((n, d0, fns.cols[0]))
    if fns.stem is not None:
        sfn, K0 = fns.stem
        B0 = sfn(problem.U, w)[0]
        S[:, :, K0] = B0
        g[K0] += np.einsum("ndq,dn->q", B0, lam)
    for k in range(N + 1):
        A, B, H, K, d = pieces[k]
        c = fns.cols[k]
        Hxx, Hxw, Hww = H[:, :d, :d], H[:, :d, d:], H[:, d:, d:]
        if c:
            Sf = S.reshape(n * d, c)
            Hs[:c, :c] += Sf.T @ np.matmul(Hxx, S).reshape(n * d, c)
            M[:c, :c] += Sf.T @ Sf
        if K.size:
            if c:
                C = Sf.T @ np.ascontiguousarray(Hxw).reshape(n * d, K.size)  # (c, q)
                Hs[:c, K] += C
                Hs[K, :c] += C.T
            Hs[np.ix_(K, K)] += Hww.sum(axis=0)
        if k < N:
            Sn = np.zeros((n, A.shape[1], fns.cols[k + 1]))
            if c:
                Sn[:, :, :c] = np.matmul(A, S)
            fm = fns.fmasks[k]
            Sn[:, :, K[fm]] += B[:, :, fm]
            S = Sn
    lamb = problem.objective.weight_decay
    g = g / n + 2.0 * lamb * w
    Hs = Hs / n
    Hs = 0.5 * (Hs + Hs.T)
    Hs[np.diag_indices(p)] += 2.0 * lamb
    M /= n
    M[np.diag_indices(p)] += 1.0
    return g, Hs, M


def _objective(problem: Problem, w: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """J(w) and the states x_0..x_N (numpy, the same formulas as :meth:`Problem.objective_value`)."""
    spec = problem.spec
    P = spec.unflatten(w)
    with np.errstate(all="ignore"):
        xs = arch.trajectory(spec, P, problem.U, NUMPY)
        cost = objective_mod.sample_cost(spec, problem.objective, P, xs, problem.T, NUMPY)
        J = float(np.mean(cost)) + objective_mod.regularization(problem.objective, w, NUMPY)
    return J, xs


# --------------------------------------------------------------------------- trust-region step
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


def _trial(problem: Problem, w: np.ndarray, J: float, J_ref: float, g: np.ndarray, mu: np.ndarray, Q: np.ndarray,
           M: np.ndarray, metric: str, radius: float
           ) -> tuple[np.ndarray, float, bool, float, list[np.ndarray], float, float]:
    """The trust-region step of ``radius``, its M-norm, whether it is interior, J and the states
    at w + s, ρ = actual / predicted decrease, and the ratio that decides acceptance: the
    decrease measured from ``J_ref`` (≥ J, the non-monotone reference) instead of J."""
    s, pred, interior = _tr_step(mu, Q, g, radius)
    snorm = float(np.sqrt(s @ M @ s)) if metric == "states" else float(np.linalg.norm(s))
    Jt, xst = _objective(problem, w + s)
    ared = J - Jt if math.isfinite(Jt) else -math.inf
    noise = 1e-13 * max(1.0, abs(J))  # J's rounding error: below it, trust the model
    if pred <= noise and abs(ared) <= 10 * noise:
        rho = 1.0 if interior else 0.5
    else:
        rho = ared / pred if pred > 0 else -math.inf
    accept = rho
    if J_ref > J and math.isfinite(Jt) and pred > 0:
        accept = max(rho, (J_ref - Jt) / pred)
    return s, snorm, interior, Jt, xst, rho, accept


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
def check_newton(problem: Problem) -> bool:
    """Whether the Newton path can solve ``problem`` (twice-differentiable activation)."""
    return problem.spec.activation in arch.SMOOTH_ACTIVATIONS


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
    if problem.spec.activation not in arch.SMOOTH_ACTIVATIONS:
        raise ValidationError(
            f"activation {problem.spec.activation!r} is not twice differentiable, so Newton cannot use it: "
            f"use one of {', '.join(arch.SMOOTH_ACTIVATIONS)} (relu is for the torch back-end)"
        )
    p = problem.spec.n_params
    w = np.asarray(w0, dtype=float).ravel().copy()
    if w.size != p:
        raise ValidationError(f"initial weights have {w.size} entries, this spec needs {p}")
    if not np.all(np.isfinite(w)):
        raise ValidationError("the initial weights contain NaN or inf: start from finite weights")
    say = log if (log is not None and opts.print_level > 0) else None
    t0 = time.perf_counter()
    fns = _StageFunctions(problem)
    t1 = time.perf_counter()
    stats: dict[str, Any] = {"hessians": 0, "rejected": 0, "negative_curvature": 0, "boundary_steps": 0}
    status = Status.MAX_ITER
    J, xs = _objective(problem, w)
    radius = opts.radius
    history = [J]
    it = 0
    if say:
        say(f"exact Newton, trust region in the {opts.metric} metric: {p} weights, {problem.n_samples} samples, "
            f"{problem.spec.n_blocks} blocks")
        say(f"{'iter':>5} {'objective':>22} {'|grad|inf':>10} {'|step|':>9} {'radius':>9} {'rho':>9} "
            f"{'min eig':>10} {'trials':>6}")
    with StopOnSigint() as sigint:
        if not math.isfinite(J):
            status = Status.NAN
        else:
            g, H, M = _derivatives(fns, problem, w, xs)
            stats["hessians"] += 1
        while status is Status.MAX_ITER:
            gnorm = float(np.max(np.abs(g), initial=0.0))
            if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
                status = Status.NAN
                break
            if gnorm <= opts.tol:
                status = Status.SUCCESS
                if say:
                    say(f"{it:>5} {J:>22.15e} {gnorm:>10.3e}")
                break
            if it >= opts.max_iter:
                break
            if opts.metric == "states":
                mu, Q = scipy.linalg.eigh(H, M)  # Qᵀ M Q = I: the region is ‖s‖_M ≤ radius
            else:
                mu, Q = np.linalg.eigh(H)
            # non-monotone acceptance: a trial is measured against the largest of the last
            # `nonmonotone` accepted objectives (all ≤ the start's, so the result is too)
            J_ref = max(history[-opts.nonmonotone:])
            # A rejected trial costs one simulation (~1% of a Hessian): shrink the region and try
            # again with the same eigendecomposition before paying for new derivatives.
            # (Also expanding greedily along the path cut no iterations and led to worse local
            # minima on the benchmark problems.)
            s, snorm, interior, Jt, xst, rho, acc = _trial(problem, w, J, J_ref, g, mu, Q, M, opts.metric, radius)
            trials = 1
            while acc <= _ETA and snorm > 1e-15 * (1.0 + float(np.linalg.norm(w))):
                radius = _shrunk(opts.shrink, J, Jt, float(g @ s), snorm)
                s, snorm, interior, Jt, xst, rho, acc = _trial(problem, w, J, J_ref, g, mu, Q, M, opts.metric,
                                                               radius)
                trials += 1
            accepted = acc > _ETA
            if rho < 0.25:
                radius = _shrunk(opts.shrink, J, Jt, float(g @ s), snorm) if rho < _ETA else 0.25 * snorm
            elif rho > 0.75 and snorm >= 0.99 * radius:
                radius = min(opts.expand * radius, opts.max_radius)
            stats["negative_curvature"] += int(mu[0] < 0)
            stats["boundary_steps"] += int(not interior)
            stats["rejected"] += trials - 1
            if say:
                say(f"{it:>5} {J:>22.15e} {gnorm:>10.3e} {snorm:>9.2e} {radius:>9.2e} {rho:>9.2e} {mu[0]:>10.2e} "
                    f"{trials:>6}")
            it += 1
            if not accepted:
                status = Status.ERROR
                stats["reason"] = "the trust region collapsed: no decrease along the Newton model's path"
                break
            w, J, xs = w + s, Jt, xst
            history.append(J)
            g, H, M = _derivatives(fns, problem, w, xs)
            stats["hessians"] += 1
            if callback is not None and callback(IterInfo(iteration=it, objective=J, inf_pr=0.0,
                                                         wall_s=time.perf_counter() - t1, w=w.copy(), x=w.copy())):
                status, stats["stopped_by"] = Status.INTERRUPTED, "callback"
                break
            if sigint.requested:
                status, stats["stopped_by"] = Status.INTERRUPTED, "SIGINT"
                break
            if opts.max_time_s and time.perf_counter() - t1 > opts.max_time_s:
                status = Status.MAX_TIME
                break
    t2 = time.perf_counter()
    if say and status is not Status.SUCCESS:
        say(f"stopped: {status.value}")
    return Solution(
        weights=problem.params(w), w=w, evaluation=evaluate(problem, w), status=status, iterations=it,
        build_time_s=t1 - t0, solve_time_s=t2 - t1, n_variables=p, n_constraints=0, method=METHOD,
        backend="casadi", stats={**stats, "radius": radius}, x=w.copy(),
    )


@dataclass(frozen=True)
class NewtonSolver:
    """Exact trust-region Newton (:func:`newton_solve`) as a :class:`~ocp_resnet.solvers.base.Solver`.

    ``options``: tolerance on ‖∇J‖_∞, iteration and time limits, the trust-region metric.
    ``callback`` is :func:`newton_solve`'s. A :class:`Solution` given as ``init`` warm-starts from
    its weights (Newton keeps no multipliers).
    """

    options: NewtonOptions = field(default_factory=NewtonOptions)
    callback: IterCallback | None = None

    @property
    def backend(self) -> Backend:
        """Always ``"casadi"`` (the derivatives are CasADi functions)."""
        return "casadi"

    @property
    def name(self) -> str:
        """``newton``."""
        return METHOD

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """:func:`newton_solve` from the initial weights ``init`` (seeded by ``seed`` when random)."""
        from ocp_resnet.solvers.init import initial_weights

        return newton_solve(problem, initial_weights(problem, init, seed), self.options, log=log,
                            callback=self.callback)

    def record(self) -> dict[str, Any]:
        """``{"backend": "casadi", "method": "newton", **options}``."""
        return {"backend": "casadi", "method": METHOD, **asdict(self.options)}
