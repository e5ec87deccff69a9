"""IPOPT iteration monitor: per-iteration records, user callbacks and a clean stop on request.

CasADi calls an ``iteration_callback`` (a :class:`casadi.Callback`) after every IPOPT
iteration with the current iterate. :class:`IterationMonitor` uses it to

* keep the last completed iterate, so an interrupted solve can return it at any moment;
* hand a small :class:`IterInfo` record to a user ``callback(info)`` (a trace of objective,
  primal infeasibility and wall time, e.g. for comparing optimizers); the callback may return
  ``True`` to stop the solve;
* stop IPOPT when its ``stop`` event is set: :func:`ocp_resnet.solvers.ipopt.solver.solve` runs IPOPT in a
  worker thread (CasADi releases the GIL while IPOPT runs) and the main thread, which holds
  the SIGINT handler (:class:`StopOnSigint`), sets the event on Ctrl-C and answers at once
  with the last completed iterate, even in the middle of a long factorisation.

The cost per iteration is one copy of the iterate and one of the constraint values.
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocp_resnet.status import Status


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
IterCallback = Callable[[IterInfo], bool | None]


class IterationMonitor:
    """Builds the CasADi iteration callback: records the last completed iterate, hands
    :class:`IterInfo` to a user callback and stops IPOPT once ``stop`` is set (by the thread
    that waits for the solve, on Ctrl-C) or the user callback returns ``True``."""

    def __init__(
        self,
        n_x: int,
        lbg: np.ndarray,
        ubg: np.ndarray,
        weights: Callable[[np.ndarray], np.ndarray],
        callback: IterCallback | None = None,
        stop: threading.Event | None = None,
        max_multiplier: float | None = None,
    ):
        self.n_x = int(n_x)
        self.lbg = np.asarray(lbg, dtype=float).ravel()
        self.ubg = np.asarray(ubg, dtype=float).ravel()
        self.weights = weights
        self.callback = callback
        self.stop = stop if stop is not None else threading.Event()
        #: stop IPOPT when a constraint multiplier exceeds this (its multiplier estimate diverges)
        self.max_multiplier = max_multiplier
        self.diverged: float | None = None  # the multiplier size that stopped it
        self.stopped_by_callback = False
        self.error: BaseException | None = None  # an exception raised by the user callback
        self.iterations = 0
        #: the NLP iterate of the last completed iteration (the start point before the first)
        self.last_x: np.ndarray | None = None
        self._t0 = time.perf_counter()
        self._function = _CasadiCallback(self)

    # ------------------------------------------------------------------ casadi side
    def nlpsol_options(self) -> dict[str, Any]:
        """The ``nlpsol`` options that install the callback."""
        return {"iteration_callback": self._function}

    def start(self, x0: np.ndarray) -> None:
        """Remember the initial point: the last iterate until IPOPT reports one."""
        self.last_x = np.array(x0, dtype=float).ravel()

    def _on_iteration(self, x: np.ndarray, f: float, g: np.ndarray, lam_max: float = 0.0) -> int:
        """Called by CasADi after each iteration; returns 1 to stop IPOPT."""
        k = self.iterations
        self.iterations += 1
        self.last_x = x
        if self.max_multiplier is not None and not lam_max <= self.max_multiplier:  # NaN counts too
            self.diverged = lam_max
            return 1
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
        return int(self.stop.is_set() or self.stopped_by_callback or self.error is not None)

    def __enter__(self) -> IterationMonitor:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


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

    def __enter__(self) -> StopOnSigint:
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


def _make_callback_class() -> type[Any]:
    import casadi as ca

    class _Callback(ca.Callback):
        """The casadi.Callback IPOPT calls; inputs are nlpsol's outputs (x, f, g, lam_*)."""

        def __init__(self, monitor: IterationMonitor) -> None:
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

        def get_sparsity_in(self, i: int) -> ca.Sparsity:
            name = ca.nlpsol_out(i)
            if name == "f":
                return ca.Sparsity.scalar()
            if name in ("x", "lam_x"):
                return ca.Sparsity.dense(self.monitor.n_x)
            if name in ("g", "lam_g"):
                return ca.Sparsity.dense(self._ng)
            return ca.Sparsity(0, 0)

        def eval(self, arg: Sequence[Any]) -> list[int]:
            m = self.monitor
            x = np.array(arg[0], dtype=float).ravel()
            g = np.array(arg[2], dtype=float).ravel()
            lam = np.abs(np.asarray(arg[4], dtype=float)).max(initial=0.0) if m.max_multiplier is not None else 0.0
            return [m._on_iteration(x, float(arg[1]), g, float(lam))]

    return _Callback


_CALLBACK_CLASS: type[Any] | None = None


def _CasadiCallback(monitor: IterationMonitor) -> Any:
    global _CALLBACK_CLASS
    if _CALLBACK_CLASS is None:
        _CALLBACK_CLASS = _make_callback_class()
    return _CALLBACK_CLASS(monitor)


def stop_after_iteration(callback: IterCallback | None, sigint: StopOnSigint, iteration: int, objective: float,
                         w: np.ndarray, started: float, max_time_s: float, stats: dict[str, Any]) -> Status | None:
    """The status a weights-only solver (the Newton paths) stops with after an accepted
    iteration, or None to go on: ``INTERRUPTED`` when ``callback`` returned True or after Ctrl-C
    (``stats["stopped_by"]`` says which: ``"callback"`` / ``"SIGINT"``), ``MAX_TIME`` past
    ``max_time_s`` seconds since ``started`` (``time.perf_counter()``; 0: no limit)."""
    elapsed = time.perf_counter() - started
    if callback is not None and callback(IterInfo(iteration=iteration, objective=objective, inf_pr=0.0,
                                                  wall_s=elapsed, w=w.copy(), x=w.copy())):
        stats["stopped_by"] = "callback"
        return Status.INTERRUPTED
    if sigint.requested:
        stats["stopped_by"] = "SIGINT"
        return Status.INTERRUPTED
    if max_time_s and elapsed > max_time_s:
        return Status.MAX_TIME
    return None
