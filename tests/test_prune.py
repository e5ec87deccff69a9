"""Pruning: exactly-zero branches removed physically leave every output unchanged."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ocp_resnet.analysis.prune import prune_network, prune_problem, prune_run
from ocp_resnet.data.datasets import load_dataset
from ocp_resnet.errors import ValidationError
from ocp_resnet.model.architecture import ArchSpec, BlockSpec
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.model.problem import Problem
from ocp_resnet.runs import Run, write_run

HAS_TORCH_MLP = importlib.util.find_spec("ocp_resnet.torch") is not None and importlib.util.find_spec(
    "ocp_resnet.torch.mlp") is not None


def _mixed_problem(activation: str = "tanh", gamma: float | tuple = 0.5) -> Problem:
    """Blocks: 2→2 single, 2→3 single (projection), 3→3 single, 3→3 basic, 3→3 single."""
    ds = load_dataset("spirals", n_samples=30, seed=0)
    blocks = (BlockSpec(2), BlockSpec(3), BlockSpec(3), BlockSpec(3, "basic", 4), BlockSpec(3))
    spec = ArchSpec(2, 2, 2, blocks, activation=activation)
    return Problem(spec, ObjectiveSpec("mse", gamma, 1e-3), ds)


def _zeroed(problem: Problem, blocks: list[int], seed: int = 3) -> dict[str, np.ndarray]:
    p = problem.spec.init_params("random", seed, scale=0.7)
    for name in p:
        if name.endswith(".b") or name.endswith(".b1") or name.endswith(".b2"):
            p[name] = 0.3 * np.ones_like(p[name])
    for k in blocks:
        for name in problem.spec.branch_names(k):
            p[name] = np.zeros_like(p[name])
    return p


@pytest.mark.parametrize("activation", ["tanh", "smooth_relu"])
def test_pruning_zero_blocks_keeps_outputs_numpy(activation: str) -> None:
    prob = _mixed_problem(activation)
    cut = [1, 2, 3]  # projection block, identity next to it, basic block
    w = _zeroed(prob, cut)
    pruned, net = prune_problem(prob, w, cut)
    assert net.removed == [2, 3] and net.projection_only == [1]
    assert [b.branch for b in net.spec.blocks] == ["single", "none", "single"]
    assert net.origin == [0, 1, 4]
    assert "block1.S" in net.weights and "block1.W" not in net.weights
    before, after = prob.stage_outputs(w), pruned.stage_outputs(net.weights)
    np.testing.assert_array_equal(after[-1], before[-1])
    for j, k in enumerate(net.origin):  # stage j of the pruned net is stage origin[j] of the original
        np.testing.assert_allclose(after[j], before[k], rtol=0, atol=1e-15)
    ev0, ev1 = prob.evaluate(w), pruned.evaluate(net.weights)
    assert ev1.final_loss == ev0.final_loss
    assert ev1.stage_accuracy[-1] == ev0.stage_accuracy[-1]


def test_pruning_zero_blocks_keeps_objective_casadi() -> None:
    from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient

    prob = _mixed_problem(gamma=0.0)  # γ = 0: the objective is the final loss + λ‖w‖², both unchanged
    cut = [1, 2, 3]
    w = _zeroed(prob, cut)
    pruned, net = prune_problem(prob, w, cut)
    J0, _ = objective_and_gradient(prob, prob.spec.flatten(w))
    J1, _ = objective_and_gradient(pruned, pruned.spec.flatten(net.weights))
    assert J1 == pytest.approx(J0, rel=1e-14, abs=1e-15)
    assert J0 == pytest.approx(prob.objective_value(w), rel=1e-13)


def test_gamma_list_follows_the_blocks() -> None:
    prob = _mixed_problem(gamma=(0.1, 0.2, 0.3, 0.4, 0.5))
    w = _zeroed(prob, [2, 3])
    net = prune_network(prob.spec, prob.objective, w, [2, 3])
    assert net.objective.gamma == (0.1, 0.2, 0.5)


@pytest.mark.skipif(not HAS_TORCH_MLP, reason="the torch back-end (ocp_resnet.torch.mlp) is not installed")
def test_pruning_zero_blocks_keeps_outputs_torch() -> None:
    import torch

    from ocp_resnet.torch.mlp import ResNetMLP

    prob = _mixed_problem()
    cut = [1, 2, 3]
    w = _zeroed(prob, cut)
    pruned, net = prune_problem(prob, w, cut)
    x = torch.as_tensor(prob.data.X, dtype=torch.float64)
    with torch.no_grad():
        a = ResNetMLP(prob.spec, init=w).stage_outputs(x)
        b = ResNetMLP(net.spec, init=net.weights).stage_outputs(x)
    assert torch.equal(a[-1], b[-1])
    for j, k in enumerate(net.origin):
        assert torch.allclose(a[k], b[j], rtol=0, atol=1e-15)
    np.testing.assert_allclose(b[-1].numpy(), pruned.stage_outputs(net.weights)[-1], rtol=0, atol=1e-14)


def test_bad_block_index() -> None:
    prob = _mixed_problem()
    with pytest.raises(ValidationError, match="do not exist"):
        prune_network(prob.spec, prob.objective, _zeroed(prob, []), [7])


def _write(tmp_path, prob: Problem, w: dict, name: str = "run", backend: str = "casadi"):
    cfg = {"command": "test", "architecture": prob.spec.to_dict(), "objective": prob.objective.to_dict(),
           "solver": {"backend": backend, "method": "multiple-shooting", "tol": 1e-8}, "data": {"dataset": "spirals"}}
    ev = prob.evaluate(w)
    return write_run(tmp_path / name, config=cfg, weights=prob.params(w), metrics={**ev.to_dict(), "status": "success"},
                     data=prob.data)


def test_prune_run_writes_a_smaller_run(tmp_path) -> None:
    prob = _mixed_problem()
    w = _zeroed(prob, [1, 2, 3])
    rd = _write(tmp_path, prob, w)
    report, pruned, final_w = prune_run(rd, tol=1e-3)
    assert (report.blocks_before, report.blocks_after) == (5, 3)
    assert report.max_output_change == 0.0
    assert report.accuracy_after == report.accuracy_before
    out = Run(report.out)
    assert out.problem().spec.n_blocks == 3
    assert out.config["pruned_from"] == str(rd)
    assert (out.path / "prune.json").exists()
    with pytest.raises(ValidationError, match="already exists"):
        prune_run(rd, tol=1e-3)


def test_prune_cli_resolve(tmp_path, capsys) -> None:
    from ocp_resnet.cli import main

    ds = load_dataset("spirals", n_samples=20, seed=0)
    prob = Problem.build(ds, blocks=3, width=2, loss="mse", gamma=0.5, weight_decay=1e-3)
    w = _zeroed(prob, [2])
    rd = _write(tmp_path, prob, w)
    assert main(["prune", str(rd), "--resolve", "--out", str(tmp_path / "p")]) == 0
    text = capsys.readouterr().out
    assert "blocks_before 3  blocks_after 2" in text and "re-solved (casadi): status success" in text
    run = Run(tmp_path / "p")
    assert run.metrics["status"] == "success" and run.problem().spec.n_blocks == 2


def test_prune_cli_bad_tol(tmp_path, capsys) -> None:
    from ocp_resnet.cli import main

    prob = _mixed_problem()
    rd = _write(tmp_path, prob, _zeroed(prob, [2]))
    assert main(["prune", str(rd), "--vanish-tol", "-1"]) == 2
    assert "tol must be" in capsys.readouterr().err
