"""IPOPT (through CasADi's nlpsol) on a transcribed problem, returning a :class:`Solution`.

Problem, transcription and solver are independent choices::

    sol = solve(problem, method="multiple-shooting", options=IpoptOptions(tol=1e-8))
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.errors import check_choice
from ocp_resnet.model.evaluation import evaluate
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.base import Backend, Init, Log, Method
from ocp_resnet.solvers.init import initial_weights
from ocp_resnet.solvers.ipopt.options import METHODS, IpoptOptions
from ocp_resnet.solvers.iteration import IterationMonitor, IterCallback, IterInfo, StopOnSigint  # noqa: F401 (IterInfo: re-exported)
from ocp_resnet.solvers.solution import Solution, SolveError
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.solvers.ipopt.transcription import NLP


def solve(
    problem: Problem,
    method: Method = "auto",
    options: IpoptOptions | None = None,
    init: Init = "random",
    seed: int = 0,
    throw: bool = False,
    log: Callable[[str], None] | None = None,
    callback: IterCallback | None = None,
    interruptible: bool = True,
) -> Solution:
    """Solve ``problem`` with IPOPT after transcribing it with ``method``.

    ``method="auto"`` and ``options.hessian="auto"`` (the defaults) pick the transcription and
    Hessian from the problem's size before anything is built (:func:`ocp_resnet.solvers.ipopt.sizing.plan`);
    a problem no path can do is refused at once with a :class:`ValidationError`.

    ``init`` may be a :class:`Solution` of the same problem structure (e.g. the previous point
    of a γ path): then its full iterate and multipliers are the start (pass IPOPT's
    ``warm_start_init_point="yes"`` in ``options.ipopt`` to use the multipliers).

    A failed solve returns its last iterate with its status (``throw=True`` raises
    :class:`SolveError` instead, with the solution attached).

    ``callback(info: IterInfo)`` is called after every IPOPT iteration (return ``True`` to
    stop). With ``interruptible`` (the default; main thread only) the build and IPOPT run in a
    worker thread and Ctrl-C returns at once, at any moment (inside a factorisation too), with
    the last completed iterate and status ``interrupted``; the worker stops at the end of its
    current iteration.
    """
    from ocp_resnet.solvers.ipopt.sizing import plan as plan_path
    from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient
    from ocp_resnet.solvers.ipopt.transcription._common import check_smooth

    options = options or IpoptOptions()
    check_choice("method", method, ("auto", *METHODS))
    check_smooth(problem)
    chosen = plan_path(problem, method, options.hessian, options.jit)
    if log is not None and ("auto" in (method, options.hessian) or (options.jit is True and not chosen.jit)):
        log(chosen.reason)
    options = replace(options, hessian=chosen.hessian, ipopt={**chosen.ipopt, **options.ipopt},
                      jit=chosen.jit if options.jit in ("auto", True) else False)
    w0 = initial_weights(problem, init, seed)
    objective_and_gradient(problem, w0)  # built here: CasADi builds symbols in one thread at a time
    job = _IpoptJob(problem, chosen.method, options, init, w0, log, callback)
    if interruptible and threading.current_thread() is threading.main_thread():
        job.run_in_worker()
    else:
        job.run()
    sol = job.solution()
    if throw and not sol.success:
        raise SolveError(sol)
    return sol


#: A constraint multiplier above this means IPOPT's multiplier estimate has diverged. With the
#: multipliers scaled as here (λ = costate / n) healthy solves of the robustness suite stay
#: below ~1e3; the diverging ones passed 1e10 and kept growing.
MAX_MULTIPLIER = 1e8

#: How long an interrupted solve waits for IPOPT to end its iteration on its own (and so to
#: return its multipliers) before it answers with the last completed iterate.
INTERRUPT_GRACE_S = 0.2
_ABANDONED: list[threading.Thread] = []


def abandoned_workers() -> list[threading.Thread]:
    """Worker threads of interrupted solves that are still finishing their IPOPT iteration.

    They stop by themselves at the end of that iteration; a program that exits right after an
    interruption should leave with ``os._exit`` when this is non-empty (as the CLI does), since
    the C++ libraries they are inside cannot be unloaded under them.
    """
    _ABANDONED[:] = [t for t in _ABANDONED if t.is_alive()]
    return list(_ABANDONED)


class _IpoptJob:
    """One IPOPT run: transcription, solver build, solve; the state a Solution is made from."""

    def __init__(self, problem: Problem, method: Method, options: IpoptOptions, init: Init, w0: np.ndarray,
                 log: Callable[[str], None] | None, callback: IterCallback | None) -> None:
        self.problem, self.method, self.options, self.init, self.w0 = problem, method, options, init, w0
        self.log, self.callback = log, callback
        self.stop = threading.Event()
        self.nlp: NLP | None = None
        self.monitor: IterationMonitor | None = None
        self.res: dict[str, np.ndarray] | None = None
        self.stats: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.abandoned = False
        #: when the build started, IPOPT started and IPOPT returned (None: not reached)
        self.t0: float = time.perf_counter()
        self.t1: float | None = None
        self.t2: float | None = None

    def run(self) -> None:
        import casadi as ca

        from ocp_resnet.solvers.ipopt.transcription import transcribe

        nlp = self.nlp = transcribe(self.problem, self.method, jit=bool(self.options.jit),
                                    threads=self.options.threads or 1)
        if self.log is not None:
            self.log(
                f"NLP ({nlp.method}): {nlp.n_variables} variables ({nlp.n_weights} weights), "
                f"{nlp.n_constraints} constraints, {nlp.jacobian_nnz()} Jacobian non-zeros"
            )
        guard = MAX_MULTIPLIER if nlp.n_constraints and self.options.divergence_restarts else None
        monitor = self.monitor = IterationMonitor(nlp.n_variables, nlp.lbg, nlp.ubg, nlp.weights, self.callback,
                                                  stop=self.stop, max_multiplier=guard)
        solver = ca.nlpsol(
            "ocp_resnet",
            "ipopt",
            {"x": nlp.x, "f": nlp.f, "g": nlp.g},
            {"ipopt": self.options.ipopt_dict(), "print_time": False, "error_on_fail": False,
             **monitor.nlpsol_options(), **nlp.nlpsol_options(self.options.hessian)},
        )
        start = _warm_start(nlp, self.init) if isinstance(self.init, Solution) else {"x0": nlp.initial_guess(self.w0)}
        monitor.start(start["x0"])
        self.t1 = time.perf_counter()
        if self.stop.is_set():
            return
        restarts, before = 0, 0
        while True:
            with monitor:
                res = solver(**start, lbg=nlp.lbg, ubg=nlp.ubg)
            stats = dict(solver.stats())
            if monitor.diverged is None or self.stop.is_set():
                break
            # IPOPT's multiplier estimate diverged (|λ| → 1e10 and beyond, the Hessian regularisation
            # then grows without end): start again from these weights with re-simulated states,
            # i.e. a feasible point and fresh multipliers (docs/performance.md, "Robustness").
            restarts += 1
            before += int(stats.get("iter_count", 0))
            w = nlp.weights(np.asarray(res["x"], dtype=float).ravel())
            if self.log is not None:
                self.log(f"multipliers diverged (|lambda| = {monitor.diverged:.1e} after {before} iterations): "
                         f"restarting IPOPT from these weights with re-simulated states")
            if restarts >= self.options.divergence_restarts:
                monitor.max_multiplier = None  # the last attempt runs to IPOPT's own end
            monitor.diverged = None
            start = {"x0": nlp.initial_guess(w) if np.all(np.isfinite(w)) else nlp.initial_guess(self.w0)}
            monitor.start(start["x0"])
        self.res = {k: np.asarray(v, dtype=float).ravel() for k, v in res.items()}
        self.stats = {**stats, "iter_count": before + int(stats.get("iter_count", 0)), "divergence_restarts": restarts}
        self.t2 = time.perf_counter()

    def _run_catching(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc

    def run_in_worker(self) -> None:
        """Run in a daemon thread; the calling (main) thread waits and answers Ctrl-C at once."""
        worker = threading.Thread(target=self._run_catching, name="ocp_resnet-ipopt", daemon=True)
        with StopOnSigint() as sigint:
            worker.start()
            while worker.is_alive() and not sigint.requested:
                worker.join(0.05)
            if sigint.requested:
                self.stop.set()  # IPOPT ends at its next iteration callback
                worker.join(INTERRUPT_GRACE_S)
                if worker.is_alive():  # inside a factorisation or the build: do not wait for it
                    self.abandoned = True
                    _ABANDONED.append(worker)

    def solution(self) -> Solution:
        if self.error is not None and not self.abandoned:
            raise self.error
        if self.monitor is not None and self.monitor.error is not None:
            raise self.monitor.error  # the user callback failed: that is a bug to see, not a status
        nlp, monitor = self.nlp, self.monitor
        res = self.res if not self.abandoned else None
        xopt: np.ndarray | None
        if res is not None:
            xopt, stats = res["x"], self.stats
            status = Status.from_ipopt(str(stats.get("return_status", "")))
            by_callback = monitor is not None and monitor.stopped_by_callback
            if by_callback or self.stop.is_set():
                stats = {**stats, "stopped_by": "callback" if by_callback else "SIGINT"}
            iterations = int(stats.get("iter_count", 0))
        else:  # interrupted before IPOPT returned: the last completed iterate (or the start)
            xopt = monitor.last_x if monitor is not None and monitor.last_x is not None else None
            iterations = max(monitor.iterations - 1, 0) if monitor is not None else 0
            status = Status.INTERRUPTED
            stats = {"return_status": "Interrupted_Before_Return", "stopped_by": "SIGINT", "iter_count": iterations}
        # an iterate exists only once run() has transcribed the problem (nlp is set)
        w = nlp.weights(xopt) if xopt is not None and nlp is not None else np.array(self.w0, dtype=float)
        now = time.perf_counter()
        t0, t1, t2 = self.t0, self.t1 or now, self.t2 or now
        ev = evaluate(self.problem, w)
        return Solution(
            weights=self.problem.params(w),
            w=w,
            evaluation=ev,
            status=status,
            iterations=iterations,
            build_time_s=t1 - t0,
            solve_time_s=t2 - t1,
            n_variables=nlp.n_variables if nlp is not None else 0,
            n_constraints=nlp.n_constraints if nlp is not None else 0,
            method=self.method,
            stats={**_jsonable(stats), "hessian": self.options.hessian, "jit": bool(nlp is not None and nlp.meta.get("jit")),
                   **_jit_note(nlp)},
            x=xopt,
            lam_g=res["lam_g"] if res is not None else None,
            lam_x=res["lam_x"] if res is not None else None,
        )


def _jit_note(nlp: NLP | None) -> dict[str, str]:
    """``{"jit_note": why}`` when compiled code was asked for and (some of) it runs interpreted."""
    sf = None if nlp is None else nlp.meta.get("sample_functions")
    note = getattr(sf, "jit_note", None)
    return {} if note is None else {"jit_note": note}


def _warm_start(nlp: NLP, previous: Solution) -> dict[str, np.ndarray]:
    """Start values from an earlier solve: its full iterate and multipliers when it used the same
    transcription at the same size (a γ path), else only its weights (states re-simulated)."""
    same = previous.method == nlp.method and previous.x is not None and previous.x.size == nlp.n_variables
    if not same:
        return {"x0": nlp.initial_guess(previous.w)}
    out = {"x0": np.asarray(previous.x, dtype=float)}
    if previous.lam_g is not None and previous.lam_g.size == nlp.n_constraints:
        out["lam_g0"] = np.asarray(previous.lam_g, dtype=float)
    if previous.lam_x is not None and previous.lam_x.size == nlp.n_variables:
        out["lam_x0"] = np.asarray(previous.lam_x, dtype=float)
    return out


def _jsonable(obj: Any) -> Any:
    """IPOPT stats as plain JSON types (drops what cannot be represented)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.floating)):
        return _jsonable(obj.item())
    try:
        return _jsonable(np.asarray(obj, dtype=float).tolist())
    except Exception:
        return str(obj)


