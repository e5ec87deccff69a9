"""Vanishing-block metrics on known constructions, the analyze command and the plots."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocp_resnet.analysis.blocks import analyze, recommended_depth, tail_to_head_ratio, vanished_blocks
from ocp_resnet.data.datasets import load_dataset
from ocp_resnet.errors import ValidationError
from ocp_resnet.model.problem import Problem
from ocp_resnet.runs import write_run


def _scaled(prob: Problem, norms: list[float], seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights whose block k branch weights have Frobenius norm exactly norms[k]."""
    p = prob.spec.init_params("random", seed, scale=1.0)
    rng = np.random.default_rng(seed)
    for k, target in enumerate(norms):
        names = prob.spec.branch_names(k)
        for n in names:
            p[n] = rng.standard_normal(p[n].shape)
        tot = np.sqrt(sum(np.sum(p[n] ** 2) for n in names))
        for n in names:
            p[n] *= target / tot
    return p


def test_known_construction() -> None:
    ds = load_dataset("spirals", n_samples=40, seed=0)
    prob = Problem.build(ds, blocks=4, width=2, loss="mse", gamma=1.0, weight_decay=1e-3)
    w = _scaled(prob, [2.0, 1.0, 1e-4, 0.0])
    an = analyze(prob, w, tol=1e-3)
    np.testing.assert_allclose(an.block_norms, [2.0, 1.0, 1e-4, 0.0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(an.rel_block_norms, [1.0, 0.5, 5e-5, 0.0], rtol=1e-12, atol=1e-15)
    assert an.vanished == [2, 3] and an.n_active == 2
    assert an.tail_to_head == 0.0  # last quarter (block 3) is exactly zero
    assert an.residual_norms[3] == 0.0
    assert an.stage_losses[3] == an.stage_losses[4]  # a zero block leaves the stage output unchanged
    assert an.recommended_depth == 2  # block 2 is tiny: stage 2 loss is within 1% of the final loss
    assert an.rel_residual_norms[0] == 1.0 or an.rel_residual_norms[1] == 1.0
    # a tighter tolerance keeps block 2
    an2 = analyze(prob, w, tol=1e-5)
    assert an2.vanished == [3] and an2.recommended_depth == 3
    assert "vanished blocks" in an.format() and json.dumps(an.to_dict())


def test_tail_to_head_ratio() -> None:
    # 8 blocks: mean of the last 2 / mean of the first 4
    assert tail_to_head_ratio([2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1e-3, 3e-3]) == pytest.approx(1e-3)
    assert tail_to_head_ratio([2.0]) == 1.0
    assert tail_to_head_ratio([0.0, 0.0]) == 0.0
    assert np.isnan(tail_to_head_ratio([]))


def test_recommended_depth_rules() -> None:
    # blocks 3,4 vanished but stage 3 loss is far from final -> depth 4
    assert recommended_depth([5, 4, 3, 2.0, 1.0, 1.0], [3, 4]) == 4
    # nothing vanished -> N
    assert recommended_depth([3, 2, 1.0], []) == 2
    # a non-vanished block stops the search even if earlier losses match
    assert recommended_depth([1.0, 1.0, 1.0], [0]) == 2


def test_softplus_single_zero_weights_do_not_vanish() -> None:
    """softplus(0) = log 2: a zero single block still shifts the state, so it must not count as vanished."""
    ds = load_dataset("spirals", n_samples=30, seed=0)
    prob = Problem.build(ds, blocks=3, width=2, loss="mse", gamma=1.0, activation="softplus")
    w = _scaled(prob, [1.0, 1.0, 0.0])
    an = analyze(prob, w)
    assert an.residual_norms[2] > 0.1 and 2 not in an.vanished
    assert vanished_blocks(prob.spec, [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]) == [2]


def test_bad_tol() -> None:
    ds = load_dataset("spirals", n_samples=20, seed=0)
    prob = Problem.build(ds, blocks=2, width=2)
    with pytest.raises(ValidationError, match="tol"):
        analyze(prob, prob.spec.init_params(), tol=-1.0)


def test_analyze_cli_and_plots(tmp_path, capsys) -> None:
    from ocp_resnet.cli import main

    ds = load_dataset("spirals", n_samples=40, seed=0)
    prob = Problem.build(ds, blocks=4, width=2, loss="mse", gamma=1.0, weight_decay=1e-3)
    w = _scaled(prob, [2.0, 1.0, 1e-4, 0.0])
    cfg = {"architecture": prob.spec.to_dict(), "objective": prob.objective.to_dict(), "solver": {"backend": "casadi"}}
    rd = write_run(tmp_path / "r", config=cfg, weights=w, metrics={"status": "success"}, data=prob.data)
    assert main(["analyze", str(rd), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["vanished"] == [2, 3] and d["recommended_depth"] == 2
    assert main(["analyze", str(rd), "--plots"]) == 0
    for f in ("turnpike.png", "stages.png", "trajectories.png", "decision_regions.png"):
        assert (rd / f).stat().st_size > 1000
    assert main(["analyze", str(tmp_path / "missing")]) == 2


def test_trajectory_plot_wide_states(tmp_path) -> None:
    from ocp_resnet.plotting import plot_trajectories

    ds = load_dataset("spirals", n_samples=30, seed=0)
    prob = Problem.build(ds, blocks=2, width=[2, 3, 4], loss="mse")
    assert plot_trajectories(prob, prob.spec.init_params(), tmp_path / "t.png").stat().st_size > 1000


def test_conv_runs_are_refused(tmp_path, capsys) -> None:
    from ocp_resnet.cli import main

    ds = load_dataset("spirals", n_samples=20, seed=0)
    prob = Problem.build(ds, blocks=2, width=2)
    cfg = {"arch": "conv", "architecture": prob.spec.to_dict(), "objective": prob.objective.to_dict(),
           "solver": {"backend": "torch", "arch": "conv"}}
    rd = write_run(tmp_path / "c", config=cfg, weights=prob.spec.init_params(), metrics={}, data=prob.data)
    # the run says conv (RunRecord.kind) but holds no conv spec: refused, naming the conv architecture
    assert main(["analyze", str(rd)]) == 2
    assert "conv" in capsys.readouterr().err
    assert main(["prune", str(rd)]) == 2
    from ocp_resnet.analysis.blocks import run_problem

    with pytest.raises(ValidationError, match="conv ResNet-v2 run"):
        run_problem(rd)
