"""Independent solves in parallel: local processes or a Dask cluster, one code path.

Everything that solves many independent problems (``sweep``, ``compare``) hands its tasks to
a :class:`concurrent.futures.Executor` from :func:`executor`:

* ``jobs=1``: :class:`SerialExecutor`, the task runs in this process when submitted (what the
  commands did before; Ctrl-C reaches the solve directly);
* ``jobs=N`` (``-1`` = all cores): a :class:`~concurrent.futures.ProcessPoolExecutor` of N
  spawned worker processes, each with one OpenMP/torch thread (IPOPT/MUMPS and the small
  torch nets gain nothing from threads, and N workers × threads would oversubscribe the cores);
* ``scheduler="tcp://host:8786"``: the same tasks on a Dask distributed cluster
  (``dask.distributed.Client(...).get_executor()``; the optional extra ``[distributed]``).

:func:`imap` submits lazily (as many tasks in flight as there are workers) and yields the
results in task order, so callers write their outputs in the same order as ``jobs=1`` and a
task gives the same numbers wherever it runs (same inputs, one thread).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from ocp_resnet.errors import ValidationError

#: How often the parent checks for Ctrl-C while it waits for workers.
POLL_S = 0.2


class SerialExecutor(Executor):
    """Runs each task at ``submit`` in this process (``--jobs 1``)."""

    _max_workers = 1

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` now; its result or exception in a finished Future."""
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:  # KeyboardInterrupt and friends propagate at once
            fut.set_exception(exc)
        return fut


def n_jobs(jobs: int) -> int:
    """``jobs`` as a worker count: -1 = all cores; otherwise at least 1."""
    try:
        jobs = int(jobs)
    except (TypeError, ValueError):
        raise ValidationError(f"jobs must be an integer (N >= 1, or -1 for all cores), got {jobs!r}") from None
    if jobs == -1:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if jobs < 1:
        raise ValidationError(f"jobs must be >= 1, or -1 for all cores, got {jobs}")
    return jobs


def worker_init() -> None:
    """Every worker process: one thread, and Ctrl-C ignored while idle.

    A solve in progress installs its own SIGINT handler (ocp_resnet.solvers.iteration.StopOnSigint)
    and so still stops cleanly with its last iterate; an idle worker must not die of it.
    """
    # numpy's OpenBLAS reads OMP_NUM_THREADS once, when it loads: load it first, as importing
    # ocp_resnet always did before this ran, so that its thread count stays the inherited one
    import numpy  # noqa: F401

    # before casadi/torch are imported in this fresh process: both take their thread counts from
    # here (importing torch just to set its threads would cost every worker seconds)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    os.environ["OCP_RESNET_THREADS"] = "1"  # the Newton path's derivative sweeps (solvers.newton.auto_threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dask_client(scheduler: Any) -> Any:
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValidationError(
            "scheduler needs Dask's distributed scheduler, which is not installed: "
            "pip install 'ocp_resnet[distributed]' (or pip install 'dask[distributed]')") from None
    if hasattr(scheduler, "get_executor"):  # already a Client
        return scheduler, False
    try:
        return Client(scheduler, timeout="20s"), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValidationError(f"cannot reach the Dask scheduler {scheduler!r} ({exc}): start one with "
                              "'dask scheduler' and 'dask worker ADDRESS', then pass its tcp://host:port") from None


@contextmanager
def executor(jobs: int = 1, scheduler: Any = None) -> Iterator[Executor]:
    """The executor for ``--jobs``/``--scheduler`` (closed on exit); see the module docstring."""
    if scheduler:
        client, own = _dask_client(scheduler)
        ex = client.get_executor(pure=False)  # a task with the same inputs is run again, not cached
        ex._ocp_workers = max(1, sum(client.nthreads().values()))  # type: ignore[attr-defined]
        try:
            yield ex
        finally:
            if own:
                client.close()
        return
    n = n_jobs(jobs)
    if n == 1:
        yield SerialExecutor()
        return
    import multiprocessing

    # spawn: a fresh interpreter per worker (forking a parent that runs torch/OpenMP threads can hang)
    ex = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def workers(ex: Executor) -> int:
    """How many tasks ``ex`` runs at once."""
    return int(getattr(ex, "_ocp_workers", None) or getattr(ex, "_max_workers", 1) or 1)


def signal_workers(ex: Executor, sig: int = signal.SIGINT) -> None:
    """Send ``sig`` to the local worker processes of ``ex`` (Dask workers are not signalled)."""
    procs = getattr(ex, "_processes", None) or {}
    for p in list(procs.values()):
        try:
            os.kill(p.pid, sig)
        except (OSError, AttributeError):
            pass


def imap(ex: Executor, fn: Callable, tasks: Iterable[Sequence[Any]], stop: Any = None) -> Iterator[Any]:
    """``fn(*task)`` for every task, results in task order; at most :func:`workers` in flight.

    ``stop``: an object whose ``requested`` turns true on Ctrl-C
    (:class:`ocp_resnet.solvers.iteration.StopOnSigint`). Then no further task is submitted, local
    workers get SIGINT (a running solve stops with its last iterate and returns it), and the
    results of the tasks in flight are still yielded, in order. Leaving the generator early
    cancels what has not started.
    """
    it = iter(tasks)
    width = workers(ex)
    pending: dict[int, Future] = {}
    nxt, done_up_to, exhausted, signalled = 0, 0, False, False
    try:
        while True:
            stopping = stop is not None and stop.requested
            while not exhausted and not stopping and len(pending) < width:
                try:
                    task = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending[nxt] = ex.submit(fn, *task)
                nxt += 1
            if done_up_to not in pending:
                return
            fut = pending[done_up_to]
            if stopping and not signalled:
                signal_workers(ex)
                signalled = True
            if isinstance(ex, SerialExecutor) or threading.current_thread() is not threading.main_thread():
                wait([fut])
            else:
                wait([fut], timeout=POLL_S, return_when=FIRST_COMPLETED)
            if fut.done():
                del pending[done_up_to]
                done_up_to += 1
                yield fut.result()
    finally:
        for f in pending.values():
            f.cancel()


@contextmanager
def run_ordered(fn: Callable, tasks: Iterable[Sequence[Any]], jobs: int = 1,
                scheduler: Any = None) -> Iterator[Iterator[Any]]:
    """``fn(*task)`` for every task on the executor of ``jobs``/``scheduler``, results in task order.

    The executor starts on entering (a Dask scheduler that cannot be reached fails before the
    caller writes anything); nothing is submitted before the first result is asked for. Ctrl-C
    inside the block stops submitting and still yields what is in flight (:func:`imap`).
    """
    from ocp_resnet.solvers.iteration import StopOnSigint

    with executor(jobs, scheduler) as ex, StopOnSigint() as stop:
        yield imap(ex, fn, tasks, stop)
