"""Hessian-free trust-region Newton–CG on the condensed objective J(w).

For problems beyond the exact Newton path (:mod:`ocp_resnet.solvers.newton`): it forms the
dense p × p Hessian from the per-sample sensitivities, about n·N·w·p² flops and n·N·w·p
doubles, seconds and gigabytes per iteration once n·p² is large. Here the Hessian is only ever
applied to vectors: each product ∇²J(w)·v is exact, one double-backward pass of torch autograd
in float64 through the graph of ∇J (:class:`ocp_resnet.torch.gradient.FlatObjective`), about
1.3 gradients (two spirals, n = 2000, 20 blocks of width 4: 6.5 ms against 2.3 s for exact
Newton's Hessian). Where both fit, exact Newton converged in fewer CPU seconds on every problem
measured (docs/performance.md), so ``method="auto"`` takes this path only beyond it.

The step is Steihaug–Toint truncated CG on the model g·s + ½ sᵀHs in ‖s‖_D ≤ Δ (D = I, or the
diagonal of exact Newton's states metric with ``metric="states"``): negative curvature is
followed to the boundary, CG stops at the residual min(forcing, √‖g‖)·‖g‖ (superlinear at the
end). The loop is the one of :func:`ocp_resnet.solvers.newton.newton_solve` (acceptance,
radius update, one log line per iteration); scipy's ``trust-ncg`` with the same products was
measured too and runs CG again from scratch after every rejected step, where this
loop cuts the stored CG path back. It stops when ‖∇J‖_∞ ≤ ``tol``, with J and ∇J those of
:meth:`Problem.objective_value` and :func:`ocp_resnet.model.evaluation.objective_and_gradient`
(they agree to rounding).
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.base import Init, Log
from ocp_resnet.solvers.iteration import IterCallback, StopOnSigint, stop_after_iteration
from ocp_resnet.solvers.newton import (
    WeightsSolverContract,
    collapsed,
    log_iteration,
    reduction_ratio,
    smooth_activation_error,
    start_weights,
    stop_test,
    weights_solution,
)
from ocp_resnet.solvers.solution import Solution
from ocp_resnet.status import Status

METHOD = "newton-cg"
METRICS = ("states", "euclidean")
#: a step is taken when it achieves this fraction of the model's predicted decrease
_ETA = 1e-4


@dataclass
class NewtonCGOptions:
    """Options of :func:`newton_cg_solve`, validated when set.

    ``tol`` bounds ‖∇J‖_∞ at the returned point. ``max_iter`` counts trust-region iterations
    (a rejected step counts too: it costs its CG products). ``max_time_s`` (0: no limit) is
    checked after each iteration. ``print_level`` 0 is silent, 1 logs a header and one line per
    iteration through ``log``. ``radius``/``max_radius``: the initial and largest trust-region
    radius (‖s‖₂ of the weights). ``threads``: torch's intra-op threads (``None``: leave as is).
    """

    tol: float = 1e-8
    max_iter: int = 3000
    max_time_s: float = 0.0
    print_level: int = 1
    radius: float = 1.0
    max_radius: float = 1e3
    metric: str = "euclidean"
    metric_every: int = 10
    probes: int = 16
    max_cg: int = 0
    forcing: float = 0.1
    threads: int | None = None

    def __post_init__(self) -> None:
        self.tol = check_float("tol", self.tol, 0.0, strict=True)
        self.max_iter = check_int("max_iter", self.max_iter, 0)
        self.max_time_s = check_float("max_time_s", self.max_time_s, 0.0)
        self.print_level = check_int("print_level", self.print_level, 0)
        self.radius = check_float("radius", self.radius, 0.0, strict=True)
        self.max_radius = check_float("max_radius", self.max_radius, 0.0, strict=True)
        check_choice("metric", self.metric, METRICS)
        self.metric_every = check_int("metric_every", self.metric_every, 1)
        self.probes = check_int("probes", self.probes, 1)
        self.max_cg = check_int("max_cg", self.max_cg, 0)
        self.forcing = check_float("forcing", self.forcing, 0.0, strict=True)
        if self.threads is not None:
            self.threads = check_int("threads", self.threads, 1)
        if self.max_radius < self.radius:
            raise ValidationError(f"max_radius {self.max_radius} is below radius {self.radius}: raise max_radius")


def check_newton_cg(problem: Problem) -> str | None:
    """Why the Newton–CG path cannot solve ``problem`` (``None`` when it can): it needs a twice
    differentiable activation and torch."""
    why = smooth_activation_error(problem, "Newton-CG")
    if why is not None:
        return why
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # not imported here: that costs ~1.5 s of every solve
        return "Newton-CG computes its Hessian-vector products with torch, which is not installed: pip install torch"
    return None


def _steihaug(g: np.ndarray, hessp: Callable[[np.ndarray], np.ndarray], scale: np.ndarray, radius: float,
              max_cg: int, forcing: float) -> _Path:
    """Steihaug–Toint truncated CG on min g·s + ½ sᵀHs, ‖s‖_D ≤ radius with D = diag(scale²):
    plain CG in y = D^½ s (the preconditioner D), stopped at the boundary, at negative curvature
    or at the residual min(forcing, √‖g‖)·‖g‖ (superlinear at the end). The path is kept, so a
    rejected step is cut back to a smaller radius without new products (:meth:`_Path.cut`)."""
    gy = g / scale
    path = _Path()
    z = np.zeros_like(gy)
    r = gy.copy()
    d = -r
    rr = float(r @ r)
    tol = min(forcing, math.sqrt(math.sqrt(rr))) * math.sqrt(rr)
    m = 0.0  # model value at z
    for _ in range(max_cg):
        Hd = hessp(d / scale) / scale
        kappa = float(d @ Hd)
        rd = float(r @ d)
        path.segments.append((z.copy(), d.copy(), m, rd, kappa))
        if kappa <= 0.0:
            path.negative = True
            return path.finish(radius, scale)
        alpha = rr / kappa
        zn = z + alpha * d
        if float(np.linalg.norm(zn)) >= radius:
            return path.finish(radius, scale)
        m += alpha * rd + 0.5 * alpha**2 * kappa
        z = zn
        r = r + alpha * Hd
        rr_new = float(r @ r)
        if math.sqrt(rr_new) <= tol:
            path.segments.append((z.copy(), np.zeros_like(z), m, 0.0, 1.0))
            path.interior = True
            return path.finish(radius, scale)
        d = -r + (rr_new / rr) * d
        rr = rr_new
    path.segments.append((z.copy(), np.zeros_like(z), m, 0.0, 1.0))
    path.interior = True
    return path.finish(radius, scale)


class _Path:
    """The CG path of one subproblem: segments z_j + τ d_j with the model's value m(z_j), r_j·d_j
    and d_jᵀH d_j (in the scaled variable), so any radius' step is read off it."""

    def __init__(self) -> None:
        self.segments: list[tuple[np.ndarray, np.ndarray, float, float, float]] = []
        self.negative = False
        self.interior = False
        self.step = np.zeros(0)
        self.pred = 0.0
        self.norm = 0.0  # ‖s‖_D of the step
        self.boundary = False

    def finish(self, radius: float, scale: np.ndarray) -> _Path:
        self.cut(radius, scale)
        return self

    def cut(self, radius: float, scale: np.ndarray) -> None:
        """The step of ``radius``: the first point of the path on ‖y‖ = radius, else its end
        (the CG iterates grow in norm, so the first crossing is the only one)."""
        for z, d, m, rd, kappa in self.segments:
            dd = float(d @ d)
            if dd == 0.0:  # the interior end point
                self._set(z, m, False, scale)
                return
            zd, zz = float(z @ d), float(z @ z)
            tau_b = (-zd + math.sqrt(max(zd * zd + dd * (radius**2 - zz), 0.0))) / dd
            tau_end = -rd / kappa if kappa > 0.0 else math.inf  # CG's step length α along d
            if tau_b <= tau_end:
                self._set(z + tau_b * d, m + tau_b * rd + 0.5 * tau_b**2 * kappa, True, scale)
                return
        z, d, m, rd, kappa = self.segments[-1]  # not reached: the last segment ends on the boundary
        tau = -rd / kappa
        self._set(z + tau * d, m + tau * rd + 0.5 * tau**2 * kappa, False, scale)

    def _set(self, y: np.ndarray, m: float, boundary: bool, scale: np.ndarray) -> None:
        self.step = y / scale
        self.pred = -m
        self.norm = float(np.linalg.norm(y))
        self.boundary = boundary