@dataclass(frozen=True)
class IpoptSolver:
    """IPOPT on a transcription of the problem: the :class:`~ocp_resnet.solvers.base.Solver` of the
    CasADi back-end.

    ``method``: ``"multiple-shooting"``, ``"single-shooting"`` or ``"auto"`` (chosen from the
    problem's size before anything is built, :func:`ocp_resnet.solvers.ipopt.sizing.plan`);
    ``options``: IPOPT's tolerance, iteration limit, Hessian and pass-through options.
    ``callback`` and ``interruptible`` are those of :func:`solve`.
    """

    method: Method = "auto"
    options: IpoptOptions = field(default_factory=IpoptOptions)
    callback: IterCallback | None = None
    interruptible: bool = True

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("auto", *METHODS))

    @property
    def backend(self) -> Backend:
        """Always ``"casadi"``."""
        return "casadi"

    @property
    def name(self) -> str:
        """``ipopt/<method>``."""
        return f"ipopt/{self.method}"

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """:func:`solve` with this solver's method and options. With ``method="auto"`` and an exact
        (or auto) Hessian, a problem small enough for the Newton path is solved by it, and one too
        large for exact Newton's dense Hessian by Hessian-free Newton–CG
        (:func:`ocp_resnet.solvers.ipopt.sizing.plan`; the ``auto:`` log line says so) — unless
        IPOPT options were passed through (``options.ipopt``): they ask for IPOPT."""
        if self.method == "auto" and self.options.hessian in ("auto", "exact") and not self.options.ipopt:
            from ocp_resnet.solvers.ipopt.sizing import plan
            from ocp_resnet.solvers.newton import NewtonOptions, NewtonSolver, check_newton
            from ocp_resnet.solvers.newton_cg import NewtonCGOptions, NewtonCGSolver, check_newton_cg

            chosen = plan(problem, "auto", self.options.hessian, newton=True,
                          newton_cg=check_newton_cg(problem) is None) if check_newton(problem) else None
            if chosen is not None and chosen.method == "newton":
                if log is not None:
                    log(chosen.reason)
                opts = NewtonOptions(tol=self.options.tol, max_iter=self.options.max_iter, print_level=1,
                                     threads=self.options.threads or 0,
                                     curvature=self.options.curvature or NewtonOptions.curvature)
                return NewtonSolver(opts, callback=self.callback).solve(problem, init, seed, log)
            if chosen is not None and chosen.method == "newton-cg":
                if log is not None:
                    log(chosen.reason)
                cg = NewtonCGOptions(tol=self.options.tol, max_iter=self.options.max_iter, print_level=1,
                                     threads=self.options.threads)
                return NewtonCGSolver(cg, callback=self.callback).solve(problem, init, seed, log)
        return solve(problem, method=self.method, options=self.options, init=init, seed=seed, log=log,
                     callback=self.callback, interruptible=self.interruptible)

    def record(self) -> dict[str, Any]:
        """``{"backend": "casadi", "method": ..., **options}``."""
        return {"backend": "casadi", "method": self.method, **self.options.to_dict()}

    def with_options(self, **changes: Any) -> IpoptSolver:
        """The same solver with some IPOPT options changed (``tol``, ``max_iter``, ``ipopt`` ...)."""
        return replace(self, options=replace(self.options, **changes))
