"""`ocp-resnet solve` and `evaluate` end to end (in-process)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocp_resnet.cli import main

SMALL = ["--n-samples", "30", "--blocks", "3", "--width", "2", "--quiet"]

METRIC_KEYS = {
    "objective", "final_loss", "stage_losses", "stage_accuracy", "block_norms", "residual_norms", "status",
    "success", "iterations", "build_time_s", "solve_time_s", "n_variables", "n_constraints",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main(["solve", *SMALL, "--out", str(out)]) == 0
    return out


def test_solve_writes_a_complete_run_directory(run_dir):
    for f in ("config.json", "solution.npz", "stats.json", "metrics.json", "data.npz"):
        assert (run_dir / f).is_file()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= set(m)
    assert m["success"] and m["status"] == "success"
    assert len(m["stage_losses"]) == 4 and len(m["block_norms"]) == 3
    cfg = json.loads((run_dir / "config.json").read_text())
    assert {"casadi", "ipopt", "numpy", "python", "ocp_resnet"} <= set(cfg["versions"])
    assert cfg["solver"]["tol"] == 1e-8 and cfg["architecture"]["stem_width"] == 2
    assert set(np.load(run_dir / "solution.npz").files) == {"block0.W", "block0.b", "block1.W", "block1.b",
                                                           "block2.W", "block2.b", "head.W", "head.b"}


def test_evaluate_reproduces_the_metrics(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    ev = json.loads(capsys.readouterr().out)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert ev["objective"] == pytest.approx(m["objective"], rel=1e-12)
    assert ev["stage_losses"] == pytest.approx(m["stage_losses"], rel=1e-12)
    assert ev["grad_norm"] < 1e-6


def test_warm_start_from_a_run_directory(run_dir, tmp_path, capsys):
    out = tmp_path / "warm"
    assert main(["solve", *SMALL, "--init", str(run_dir), "--out", str(out)]) == 0
    m0 = json.loads((run_dir / "metrics.json").read_text())
    m1 = json.loads((out / "metrics.json").read_text())
    assert m1["iterations"] <= 3
    assert m1["objective"] == pytest.approx(m0["objective"], abs=1e-9)


def test_solve_prints_problem_size_and_table(tmp_path, capsys):
    assert main(["solve", "--n-samples", "20", "--blocks", "2", "--print-level", "0", "--method", "multiple-shooting",
                 "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "variables" in out and "constraints" in out and "non-zeros" in out
    assert "stage loss" in out and "(final)" in out and "status: success" in out


def test_existing_out_is_refused(run_dir, capsys):
    before = (run_dir / "metrics.json").read_bytes()
    assert main(["solve", *SMALL, "--out", str(run_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run_dir / "metrics.json").read_bytes() == before


def test_failed_solve_exits_1_and_keeps_the_run(tmp_path):
    out = tmp_path / "f"
    assert main(["solve", *SMALL, "--max-iter", "1", "--out", str(out)]) == 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "max_iter" and not m["success"]


@pytest.mark.parametrize(
    "argv, fix",
    [
        (["solve", "--loss", "hinge"], "ce, bce, mse, sce"),
        (["solve", "--method", "collocation"], "multiple-shooting"),
        (["solve", "--gamma", "-1"], "gamma"),
        (["solve", "--width", "1"], "--width >= 2"),
        (["solve", "--activation", "relu"], "tanh"),
        (["solve", "--dataset", "nosuch"], "spirals"),
        (["solve", "--blocks", "3", "--gamma", "0.1,0.2"], "one value per block"),
        (["evaluate", "/nonexistent/run"], "run directory"),
    ],
)
def test_bad_input_exits_2_with_a_fix(argv, fix, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "x")] if argv[0] == "solve" else argv) == 2
    err = capsys.readouterr().err
    assert fix in err and "Traceback" not in err


# --------------------------------------------------------------------------- shared helpers
def test_one_list_parser_for_every_comma_flag():
    from ocp_resnet.cli._common import parse_list
    from ocp_resnet.errors import ValidationError

    assert parse_list("--gamma", "0.5", float, scalar=True) == 0.5
    assert parse_list("--gamma", "0.1, 0.2,", float, scalar=True) == [0.1, 0.2]
    assert parse_list("--blocks", "4", int) == [4]
    assert parse_list("--optimizers", " adam ,lbfgs", str) == ["adam", "lbfgs"]
    with pytest.raises(ValidationError, match=r"--blocks must be a comma list of integers, e\.g\. 2,4,8; got '2,x'"):
        parse_list("--blocks", "2,x", int)
    with pytest.raises(ValidationError, match="--gamma is empty: give a number or a comma list"):
        parse_list("--gamma", ",", float, scalar=True)


def test_one_exit_code_per_status():
    from ocp_resnet.cli import exit_code
    from ocp_resnet.status import Status

    assert [exit_code(s) for s in (Status.SUCCESS, Status.ACCEPTABLE, Status.MAX_ITER, Status.NAN,
                                   Status.INTERRUPTED)] == [0, 0, 1, 1, 130]
    # a torch training's epochs are its budget: running them all is done, diverging is not
    assert [exit_code(s, training=True) for s in ("max_iter", "nan", "interrupted")] == [0, 1, 130]
