"""Determinism: two runs with the same seed on the CPU write identical numbers.

metrics.json is compared exactly (``==`` on the parsed JSON, so floats bit for bit) with its
wall-clock fields removed: every key ending in ``_s`` is a timing and the only thing allowed
to differ (:func:`ocp_resnet.solvers.solution.without_timings`). solution.npz must be identical too.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ocp_resnet.cli import main
from ocp_resnet.solvers.solution import without_timings


def _numbers(run: Path) -> tuple[dict, dict]:
    metrics = without_timings(json.loads((run / "metrics.json").read_text()))
    with np.load(run / "solution.npz") as z:
        weights = {k: z[k].copy() for k in z.files}
    return metrics, weights


def _assert_same(a: Path, b: Path) -> None:
    ma, wa = _numbers(a)
    mb, wb = _numbers(b)
    assert ma == mb
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


@pytest.mark.parametrize("method", ["multiple-shooting", "single-shooting"])
def test_solve_twice_same_numbers(tmp_path, capsys, method):
    args = ["solve", "--quiet", "--dataset", "moons", "--n-samples", "30", "--blocks", "3", "--loss", "sce",
            "--gamma", "0.5", "--method", method, "--seed", "4", "--max-iter", "300"]
    assert main([*args, "--out", str(tmp_path / "a")]) in (0, 1)
    assert main([*args, "--out", str(tmp_path / "b")]) in (0, 1)
    _assert_same(tmp_path / "a", tmp_path / "b")
    # and the seed matters: another seed gives other numbers
    assert main([*args[:-4], "--seed", "5", "--max-iter", "300", "--out", str(tmp_path / "c")]) in (0, 1)
    assert _numbers(tmp_path / "a")[0] != _numbers(tmp_path / "c")[0]


def test_interrupted_solve_is_deterministic_too(tmp_path):
    """The same stop point (a callback at iteration 3) gives the same iterate."""
    from ocp_resnet.data.datasets import load_dataset
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers import IpoptOptions, solve

    problem = Problem.build(load_dataset("xor", n_samples=24, noise=0.1, seed=2), blocks=3, loss="bce", gamma=0.2)
    sols = [solve(problem, options=IpoptOptions(max_iter=100), seed=7, callback=lambda i: i.iteration >= 3)
            for _ in range(2)]
    assert sols[0].status.value == "interrupted"
    assert without_timings(sols[0].metrics()) == without_timings(sols[1].metrics())
    assert np.array_equal(sols[0].w, sols[1].w)


def test_train_twice_same_numbers(tmp_path, capsys):
    pytest.importorskip("torch")
    from ocp_resnet.cli import COMMANDS

    if "train" not in COMMANDS:
        pytest.skip("no train command")
    args = ["train", "--quiet", "--n-samples", "40", "--blocks", "3", "--epochs", "15", "--batch-size", "8",
            "--device", "cpu", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) in (0, 1)
    assert main([*args, "--out", str(tmp_path / "b")]) in (0, 1)
    _assert_same(tmp_path / "a", tmp_path / "b")
