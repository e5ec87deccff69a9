"""A function evaluated in a forked worker process (ocp_resnet.solvers.forked)."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from ocp_resnet.solvers import forked
from ocp_resnet.solvers.forked import ForkedCall, can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="needs the fork start method (Linux)")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _outer(a: np.ndarray, scale: float) -> np.ndarray:
    if scale < 0:
        raise ValueError("negative scale")
    return scale * np.outer(a, a)


def test_results_come_back_and_an_error_does_not_end_the_worker():
    call = ForkedCall(_outer, (3, 3))
    try:
        a = np.array([1.0, 2.0, 3.0])
        call.submit(a, 2.0)
        got = call.result()
        np.testing.assert_array_equal(got, 2.0 * np.outer(a, a))
        call.submit(a, -1.0)
        with pytest.raises(RuntimeError, match="negative scale"):
            call.result()
        call.submit(a, 0.5)  # still serving
        np.testing.assert_array_equal(call.result(), 0.5 * np.outer(a, a))
        assert got[0, 0] == 2.0  # a result is a copy, not the shared buffer
    finally:
        call.close()
    assert not call.alive and not _running(call.pid)
    with pytest.raises(RuntimeError, match="is gone"):  # its pipes are closed: nothing is written
        call.submit(a, 1.0)


def test_shared_inputs_written_by_the_parent_reach_the_worker_each_call():
    """With ``inputs``, the function gets the shared input array first; what the parent writes
    there before a call is what that call sees (no pickling of those arrays)."""
    call = ForkedCall(_outer, (3, 3), inputs=3)
    try:
        assert call.inputs is not None and call.inputs.shape == (3,)
        for a in (np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 4.0])):
            call.inputs[...] = a
            call.submit(2.0)
            np.testing.assert_array_equal(call.result(), 2.0 * np.outer(a, a))
    finally:
        call.close()


def test_a_killed_worker_is_reported_not_waited_for():
    call = ForkedCall(_outer, (2, 2))
    os.kill(call.pid, signal.SIGKILL)
    os.waitpid(call.pid, 0)
    with pytest.raises(RuntimeError, match="worker process"):
        call.submit(np.ones(2), 1.0)
        call.result()
    assert not call.alive
    call.close()


def test_the_worker_ignores_ctrl_c():
    """Ctrl-C reaches the whole process group; the parent decides, the worker carries on."""
    call = ForkedCall(_outer, (2, 2))
    try:
        call.submit(np.ones(2), 1.0)
        call.result()  # the child is in its loop, SIGINT ignored
        os.kill(call.pid, signal.SIGINT)
        call.submit(np.ones(2), 3.0)
        np.testing.assert_array_equal(call.result(), np.full((2, 2), 3.0))
    finally:
        call.close()


def _in_a_pool_worker(_: int) -> bool:
    return can_fork()


def test_no_worker_inside_a_daemonic_pool_worker():
    """A multiprocessing.Pool worker is daemonic and may not have children: no fork there."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.map(_in_a_pool_worker, [0]) == [False]


def test_a_result_not_wanted_is_waited_for_before_the_next_call():
    """``wait`` (or the next ``submit``) reads the answer of a call whose result is dropped, so the
    next result is the next call's; ``result`` without a call is an error, not a hang."""
    call = ForkedCall(_outer, (2, 2))
    try:
        with pytest.raises(RuntimeError, match="submit one first"):
            call.result()
        call.submit(np.ones(2), 1.0)
        call.submit(np.ones(2), 5.0)  # the first call's answer is read first
        np.testing.assert_array_equal(call.result(), np.full((2, 2), 5.0))
        call.submit(np.ones(2), 2.0)
        call.wait()
        call.wait()  # nothing pending: returns
        np.testing.assert_array_equal(call.out, np.full((2, 2), 2.0))
    finally:
        call.close()


def test_two_workers_end_independently():
    """A worker started second holds no copy of the first one's pipe: when the parent closes the
    first one's requests, that child leaves by itself (exit status 0), while the second serves on."""
    import time

    first = ForkedCall(_outer, (2, 2))
    second = ForkedCall(_outer, (2, 2))
    try:
        requests, answers, pid = first._finalizer.detach()[2]  # ended by hand here
        forked._LIVE_FDS.difference_update((requests, answers))
        os.close(requests)
        end = time.monotonic() + 10.0
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < end:
            time.sleep(0.01)
            done, status = os.waitpid(pid, os.WNOHANG)
        os.close(answers)
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        second.submit(np.ones(2), 1.0)
        np.testing.assert_array_equal(second.result(), np.ones((2, 2)))
    finally:
        second.close()
