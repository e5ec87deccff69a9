"""IPOPT (through CasADi's nlpsol) on a transcribed problem, returning a :class:`Solution`.

Problem, transcription and solver are independent choices::

    sol = solve(problem, method="multiple-shooting", options=IpoptOptions(tol=1e-8))
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ._iteration import IterCallback, IterationMonitor, IterInfo
from .errors import ValidationError, check_choice, check_float, check_int
from .problem import Problem
from .solution import SolveError, Solution, Status

HESSIANS = ("exact", "lbfgs")


@dataclass
class IpoptOptions:
    """Options of the IPOPT solve, validated when set.

    ``ipopt`` passes any other IPOPT option through verbatim (e.g. ``{"mumps_pivot_order": 0}``).
    """

    tol: float = 1e-8
    max_iter: int = 3000
    print_level: int = 0
    hessian: str = "exact"
    ipopt: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tol = check_float("tol", self.tol, 0.0, strict=True)
        self.max_iter = check_int("max_iter", self.max_iter, 0)
        self.print_level = check_int("print_level", self.print_level, 0)
        if self.print_level > 12:
            raise ValidationError(f"print_level must be 0..12, got {self.print_level}")
        check_choice("hessian", self.hessian, HESSIANS)
        if not isinstance(self.ipopt, Mapping):
            raise ValidationError("ipopt options must be a mapping name -> value, e.g. {'mumps_pivot_order': 0}")
        if self.ipopt:
            _check_ipopt_options(self.ipopt_dict(), self.ipopt)

    def to_dict(self) -> dict:
        return asdict(self)

    def ipopt_dict(self) -> dict[str, Any]:
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
        }
        if self.hessian == "lbfgs":
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
    method: str = "multiple-shooting",
    options: IpoptOptions | None = None,
    init: Any = "random",
    seed: int = 0,
    throw: bool = False,
    log: Callable[[str], None] | None = None,
    callback: IterCallback | None = None,
    interruptible: bool = True,
) -> Solution:
    """Solve ``problem`` with IPOPT after transcribing it with ``method``.

    ``init`` may be a :class:`Solution` of the same problem structure (e.g. the previous point
    of a γ path): then its full iterate and multipliers are the start (pass IPOPT's
    ``warm_start_init_point="yes"`` in ``options.ipopt`` to use the multipliers).

    A failed solve returns its last iterate with its status (``throw=True`` raises
    :class:`SolveError` instead, with the solution attached).

    ``callback(info: IterInfo)`` is called after every IPOPT iteration (return ``True`` to
    stop). With ``interruptible`` (the default, main thread only) Ctrl-C stops IPOPT at the
    end of the current iteration and the last iterate is returned with status ``interrupted``.
    """
    import casadi as ca

    from .transcription import objective_and_gradient, transcribe

    options = options or IpoptOptions()
    w0 = initial_weights(problem, init, seed)
    t0 = time.perf_counter()
    nlp = transcribe(problem, method)
    if log is not None:
        log(
            f"NLP ({nlp.method}): {nlp.n_variables} variables ({nlp.n_weights} weights), "
            f"{nlp.n_constraints} constraints, {nlp.jacobian_nnz()} Jacobian non-zeros"
        )
    monitor = IterationMonitor(nlp.n_variables, nlp.lbg, nlp.ubg, nlp.weights, callback, interruptible)
    solver = ca.nlpsol(
        "ocp_resnet",
        "ipopt",
        {"x": nlp.x, "f": nlp.f, "g": nlp.g},
        {"ipopt": options.ipopt_dict(), "print_time": False, "error_on_fail": False, **monitor.nlpsol_options(),
         **nlp.nlpsol_options(options.hessian)},
    )
    start = _warm_start(nlp, init) if isinstance(init, Solution) else {"x0": nlp.initial_guess(w0)}
    t1 = time.perf_counter()
    res = None
    try:
        with monitor:
            res = solver(**start, lbg=nlp.lbg, ubg=nlp.ubg)
        xopt = np.asarray(res["x"]).ravel()
        stats = solver.stats()
    except KeyboardInterrupt:
        # Ctrl-C outside the monitored IPOPT loop (not interruptible, or just after it): keep
        # IPOPT's result if it exists; before IPOPT returned there is nothing to keep.
        if res is None:
            raise
        xopt, stats = np.asarray(res["x"]).ravel(), dict(solver.stats())
    t2 = time.perf_counter()
    if monitor.error is not None:  # the user callback failed: that is a bug to see, not a status
        raise monitor.error
    if monitor.interrupted or monitor.stopped_by_callback:
        stats = {**stats, "stopped_by": "SIGINT" if monitor.interrupted else "callback"}
    w = nlp.weights(xopt)
    status = Status.from_ipopt(str(stats.get("return_status", "")))
    with np.errstate(all="ignore"):  # a failed iterate may overflow: its numbers say so (inf/nan)
        ev = problem.evaluate(w)
        grad_norm = float(np.linalg.norm(objective_and_gradient(problem, w)[1])) if np.all(np.isfinite(w)) else float("nan")
    sol = Solution(
        weights=problem.params(w),
        w=w,
        evaluation=ev,
        grad_norm=grad_norm,
        status=status,
        iterations=int(stats.get("iter_count", 0)),
        build_time_s=t1 - t0,
        solve_time_s=t2 - t1,
        n_variables=nlp.n_variables,
        n_constraints=nlp.n_constraints,
        method=nlp.method,
        stats=_jsonable(stats),
        x=xopt,
        lam_g=np.asarray(res["lam_g"], dtype=float).ravel(),
        lam_x=np.asarray(res["lam_x"], dtype=float).ravel(),
    )
    if throw and not sol.success:
        raise SolveError(sol)
    return sol


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
