"""IPOPT's options as a typed, validated dataclass (the one place they become IPOPT's dict)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int
from ocp_resnet.solvers.base import Hessian, Method

HESSIANS = ("auto", "exact", "lbfgs")
#: the Newton path's model Hessians (``ocp_resnet.solvers.newton.CURVATURES``, which imports this module)
CURVATURES = ("primal-dual", "primal")
METHODS = ("multiple-shooting", "single-shooting")


def check_method(value: object) -> Method:
    """``value`` if it is ``"auto"`` or a transcription in :data:`METHODS`; else a ValidationError naming them."""
    return cast(Method, check_choice("method", value, ("auto", *METHODS)))


@dataclass
class IpoptOptions:
    """Options of the IPOPT solve, validated when set.

    ``ipopt`` passes any other IPOPT option through verbatim (e.g. ``{"mumps_pivot_order": 0}``).
    """

    tol: float = 1e-8
    max_iter: int = 3000
    print_level: int = 0
    hessian: Hessian = "auto"
    ipopt: dict[str, Any] = field(default_factory=dict)
    #: compile the per-sample functions with the C compiler: "auto" (where the evaluations
    #: dominate, see :mod:`ocp_resnet.solvers.ipopt.sizing`), True or False
    jit: Any = "auto"
    #: threads that evaluate the samples in parallel (CasADi's thread map; None: one); IPOPT/MUMPS
    #: itself follows OMP_NUM_THREADS. When ``auto`` hands the problem to the Newton path, its
    #: derivative sweeps use this many (None: :func:`ocp_resnet.solvers.newton.auto_threads`).
    #: The results are the same for any count.
    threads: int | None = None
    #: multiple shooting: restarts from re-simulated states when IPOPT's multipliers diverge
    #: (any |λ| > MAX_MULTIPLIER); 0 switches the guard off
    divergence_restarts: int = 2
    #: when ``auto`` hands the problem to the Newton path: its model Hessian,
    #: ``"primal-dual"`` or ``"primal"`` (:class:`ocp_resnet.solvers.newton.NewtonOptions`;
    #: None: its default)
    curvature: str | None = None

    def __post_init__(self) -> None:
        self.tol = check_float("tol", self.tol, 0.0, strict=True)
        self.max_iter = check_int("max_iter", self.max_iter, 0)
        self.print_level = check_int("print_level", self.print_level, 0)
        if self.print_level > 12:
            raise ValidationError(f"print_level must be 0..12, got {self.print_level}")
        check_choice("hessian", self.hessian, HESSIANS)
        if self.threads is not None:
            self.threads = check_int("threads", self.threads, 1)
        self.divergence_restarts = check_int("divergence_restarts", self.divergence_restarts, 0)
        if self.curvature is not None:
            check_choice("curvature", self.curvature, CURVATURES)
        if self.jit not in ("auto", True, False):
            raise ValidationError(f"jit must be 'auto', True or False, got {self.jit!r}")
        if not isinstance(self.ipopt, Mapping):
            raise ValidationError("ipopt options must be a mapping name -> value, e.g. {'mumps_pivot_order': 0}")
        if self.ipopt:
            check_ipopt_options(self.ipopt_dict(), self.ipopt)

    def to_dict(self) -> dict[str, Any]:
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


def check_ipopt_options(opts: Mapping[str, Any], given: Mapping[str, Any]) -> None:
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
