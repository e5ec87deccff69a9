"""IPOPT iteration monitor: per-iteration records, user callbacks and a clean stop on Ctrl-C.

CasADi calls an ``iteration_callback`` (a :class:`casadi.Callback`) after every IPOPT
iteration with the current iterate. :class:`IterationMonitor` uses it to

* hand a small :class:`IterInfo` record to a user ``callback(info)`` (a trace of objective,
  primal infeasibility and wall time, e.g. for comparing optimizers); the callback may return
  ``True`` to stop the solve;
* stop the solve cleanly on SIGINT (Ctrl-C): while IPOPT runs, a Python signal handler only
  sets a flag, and the next iteration callback returns "stop". IPOPT then ends with
  ``User_Requested_Stop`` and CasADi hands back that iterate, so the caller keeps it
  (status ``interrupted``).

Why not simply catch ``KeyboardInterrupt``: Python runs signal handlers only when the
interpreter regains control, which during ``nlpsol`` happens only inside this callback; an
exception raised there would abort the solve without its iterate. The stop therefore takes
effect at the end of the current IPOPT iteration. The cost per iteration is one copy of the
iterate and one of the constraint values (measured with IPOPT's ``t_wall_callback_fun``).
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np


@dataclass(frozen=True)
class IterInfo:
    """One IPOPT iteration as the iteration callback sees it.

    ``iteration`` counts callback calls from 0 (the start point); ``objective`` is f(x) of the
    NLP; ``inf_pr`` the largest constraint violation (0 for single shooting); ``wall_s``
    seconds since the solve started; ``w`` the flat network weights and ``x`` the full NLP
    iterate (weights and, for multiple shooting, states). The arrays are copies.
    """

    iteration: int
    objective: float
    inf_pr: float
    wall_s: float
    w: np.ndarray
    x: np.ndarray


#: A user callback: gets each :class:`IterInfo`; returning ``True`` stops the solve.
IterCallback = Callable[[IterInfo], Optional[bool]]


class IterationMonitor:
    """Builds the CasADi iteration callback and, as a context manager, the SIGINT handler."""

    def __init__(
        self,
        n_x: int,
        lbg: np.ndarray,
        ubg: np.ndarray,
        weights: Callable[[np.ndarray], np.ndarray],
        callback: IterCallback | None = None,
        catch_sigint: bool = True,
    ):
        self.n_x = int(n_x)
        self.lbg = np.asarray(lbg, dtype=float).ravel()
        self.ubg = np.asarray(ubg, dtype=float).ravel()
        self.weights = weights
        self.callback = callback
        self.catch_sigint = catch_sigint
        self._sigint = StopOnSigint()  # sets .requested on Ctrl-C while the solve runs
        self.stopped_by_callback = False
        self.error: BaseException | None = None  # an exception raised by the user callback
        self.iterations = 0
        self._t0 = time.perf_counter()
        self._function = _CasadiCallback(self) if (callback is not None or catch_sigint) else None

    # ------------------------------------------------------------------ casadi side
    def nlpsol_options(self) -> dict[str, Any]:
        """The ``nlpsol`` options that install the callback (empty when nothing is monitored)."""
        return {} if self._function is None else {"iteration_callback": self._function}

    def _on_iteration(self, x: np.ndarray, f: float, g: np.ndarray) -> int:
        """Called by CasADi after each iteration; returns 1 to stop IPOPT."""
        k = self.iterations
        self.iterations += 1
        if self.callback is not None and self.error is None:
            try:
                viol = np.maximum(self.lbg - g, g - self.ubg) if g.size else np.zeros(0)
                info = IterInfo(
                    iteration=k,
                    objective=float(f),
                    inf_pr=float(np.max(viol, initial=0.0)),
                    wall_s=time.perf_counter() - self._t0,
                    w=np.array(self.weights(x), dtype=float),
                    x=x,
                )
                if self.callback(info):
                    self.stopped_by_callback = True
            except BaseException as exc:  # re-raised by solve() once IPOPT has returned
                self.error = exc
        return int(self.interrupted or self.stopped_by_callback or self.error is not None)

    # ------------------------------------------------------------------ SIGINT
    @property
    def interrupted(self) -> bool:
        return self._sigint.requested

    def __enter__(self) -> "IterationMonitor":
        self._t0 = time.perf_counter()
        if self.catch_sigint:
            self._sigint.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sigint.__exit__(*exc)


class StopOnSigint:
    """While active (main thread only), Ctrl-C sets ``requested`` instead of raising KeyboardInterrupt.

    A loop that can stop cleanly checks ``requested`` once per step (an IPOPT iteration, a
    torch optimizer step), keeps its current iterate and reports status ``interrupted``::

        with StopOnSigint() as stop:
            for step in range(n):
                ...
                if stop.requested:
                    break

    Elsewhere (another thread, or where handlers cannot be installed) it does nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __enter__(self) -> "StopOnSigint":
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
            except (ValueError, OSError):  # not allowed here (e.g. an embedded interpreter)
                self._installed = False
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._old)
            self._installed = False


def _make_callback_class():
    import casadi as ca

    class _Callback(ca.Callback):
        """The casadi.Callback IPOPT calls; inputs are nlpsol's outputs (x, f, g, lam_*)."""

        def __init__(self, monitor: IterationMonitor):
            ca.Callback.__init__(self)
            self.monitor = monitor
            self._ng = monitor.lbg.size
            self.construct("ocp_resnet_iteration", {})

        def get_n_in(self) -> int:
            return ca.nlpsol_n_out()

        def get_n_out(self) -> int:
            return 1

        def get_name_in(self, i: int) -> str:
            return ca.nlpsol_out(i)

        def get_name_out(self, i: int) -> str:
            return "stop"

        def get_sparsity_in(self, i: int):
            name = ca.nlpsol_out(i)
            if name == "f":
                return ca.Sparsity.scalar()
            if name in ("x", "lam_x"):
                return ca.Sparsity.dense(self.monitor.n_x)
            if name in ("g", "lam_g"):
                return ca.Sparsity.dense(self._ng)
            return ca.Sparsity(0, 0)

        def eval(self, arg):
            m = self.monitor
            if m.callback is None:  # only watching for Ctrl-C: copy nothing
                m.iterations += 1
                return [int(m.interrupted)]
            x = np.array(arg[0], dtype=float).ravel()
            g = np.array(arg[2], dtype=float).ravel()
            return [m._on_iteration(x, float(arg[1]), g)]

    return _Callback


_CALLBACK_CLASS: Any = None


def _CasadiCallback(monitor: IterationMonitor):
    global _CALLBACK_CLASS
    if _CALLBACK_CLASS is None:
        _CALLBACK_CLASS = _make_callback_class()
    return _CALLBACK_CLASS(monitor)
