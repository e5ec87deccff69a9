"""A function evaluated in a forked child process, its array result handed back through shared memory.

The Newton path's derivative sweep is many small numpy operations and CasADi calls, so two
Python threads mostly wait for each other's interpreter lock; a second process does not. The
child is forked (it inherits the parent's built functions: nothing is pickled but the
arguments of each call), answers calls one at a time until its pipe closes, ignores Ctrl-C (the
parent decides when to stop) and writes each result into an anonymous shared mapping, so a p×p
result costs no copy through the pipe. Only where ``fork`` exists (Linux): :func:`can_fork`
says whether it does.

The child is a bare :func:`os.fork` with two pipes, not a :mod:`multiprocessing` process:
importing multiprocessing and starting its process took ~13 ms of the canonical problem's
~0.8 s (docs/performance.md), and the child needs none of what it adds (it never returns into
the parent's code: it leaves by :func:`os._exit`, so it flushes no copy of the parent's buffers).
"""
from __future__ import annotations

import functools
import math
import mmap
import os
import pickle
import signal
import struct
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

_HEADER = struct.Struct("<I")  # the length of each pickled message
#: the pipe ends of the live workers: a new child closes its copies of them, or a worker whose
#: parent closed its requests would not see the end while a sibling holds a copy open
_LIVE_FDS: set[int] = set()


def can_fork() -> bool:
    """Whether a :class:`ForkedCall` can be started here: Linux (macOS's system libraries may
    crash in a forked child, Windows has no fork), and not inside a daemonic
    ``multiprocessing`` worker (a ``Pool``'s: its cores are already shared out by the pool,
    and its children must not outlive a pool that terminates it)."""
    if not sys.platform.startswith("linux"):
        return False
    mp = sys.modules.get("multiprocessing")  # not imported: this process is no Pool worker
    return mp is None or not mp.current_process().daemon


def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = _HEADER.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read(fd: int, size: int) -> bytes:
    """Exactly ``size`` bytes from ``fd``; EOFError when the other end closed first."""
    parts = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            raise EOFError
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _receive(fd: int) -> Any:
    (size,) = _HEADER.unpack(_read(fd, _HEADER.size))
    return pickle.loads(_read(fd, size))


def _serve(requests: int, answers: int, fn: Callable[..., np.ndarray], out: np.ndarray) -> None:
    """The child's loop: call ``fn`` on each message's arguments, write the result into ``out``
    and answer None (or the error's text), until the parent closes its end of the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            args = _receive(requests)
        except (EOFError, OSError):
            return
        try:
            out[...] = fn(*args)
            answer = None
        except Exception as exc:  # the parent raises it: the child keeps serving
            answer = f"{type(exc).__name__}: {exc}"
        _send(answers, answer)


class ForkedCall:
    """``fn(*args)`` (an array of ``shape``) computed in a forked child: :meth:`submit` sends the
    arguments and returns at once, :meth:`result` waits for the array. The child lives until
    :meth:`close` or until this object is collected; ``alive`` turns False once it failed."""

    def __init__(self, fn: Callable[..., np.ndarray], shape: tuple[int, ...], name: str = "worker",
                 inputs: int = 0) -> None:
        if not can_fork():
            raise RuntimeError("no fork on this platform")
        self.name = name
        size = math.prod(shape)
        # anonymous, shared with the child across fork: the result, then ``inputs`` floats the parent
        # writes before each call (a call's arrays cost no pickling then) and ``fn`` gets first
        self._map = mmap.mmap(-1, max(8, 8 * (size + inputs)))
        self.out = np.frombuffer(self._map, dtype=float, count=size).reshape(shape)
        #: the shared input array (None without ``inputs``): written by the parent, read by ``fn``
        self.inputs = np.frombuffer(self._map, dtype=float, count=inputs, offset=8 * size) if inputs else None
        if self.inputs is not None:
            fn = functools.partial(fn, self.inputs)
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
        try:
            with warnings.catch_warnings():
                # Python ≥ 3.12 warns about fork in a process with threads; the child only computes
                # on its own copies and takes no lock another thread might hold
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            for fd in (req_r, req_w, ans_r, ans_w):
                os.close(fd)
            raise
        if pid == 0:  # the child: serve, then leave without running anything of the parent's
            code = 0
            try:
                for fd in {req_w, ans_r, *_LIVE_FDS} - {req_r, ans_w}:
                    try:
                        os.close(fd)
                    except OSError:  # (closed by hand already)
                        pass
                _serve(req_r, ans_w, fn, self.out)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(ans_w)
        #: the child's process id
        self.pid = pid
        self._requests, self._answers = req_w, ans_r
        self._pending = False  # a submit whose answer was not read yet
        _LIVE_FDS.update((req_w, ans_r))
        self.alive = True
        self._finalizer = weakref.finalize(self, ForkedCall._stop, req_w, ans_r, pid)

    @staticmethod
    def _stop(requests: int, answers: int, pid: int) -> None:
        _LIVE_FDS.difference_update((requests, answers))
        os.close(requests)  # the child's read ends: it leaves
        os.close(answers)
        end = time.monotonic() + 1.0
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already reaped
                return
            if done:
                return
            if time.monotonic() > end:  # inside a long call: it would finish it first
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.001)

    def submit(self, *args: Any) -> None:
        """Start ``fn(*args)`` in the child (after the answer of an earlier call not yet read)."""
        if not self.alive:  # (after close its pipe's numbers may name other files by now)
            raise RuntimeError(f"the {self.name} process is gone")
        self.wait()
        try:
            _send(self._requests, args)
        except (OSError, ValueError) as exc:
            self.alive = False
            raise RuntimeError(f"the {self.name} process is gone: {exc}") from exc
        self._pending = True

    def wait(self) -> None:
        """Wait for the answer of a submitted call whose result is not wanted (its shared output is
        then the child's to write no more); a failure is raised as by :meth:`result`."""
        if self._pending:
            self._answer()

    def _answer(self) -> None:
        if not self.alive:
            raise RuntimeError(f"the {self.name} process is gone")
        if not self._pending:
            raise RuntimeError(f"no call of the {self.name} process to wait for: submit one first")
        self._pending = False
        try:
            msg = _receive(self._answers)
        except (EOFError, OSError) as exc:
            self.alive = False
            raise RuntimeError(f"the {self.name} process ended unexpectedly") from exc
        if msg is not None:
            raise RuntimeError(f"the {self.name} process failed: {msg}")

    def result(self) -> np.ndarray:
        """The result of the last :meth:`submit` (a copy), or RuntimeError when the child failed."""
        self._answer()
        return self.out.copy()

    def close(self) -> None:
        """End the child (also done when this object is collected)."""
        self.alive = False
        self._finalizer()
