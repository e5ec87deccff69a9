"""Fixtures shared by the test modules (helpers to import live in tests/helpers.py)."""
import pytest

from .helpers import torch_threads


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module's tests, the old count restored after."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def restore_torch_threads():
    """The module's commands may change the torch thread count; restore it after the module."""
    with torch_threads():
        yield
