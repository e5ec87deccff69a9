"""A function evaluated in a forked child process, its array result handed back through shared memory.

The Newton path's derivative sweep is many small numpy operations and CasADi calls, so two
Python threads mostly wait for each other's interpreter lock; a second process does not. The
child is forked (it inherits the parent's built functions: nothing is pickled but the
arguments of each call), answers calls one at a time until its pipe closes, ignores Ctrl-C (the
parent decides when to stop) and writes each result into an anonymous shared mapping, so a p×p
result costs no copy through the pipe. Only where the ``fork`` start method exists (Linux):
:func:`can_fork` says whether it does.
"""
from __future__ import annotations

import functools
import math
import mmap
import signal
import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np


def can_fork() -> bool:
    """Whether a :class:`ForkedCall` can be started here: Linux (where the ``fork`` start
    method always exists; macOS's system libraries may crash in a forked child, Windows has none),
    and not inside a daemonic process (a ``multiprocessing.Pool`` worker), which may not have
    children."""
    if not sys.platform.startswith("linux"):
        return False
    mp = sys.modules.get("multiprocessing")  # not imported: this process is no Pool worker
    return mp is None or not mp.current_process().daemon


def _serve(conn: Any, parent_end: Any, fn: Callable[..., np.ndarray], out: np.ndarray) -> None:
    """The child's loop: call ``fn`` on each message's arguments (after the shared input array
    where the call has one: ``inputs`` of :class:`ForkedCall`), write the result into ``out`` and
    answer None (or the error's text), until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the fork copied the parent's end too: closed here, or the parent closing its own would
    # not end this loop (the pipe stays open while any copy of an end is)
    parent_end.close()
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            out[...] = fn(*args)
            conn.send(None)
        except Exception as exc:  # the parent raises it: the child keeps serving
            conn.send(f"{type(exc).__name__}: {exc}")


class ForkedCall:
    """``fn(*args)`` (an array of ``shape``) computed in a forked child: :meth:`submit` sends the
    arguments and returns at once, :meth:`result` waits for the array. The child lives until
    :meth:`close` or until this object is collected; ``alive`` turns False once it failed."""

    def __init__(self, fn: Callable[..., np.ndarray], shape: tuple[int, ...], name: str = "ocp-resnet-worker",
                 inputs: int = 0) -> None:
        if not can_fork():
            raise RuntimeError("no fork start method on this platform")
        import multiprocessing  # here: most solves never start a worker (~10 ms of start-up)

        ctx = multiprocessing.get_context("fork")
        size = math.prod(shape)
        # anonymous, shared with the child across fork: the result, then ``inputs`` floats the parent
        # writes before each call (a call's arrays cost no pickling then) and ``fn`` gets first
        self._map = mmap.mmap(-1, max(8, 8 * (size + inputs)))
        self.out = np.frombuffer(self._map, dtype=float, count=size).reshape(shape)
        #: the shared input array (None without ``inputs``): written by the parent, read by ``fn``
        self.inputs = np.frombuffer(self._map, dtype=float, count=inputs, offset=8 * size) if inputs else None
        if self.inputs is not None:
            fn = functools.partial(fn, self.inputs)
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self._conn, fn, self.out), name=name, daemon=True)
        with warnings.catch_warnings():
            # Python ≥ 3.12 warns about fork in a process with threads; the child only computes
            # on its own copies and takes no lock another thread might hold
            warnings.simplefilter("ignore", DeprecationWarning)
            self._proc.start()
        child.close()
        self.alive = True
        self._finalizer = weakref.finalize(self, ForkedCall._stop, self._conn, self._proc)

    @staticmethod
    def _stop(conn: Any, proc: Any) -> None:
        conn.close()  # the child's recv ends: it returns
        proc.join(timeout=1.0)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=1.0)

    def submit(self, *args: Any) -> None:
        """Start ``fn(*args)`` in the child."""
        try:
            self._conn.send(args)
        except (OSError, ValueError) as exc:
            self.alive = False
            raise RuntimeError(f"the worker process is gone: {exc}") from exc

    def result(self) -> np.ndarray:
        """The result of the last :meth:`submit` (a copy), or RuntimeError when the child failed."""
        try:
            msg = self._conn.recv()
        except (EOFError, OSError) as exc:
            self.alive = False
            raise RuntimeError("the worker process ended unexpectedly") from exc
        if msg is not None:
            raise RuntimeError(f"the worker process failed: {msg}")
        return self.out.copy()

    def close(self) -> None:
        """End the child (also done when this object is collected)."""
        self.alive = False
        self._finalizer()
