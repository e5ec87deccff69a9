"""Smoke runs of the worked examples (each must finish and write its figures)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import ROOT

CASES = [
    pytest.param("01_high_accuracy_solve.py", [], ["turnpike.png"], id="01"),
    pytest.param("02_which_blocks_vanish.py", ["--seeds", "0"], [], id="02", marks=pytest.mark.slow),
    pytest.param("03_solver_vs_sgd.py", ["--epochs", "40"], ["objective_gap.png", "profiles.png", "compare.csv"],
                 id="03"),
    pytest.param("04_gamma_path.py", [], ["path.png", "path.csv"], id="04"),
    pytest.param("05_costates.py", [], ["costates.png", "costates.npz", "costates.json"], id="05"),
]


@pytest.mark.parametrize("script, extra, files", CASES)
def test_example_runs(script, extra, files, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for f in files:
        assert (out / f).stat().st_size > 0
    if not files:  # example 02 names its figures itself
        assert any(out.glob("*.png"))
