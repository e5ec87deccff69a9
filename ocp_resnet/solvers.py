"""IPOPT (through CasADi's nlpsol) on a transcribed problem, returning a :class:`Solution`.

Problem, transcription and solver are independent choices::

    sol = solve(problem, method="multiple-shooting", options=IpoptOptions(tol=1e-8))
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ._iteration import IterationMonitor, IterCallback, IterInfo, StopOnSigint  # noqa: F401 (IterInfo: re-exported)
from .errors import ValidationError, check_choice, check_float, check_int
from .evaluation import evaluate
from .problem import Problem
from .solution import Solution, SolveError, Status

HESSIANS = ("auto", "exact", "lbfgs")
METHODS = ("multiple-shooting", "single-shooting")


@dataclass
class IpoptOptions:
    """Options of the IPOPT solve, validated when set.

    ``ipopt`` passes any other IPOPT option through verbatim (e.g. ``{"mumps_pivot_order": 0}``).
    """

    tol: float = 1e-8
    max_iter: int = 3000
    print_level: int = 0
    hessian: str = "auto"
    ipopt: dict = field(default_factory=dict)
    #: compile the per-sample functions with the C compiler: "auto" (where the evaluations
    #: dominate, see :mod:`ocp_resnet.sizing`), True or False
    jit: Any = "auto"
    #: threads that evaluate the samples in parallel (CasADi's thread map); IPOPT/MUMPS itself
    #: follows OMP_NUM_THREADS
    threads: int = 1
    #: multiple shooting: restarts from re-simulated states when IPOPT's multipliers diverge
    #: (any |λ| > MAX_MULTIPLIER); 0 switches the guard off
    divergence_restarts: int = 2

    def __post_init__(self) -> None:
        self.tol = check_float("tol", self.tol, 0.0, strict=True)
        self.max_iter = check_int("max_iter", self.max_iter, 0)
        self.print_level = check_int("print_level", self.print_level, 0)
        if self.print_level > 12:
            raise ValidationError(f"print_level must be 0..12, got {self.print_level}")
        check_choice("hessian", self.hessian, HESSIANS)
        self.threads = check_int("threads", self.threads, 1)
        self.divergence_restarts = check_int("divergence_restarts", self.divergence_restarts, 0)
        if self.jit not in ("auto", True, False):
            raise ValidationError(f"jit must be 'auto', True or False, got {self.jit!r}")
        if not isinstance(self.ipopt, Mapping):
            raise ValidationError("ipopt options must be a mapping name -> value, e.g. {'mumps_pivot_order': 0}")
        if self.ipopt:
            _check_ipopt_options(self.ipopt_dict(), self.ipopt)

    def to_dict(self) -> dict:
        """The options as plain data (written to ``config.json``)."""
        return asdict(self)

    def ipopt_dict(self) -> dict[str, Any]:
        """The options handed to IPOPT (ours, then the user's ``ipopt`` overrides)."""
        opts: dict[str, Any] = {
            "tol": self.tol,
            "max_iter": self.max_iter,
            "print_level": self.print_level,
            "sb": "yes",
            "print_timing_statistics": "no",
            # The KKT matrix is an arrowhead (per-sample blocks bordered by the weights): AMD
            # orders it far better than MUMPS' automatic choice, and a small workspace margin
            # avoids re-allocating ~10x the factor every iteration (docs/performance.md).
            "mumps_pivot_order": 0,
            "mumps_mem_percent": 5,
            # Least-squares multipliers whenever the dynamics hold to 1 (for multiple shooting
            # they are the exact adjoints of the current weights): without them a fourth-digit
            # change of γ sent IPOPT's dual infeasibility to 1e9 and the solve never ended; with
            # them every solve of the robustness suite converged (docs/performance.md,
            # benchmarks/robustness.py). `--ipopt recalc_y=no` gives the previous behaviour.
            "recalc_y": "yes",
            "recalc_y_feas_tol": 1.0,
        }
        if self.hessian == "lbfgs":  # "auto" is resolved by solve() before IPOPT sees it
            opts["hessian_approximation"] = "limited-memory"
        opts.update(self.ipopt)
        return opts


def _check_ipopt_options(opts: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Let IPOPT itself vet pass-through options on a one-variable problem (milliseconds)."""
    import casadi as ca

    x = ca.SX.sym("x")
    try:
        ca.nlpsol("check_options", "ipopt", {"x": x, "f": x * x}, {"ipopt": dict(opts), "print_time": False})
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].split(": ", 1)[-1]
        raise ValidationError(
            f"IPOPT rejects the options {dict(given)!r}: {reason}; check the names and value types "
            "against IPOPT's option list (https://coin-or.github.io/Ipopt/OPTIONS.html)"
        ) from None


def initial_weights(problem: Problem, init: Any = "random", seed: int = 0) -> np.ndarray:
    """Flat initial weights: ``"random"`` (seeded), ``"zeros"``, a flat array, a name → array
    mapping, a :class:`Solution`, or a path to a ``solution.npz`` / run directory (warm start)."""
    w = _initial_weights(problem, init, seed)
    if not np.all(np.isfinite(w)):
        raise ValidationError("the initial weights contain NaN or inf: warm-start from a finite run, or use --init random/zeros")
    return w


def _initial_weights(problem: Problem, init: Any, seed: int) -> np.ndarray:
    spec = problem.spec
    seed = check_int("seed", seed, 0)
    if isinstance(init, str) and init in ("random", "zeros"):
        return spec.flatten(spec.init_params(init, seed))
    if isinstance(init, Solution):
        init = init.w
    if isinstance(init, Mapping):
        return spec.flatten(init)
    if isinstance(init, np.ndarray):
        w = np.asarray(init, dtype=float).ravel()
        if w.size != spec.n_params:
            raise ValidationError(f"initial weights have {w.size} entries, this spec needs {spec.n_params}")
        return w
    if isinstance(init, (str,)) or hasattr(init, "__fspath__"):
        from pathlib import Path

        from .runs import load_weights

        if not Path(init).exists():
            raise ValidationError(
                f"unknown init {str(init)!r}: use random, zeros, or the path of a run directory / solution.npz"
            )

        weights = load_weights(init)
        extra = sorted(set(weights) - set(spec.param_shapes()))
        if extra:
            raise ValidationError(
                f"{init}: weights {', '.join(extra[:5])} are not in this architecture: the weights do not match "
                "this spec; check --blocks/--width/--branch against the weights file"
            )
        return spec.flatten(weights)
    raise ValidationError(f"init must be 'random', 'zeros', an array or a path, got {type(init).__name__}")


def solve(
    problem: Problem,
    method: str = "auto",
    options: IpoptOptions | None = None,
    init: Any = "random",
    seed: int = 0,
    throw: bool = False,
    log: Callable[[str], None] | None = None,
    callback: IterCallback | None = None,
    interruptible: bool = True,
) -> Solution:
    """Solve ``problem`` with IPOPT after transcribing it with ``method``.

    ``method="auto"`` and ``options.hessian="auto"`` (the defaults) pick the transcription and
    Hessian from the problem's size before anything is built (:func:`ocp_resnet.sizing.plan`);
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
    from .sizing import plan as plan_path
    from .transcription import objective_and_gradient
    from .transcription._common import check_smooth

    options = options or IpoptOptions()
    check_choice("method", method, ("auto", *METHODS))
    check_smooth(problem)
    chosen = plan_path(problem, method, options.hessian)
    if log is not None and "auto" in (method, options.hessian):
        log(chosen.reason)
    options = replace(options, hessian=chosen.hessian, ipopt={**chosen.ipopt, **options.ipopt},
                      jit=chosen.jit if options.jit == "auto" else options.jit)
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

    def __init__(self, problem: Problem, method: str, options: IpoptOptions, init: Any, w0: np.ndarray,
                 log: Callable[[str], None] | None, callback: IterCallback | None) -> None:
        self.problem, self.method, self.options, self.init, self.w0 = problem, method, options, init, w0
        self.log, self.callback = log, callback
        self.stop = threading.Event()
        self.nlp: Any = None
        self.monitor: IterationMonitor | None = None
        self.res: dict | None = None
        self.stats: dict = {}
        self.error: BaseException | None = None
        self.abandoned = False
        self.t = [time.perf_counter(), None, None]

    def run(self) -> None:
        import casadi as ca

        from .transcription import transcribe

        nlp = self.nlp = transcribe(self.problem, self.method, jit=bool(self.options.jit), threads=self.options.threads)
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
        self.t[1] = time.perf_counter()
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
        self.t[2] = time.perf_counter()

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
        done = self.res is not None and not self.abandoned
        if done:
            xopt, stats = self.res["x"], self.stats
            status = Status.from_ipopt(str(stats.get("return_status", "")))
            if monitor.stopped_by_callback or self.stop.is_set():
                stats = {**stats, "stopped_by": "callback" if monitor.stopped_by_callback else "SIGINT"}
            iterations = int(stats.get("iter_count", 0))
        else:  # interrupted before IPOPT returned: the last completed iterate (or the start)
            xopt = monitor.last_x if monitor is not None and monitor.last_x is not None else None
            iterations = max(monitor.iterations - 1, 0) if monitor is not None else 0
            status = Status.INTERRUPTED
            stats = {"return_status": "Interrupted_Before_Return", "stopped_by": "SIGINT", "iter_count": iterations}
        w = nlp.weights(xopt) if xopt is not None else np.array(self.w0, dtype=float)
        now = time.perf_counter()
        t0, t1, t2 = self.t[0], self.t[1] or now, self.t[2] or now
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
            stats={**_jsonable(stats), "hessian": self.options.hessian, "jit": bool(nlp is not None and nlp.meta.get("jit"))},
            x=xopt,
            lam_g=self.res["lam_g"] if done else None,
            lam_x=self.res["lam_x"] if done else None,
        )


def _warm_start(nlp, previous: Solution) -> dict[str, np.ndarray]:
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
