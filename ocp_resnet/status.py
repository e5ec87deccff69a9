"""How a solve or a training ended: :class:`Status`, one enum for every back-end and command."""
from __future__ import annotations

import enum


class Status(str, enum.Enum):
    """How a solve ended. ``status.message`` says what it means and what to do."""

    SUCCESS = "success"
    ACCEPTABLE = "acceptable"
    MAX_ITER = "max_iter"
    MAX_TIME = "max_time"
    RESTORATION_FAILED = "restoration_failed"
    INFEASIBLE = "infeasible"
    NAN = "nan"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    #: SGD-type training only: the objective stopped decreasing (the comparison's stopping rule)
    STALLED = "stalled"

    @property
    def message(self) -> str:
        """What the status means and what to do about it, in one sentence."""
        return _MESSAGES[self]

    @property
    def success(self) -> bool:
        """Whether the run converged (``SUCCESS`` or ``ACCEPTABLE``)."""
        return self in (Status.SUCCESS, Status.ACCEPTABLE)

    @classmethod
    def from_ipopt(cls, return_status: str) -> Status:
        """The status of IPOPT's ``return_status`` string (``ERROR`` for one it does not know)."""
        return _IPOPT.get(return_status, cls.ERROR)


_MESSAGES = {
    Status.SUCCESS: "converged: the KKT conditions hold to the requested tolerance",
    Status.ACCEPTABLE: "converged to IPOPT's looser 'acceptable' tolerance only; tighten nothing, but check the gradient norm",
    Status.MAX_ITER: "stopped at the iteration limit before converging; raise max_iter or warm-start from this run with "
                     "init=RUN_DIR",
    Status.MAX_TIME: "stopped at the time limit before converging; raise it (ipopt={'max_wall_time': SECONDS}) or "
                     "warm-start from this run with init=RUN_DIR",
    Status.RESTORATION_FAILED: "IPOPT's restoration phase failed (usually a poor start or bad scaling); "
                               "try another seed=S, init='zeros', or hessian='lbfgs'",
    Status.INFEASIBLE: "IPOPT judged the constraints infeasible, which should not happen for this problem; report it",
    Status.NAN: "an evaluation produced NaN or inf; use a smaller step (e.g. step=0.5) or initial scale, or "
                "standardise the data (standardize=True)",
    Status.INTERRUPTED: "interrupted by the user (Ctrl-C or a callback); the last iterate was kept: continue with "
                        "init=RUN_DIR, bounding the run by max_iter or by IPOPT's wall-clock limit "
                        "(ipopt={'max_wall_time': SECONDS})",
    Status.ERROR: "the solver stopped with an error; see stats.json for IPOPT's return status",
    Status.STALLED: "the objective stopped decreasing before the gradient norm reached the tolerance; "
                    "lower the learning rate or polish with IPOPT from this run (init=RUN_DIR)",
}

_IPOPT = {
    "Solve_Succeeded": Status.SUCCESS,
    "Solved_To_Acceptable_Level": Status.ACCEPTABLE,
    "Maximum_Iterations_Exceeded": Status.MAX_ITER,
    "Maximum_CpuTime_Exceeded": Status.MAX_TIME,
    "Maximum_WallTime_Exceeded": Status.MAX_TIME,
    "Restoration_Failed": Status.RESTORATION_FAILED,
    "Infeasible_Problem_Detected": Status.INFEASIBLE,
    "Invalid_Number_Detected": Status.NAN,
    "User_Requested_Stop": Status.INTERRUPTED,
}
