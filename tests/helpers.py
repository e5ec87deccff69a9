"""Helpers shared by the test modules: the repository root, in-process CLI runs, torch threads."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv: Iterable, capsys) -> tuple[int, str, str]:
    """Run ``ocp-resnet ARGV`` in-process; returns (exit code, stdout, stderr)."""
    from ocp_resnet.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


@contextlib.contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (None: as many as now), restoring the count after:
    the commands set it from ``--threads`` and must not leak it into later tests."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)  # tiny matrices: threads only add contention on a shared CI box
    try:
        yield
    finally:
        torch.set_num_threads(old)