def newton_cg_solve(
    problem: Problem,
    w0: np.ndarray,
    options: NewtonCGOptions | None = None,
    *,
    log: Callable[[str], None] | None = None,
    callback: IterCallback | None = None,
) -> Solution:
    """Minimise J(w) of ``problem`` from ``w0`` by Hessian-free trust-region Newton–CG (module docstring).

    Returns a :class:`Solution` (``method="newton-cg"``, no constraints): ``SUCCESS`` when
    ‖∇J‖_∞ ≤ ``options.tol``; else ``MAX_ITER``, ``MAX_TIME``, ``NAN``, ``ERROR`` (the trust
    region collapsed) or ``INTERRUPTED`` (``callback`` returned True: ``stats["stopped_by"] =
    "callback"``; Ctrl-C in the main thread: ``"SIGINT"``), always with the last accepted iterate.
    """
    opts = options or NewtonCGOptions()
    why = check_newton_cg(problem)
    if why is not None:
        raise ValidationError(why)
    import torch

    from ocp_resnet.torch.gradient import FlatObjective

    p = problem.spec.n_params
    w = start_weights(problem, w0)
    say = log if (log is not None and opts.print_level > 0) else None
    old_threads = torch.get_num_threads()
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    f = FlatObjective(problem)
    t1 = time.perf_counter()
    stats: dict[str, Any] = {"rejected": 0, "negative_curvature": 0, "boundary_steps": 0}
    status = Status.MAX_ITER
    radius = opts.radius
    it = 0
    J = f.value(w)
    if say:
        say(f"trust-region Newton-CG (Hessian-free, torch float64), {opts.metric} metric: {p} weights, "
            f"{problem.n_samples} samples, {problem.spec.n_blocks} blocks")
        say(f"{'iter':>5} {'objective':>22} {'|grad|inf':>10} {'|step|':>9} {'radius':>9} {'rho':>9} {'CG':>5} "
            f"{'trials':>6}")
    try:
        with StopOnSigint() as sigint:
            g = f.gradient(w) if math.isfinite(J) else np.full(p, np.nan)
            scale = np.ones(p)
            while True:
                stop, gnorm = stop_test(g, math.isfinite(J), J, it, opts.tol, opts.max_iter, say)
                if stop is not None:
                    status = stop
                    break
                if opts.metric == "states" and it % opts.metric_every == 0:
                    scale = np.sqrt(f.states_metric_diagonal(w, opts.probes, seed=it))
                hv0 = f.evaluations["hvps"]
                path = _steihaug(g, functools.partial(f.hvp, w), scale, radius, opts.max_cg or 2 * p, opts.forcing)
                cg = f.evaluations["hvps"] - hv0
                trials = 0
                while True:
                    trials += 1
                    s = path.step
                    Jt = f.value(w + s)
                    rho = reduction_ratio(J, Jt, path.pred, not path.boundary)
                    if rho > _ETA or path.norm <= 1e-15 * (1.0 + float(np.linalg.norm(w * scale))):
                        break
                    # rejected: cut the same CG path back (no new products), as exact Newton re-solves
                    # with its eigendecomposition
                    radius = 0.25 * path.norm
                    path.cut(radius, scale)
                accepted = rho > _ETA
                if rho < 0.25:
                    radius = 0.25 * path.norm
                elif rho > 0.75 and path.boundary:
                    radius = min(2.0 * radius, opts.max_radius)
                stats["rejected"] += trials - 1
                stats["negative_curvature"] += int(path.negative)
                stats["boundary_steps"] += int(path.boundary)
                log_iteration(say, it, J, gnorm, path.norm, radius, rho, f"{cg:>5}", trials)
                it += 1
                if not accepted:
                    status = collapsed(stats, "the CG path")
                    break
                w, J = w + s, Jt
                g = f.gradient(w)
                stop = stop_after_iteration(callback, sigint, it, J, w, t1, opts.max_time_s, stats)
                if stop is not None:
                    status = stop
                    break
    finally:
        if opts.threads is not None:
            torch.set_num_threads(old_threads)
    t2 = time.perf_counter()
    stats.update(f.evaluations)
    if say and status is not Status.SUCCESS:
        say(f"stopped: {status.value}" + (f" ({stats['reason']})" if "reason" in stats else ""))
    return weights_solution(problem, w, status, it, (t0, t1, t2), METHOD, {**stats, "radius": radius})


@dataclass(frozen=True)
class NewtonCGSolver(WeightsSolverContract):
    """Hessian-free trust-region Newton–CG (:func:`newton_cg_solve`) as a
    :class:`~ocp_resnet.solvers.base.Solver` (of the CasADi back-end's family: the run's
    evaluation is CasADi's, the Hessian-vector products are torch's).

    ``options``: tolerance on ‖∇J‖_∞, iteration and time limits, trust-region radii, threads.
    ``callback`` is :func:`newton_cg_solve`'s. A :class:`Solution` given as ``init`` warm-starts
    from its weights.
    """

    method: ClassVar[str] = METHOD
    options: NewtonCGOptions = field(default_factory=NewtonCGOptions)
    callback: IterCallback | None = None

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """:func:`newton_cg_solve` from the initial weights ``init`` (seeded by ``seed`` when random)."""
        from ocp_resnet.solvers.init import initial_weights

        return newton_cg_solve(problem, initial_weights(problem, init, seed), self.options, log=log,
                               callback=self.callback)
