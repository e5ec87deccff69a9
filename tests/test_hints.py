"""Hints chosen from the case: each is triggered here through the CLI, as a user meets it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocp_resnet import Status
from ocp_resnet.analysis.collapse import narrow_head
from ocp_resnet.cli import main
from ocp_resnet.cli._common import flags
from ocp_resnet.model.architecture import ArchSpec
from ocp_resnet.runs import Run

QUIET = ["--print-level", "0", "--collapse-retries", "0"]


def _solve(out, *args: str) -> int:
    return main(["solve", "--n-samples", "40", *QUIET, *args, "--out", str(out)])


# ------------------------------------------------------------------ 1. too few states for the classes
def test_narrow_head_only_when_the_head_has_less_rank_than_a_linear_classifier() -> None:
    # 2 states, 10 classes, 64 inputs (digits with a linear stem): rank 2 < 9
    msg = narrow_head(ArchSpec.uniform(64, 10, 2, 2, stem="linear"), 10)
    assert msg is not None and msg.startswith("2 states cannot separate 10 classes linearly") and "width >= 9" in msg
    assert narrow_head(ArchSpec.uniform(64, 10, 2, [64, 4, 64], stem="pad"), 10) is not None  # a narrow middle state
    assert narrow_head(ArchSpec.uniform(64, 10, 2, 9, stem="linear"), 10) is None  # rank 9 is what 10 classes need
    assert narrow_head(ArchSpec.uniform(2, 3, 2, 2), 3) is None  # 3 classes in 2 states: separable
    assert narrow_head(ArchSpec.uniform(2, 5, 2, 2), 5) is None  # no wider than the inputs a linear classifier sees
    assert narrow_head(ArchSpec.uniform(64, 1, 2, 1, stem="linear"), 2) is None  # bce: one output


def test_too_few_states_is_said_before_the_solve_and_named_as_the_collapse_cause(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    # collapse retries on (the default): they are skipped, the architecture is the cause
    rc = main(["solve", "--dataset", "digits", "--n-samples", "100", "--stem", "linear", "--blocks", "1",
               "--max-iter", "3", "--jit", "no", "--print-level", "0", "--out", str(out)])
    assert rc == 1  # max_iter
    cap = capsys.readouterr()
    warning = "warning: 2 states cannot separate 10 classes linearly at the head"
    assert cap.err.startswith(warning) and "use --width >= 9" in cap.err
    assert Run(out).metrics["collapsed"] is True
    assert "no retries: with --width < 9 for 10 classes" in cap.out and "trying again" not in cap.out
    collapse = next(line for line in cap.err.splitlines() if line.startswith("collapsed:"))
    assert "cause: 2 states cannot separate 10 classes" in collapse and "--restarts" not in collapse
    assert main(["analyze", str(out)]) == 0
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert verdict.startswith("collapsed:") and "cannot separate 10 classes" in verdict and "--restarts" not in verdict


def test_path_warns_of_too_few_states_too(tmp_path, capsys) -> None:
    assert main(["path", "--dataset", "digits", "--n-samples", "60", "--stem", "linear", "--blocks", "1",
                 "--gammas", "0", "--max-iter", "1", "--collapse-retries", "0", "--no-plot", "--quiet",
                 "--out", str(tmp_path / "p")]) == 1
    assert capsys.readouterr().err.startswith("warning: 2 states cannot separate 10 classes linearly at the head")


# ------------------------------------------------------------------ 2. a conv run given to --init
@pytest.mark.usefixtures("restore_torch_threads")
def test_conv_run_cannot_warm_start_the_mlp_solver(tmp_path, capsys) -> None:
    from ocp_resnet import Problem, load_dataset
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.solvers import initial_weights

    conv = tmp_path / "conv"
    assert main(["train", "--dataset", "digits", "--arch", "conv", "--n-samples", "60", "--epochs", "1",
                 "--channels", "4", "--stage-blocks", "1", "--threads", "1", "--device", "cpu", "--quiet",
                 "--out", str(conv)]) == 0
    assert Run(conv).kind == "conv"
    capsys.readouterr()
    assert main(["solve", "--dataset", "digits", "--n-samples", "60", "--width", "64", "--blocks", "1",
                 "--init", str(conv), *QUIET, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "is a conv ResNet-v2 run: its weights cannot warm-start the MLP solver" in err and "--init random" in err
    assert "check" not in err and not (tmp_path / "r").exists()
    problem = Problem.build(load_dataset("digits", n_samples=60), blocks=1, width=64)
    for init in (conv, conv / "solution.npz"):
        with pytest.raises(ValidationError, match="conv ResNet-v2 run.*init='random'"):
            initial_weights(problem, init)


# ------------------------------------------------------------------ 3. --blocks 0: a linear model
def test_zero_blocks_is_a_linear_model_without_ratio_or_collapse_hint(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert _solve(out, "--blocks", "0") == 0
    cap = capsys.readouterr()
    assert "a linear model (--blocks 0)" in cap.out
    assert "collapsed" not in cap.err and "--restarts" not in cap.err + cap.out
    assert main(["analyze", str(out)]) == 0
    text = capsys.readouterr().out
    assert "a linear model" in text and "tail-to-head" not in text and "nan" not in text
    assert "collapsed" not in text and "--restarts" not in text


# ------------------------------------------------------------------ 4. the time budget of a resumed solve
def test_warm_start_says_the_time_per_iteration_and_the_budget_before_solving(tmp_path, capsys) -> None:
    first = tmp_path / "first"
    ms = ("--method", "multiple-shooting")  # the sizing estimates are IPOPT's
    assert _solve(first, "--blocks", "3", "--max-iter", "2", *ms) == 1  # max_iter: a solve to resume
    capsys.readouterr()
    assert _solve(tmp_path / "again", "--blocks", "3", "--max-iter", "7", "--init", str(first), *ms) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("expected ~"))
    assert "/iteration (multiple-shooting + exact Hessian, the sizing estimate)" in line
    assert "the iteration limit --max-iter 7 may take ~" in line
    assert "bound the run with --max-iter or IPOPT's wall-clock limit --ipopt max_wall_time=SECONDS" in line
    assert out.index("expected ~") < out.index("NLP (")  # said before the solve starts
    # a small cold solve says nothing of the kind
    assert _solve(tmp_path / "cold", "--blocks", "3", "--max-iter", "7") == 1
    assert "expected ~" not in capsys.readouterr().out


def test_ipopt_wall_time_limit_ends_with_max_time_and_says_how_to_continue(tmp_path, capsys) -> None:
    out = tmp_path / "r"
    assert _solve(out, "--blocks", "3", "--ipopt", "max_wall_time=1e-6") == 1
    assert json.loads((out / "metrics.json").read_text())["status"] == Status.MAX_TIME.value
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("ocp-resnet solve: max_time:") and "--ipopt max_wall_time=SECONDS" in last
    assert "--init RUN_DIR" in last


def test_interrupted_hint_names_the_budget_flags() -> None:
    msg = Status.INTERRUPTED.message
    assert "init=RUN_DIR" in msg and "max_iter" in msg and "ipopt={'max_wall_time': SECONDS}" in msg
    assert flags(msg, "solve").endswith("continue with --init RUN_DIR, bounding the run by --max-iter or by IPOPT's "
                                        "wall-clock limit (--ipopt max_wall_time=SECONDS)")


# ------------------------------------------------------------------ 5. prune: "reduced to projection" only when so
def _zeroed(run_dir, blocks: list[int]) -> None:
    w = dict(Run(run_dir).weights)
    for k in blocks:
        w[f"block{k}.W"], w[f"block{k}.b"] = np.zeros_like(w[f"block{k}.W"]), np.zeros_like(w[f"block{k}.b"])
    np.savez(run_dir / "solution.npz", **w)


@pytest.mark.parametrize("zeroed, removed, projection", [([2], "[2]", None), ([0, 2], "[2]", "[0]")])
def test_prune_names_projections_only_when_a_block_became_one(tmp_path, capsys, zeroed, removed, projection) -> None:
    run = tmp_path / "r"
    assert _solve(run, "--blocks", "3", "--width", "2,3,3,3", "--max-iter", "5") == 1  # block 0 projects 2 -> 3
    _zeroed(run, zeroed)
    capsys.readouterr()
    assert main(["prune", str(run), "--out", str(tmp_path / "p")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"(removed {removed}" in first
    if projection is None:
        assert "projection" not in first
    else:
        assert f"reduced to projection {projection}" in first
