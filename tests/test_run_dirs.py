"""Run directories: atomic writes, never silently overwritten, failed solves keep their iterate."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ocp_resnet.errors import ValidationError
from ocp_resnet.runs import RUN_FILES, Run, write_run

from .helpers import run_cli

SMALL = ["solve", "--quiet", "--n-samples", "20", "--blocks", "2", "--max-iter", "200"]


def snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``d``: its SHA-256 and its modification time (ns)."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = (hashlib.sha256(p.read_bytes()).digest(), p.stat().st_mtime_ns)
    return out


def test_second_run_into_same_out_is_refused_and_first_is_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, _ = run_cli([*SMALL, "--out", str(out)], capsys)
    assert rc == 0
    before = snapshot(out)
    assert set(RUN_FILES) <= set(before)
    listing = sorted(os.listdir(tmp_path))

    rc, stdout, err = run_cli([*SMALL, "--seed", "1", "--out", str(out)], capsys)
    assert rc == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "already exists" in err and "--overwrite" in err
    assert stdout == ""
    assert snapshot(out) == before  # byte for byte, not even touched
    assert sorted(os.listdir(tmp_path)) == listing  # no temporary leftovers


def test_overwrite_replaces_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli([*SMALL, "--out", str(out)], capsys)[0] == 0
    (out / "stale.txt").write_text("from an older run")
    assert run_cli([*SMALL, "--seed", "1", "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "config.json").read_text())["data"]["seed"] == 1
    assert sorted(os.listdir(tmp_path)) == ["run"]


def _write(out, **kw):
    from ocp_resnet.data.datasets import load_dataset
    from ocp_resnet.model.problem import Problem

    ds = load_dataset("spirals", n_samples=10)
    prob = Problem.build(ds, blocks=1, width=2)
    config = {"command": "test", "architecture": prob.spec.to_dict(), "objective": prob.objective.to_dict(),
              "solver": {}}
    return write_run(out, config=config, weights={"a": np.ones(2)}, metrics={"objective": 1.0}, data=ds, **kw)


def test_failed_write_leaves_nothing_and_keeps_the_old_run(tmp_path):
    out = tmp_path / "run"
    _write(out)
    before = snapshot(out)

    def boom(path):
        raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError):
        _write(out, overwrite=True, extra_files={"figure.png": boom})
    assert snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["run"]
    with pytest.raises(RuntimeError):
        _write(tmp_path / "new", extra_files={"figure.png": boom})
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_write_run_refuses_existing_dir_without_overwrite(tmp_path):
    out = tmp_path / "run"
    _write(out)
    before = snapshot(out)
    with pytest.raises(ValidationError, match="already exists"):
        _write(out)
    assert snapshot(out) == before


def test_max_iter_keeps_a_complete_run_with_the_last_iterate(tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, err = run_cli(["solve", "--quiet", "--n-samples", "20", "--blocks", "2", "--max-iter", "3",
                               "--out", str(out)], capsys)
    assert rc == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ocp-resnet solve: max_iter:") and "raise --max-iter" in last and str(out) in last
    assert set(RUN_FILES) <= set(os.listdir(out))
    run = Run(out)
    assert run.metrics["status"] == "max_iter" and run.metrics["success"] is False
    assert run.metrics["iterations"] == 3
    # the last iterate, not the start point: the weights moved away from the seeded initial ones
    problem = run.problem()
    from ocp_resnet.solvers import initial_weights

    w = run.flat_weights(problem)
    assert np.all(np.isfinite(w))
    assert not np.allclose(w, initial_weights(problem, "random", 0))
    assert run.metrics["objective"] == pytest.approx(problem.evaluate(w).objective, rel=1e-12)


def test_nan_in_evaluation_keeps_the_run_and_says_why(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # finite but absurdly large features: the squared loss overflows at the start point
    X = np.full((6, 2), 1e300) * np.array([1.0, -1.0])
    np.savez("huge.npz", X=X, y=np.array([0, 1, 0, 1, 0, 1]))
    rc, _, err = run_cli(["solve", "--quiet", "--dataset", "huge.npz", "--blocks", "2", "--loss", "mse",
                          "--out", "run"], capsys)
    assert rc == 1
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ocp-resnet solve: nan:") and "standardise the data" in last
    run = Run("run")
    assert run.metrics["status"] == "nan"
    assert set(RUN_FILES) <= set(os.listdir("run"))


def test_solution_status_has_a_message_for_every_ipopt_outcome():
    from ocp_resnet.status import Status

    for s in Status:
        assert s.message and s.value
    assert Status.from_ipopt("User_Requested_Stop") is Status.INTERRUPTED
    assert Status.from_ipopt("Restoration_Failed") is Status.RESTORATION_FAILED
    assert Status.from_ipopt("Maximum_Iterations_Exceeded") is Status.MAX_ITER
    assert Status.from_ipopt("Invalid_Number_Detected") is Status.NAN
    assert Status.from_ipopt("Something_New") is Status.ERROR


def test_run_record_round_trip_and_kind(tmp_path):
    """config.json is written and read through RunRecord: unknown keys survive, versions are added,
    the kind is decided in one place, and a config without an architecture is refused on write."""
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.runs import Run, RunRecord

    rd = _write(tmp_path / "r")
    run = Run(rd)
    assert run.kind == "mlp" and run.record.command == "test" and "ocp_resnet" in run.record.versions
    assert RunRecord.from_dict(run.config).to_dict() == run.config
    conv = RunRecord.from_dict({**run.config, "architecture": {**run.config["architecture"], "kind": "conv"}})
    assert conv.kind == "conv" and RunRecord.from_dict({**run.config, "arch": "conv"}).kind == "conv"
    with pytest.raises(ValidationError, match="no 'architecture' section"):
        write_run(tmp_path / "bad", config={"command": "x"}, weights={}, metrics={}, data=None)
