"""analyze / prune / sweep for conv ResNet-v2 runs (train --arch conv), end to end and in-process."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from ocp_resnet.analysis.conv import analyze_conv_run, load_conv_run, prune_conv_network, prune_conv_run
from ocp_resnet.analysis.conv_sweep import CONV_COLUMNS, read_conv_csv
from ocp_resnet.analysis.sweep import COLUMNS
from ocp_resnet.cli import main
from ocp_resnet.cli.evaluate import evaluate_run
from ocp_resnet.errors import ValidationError
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.runs import Run
from ocp_resnet.torch import ConvSpec, ResNetV2
from ocp_resnet.torch.evaluate import conv_model_from_run

# stage_blocks 2,2: block 0, 1 identity (stage 0), block 2 projection (stride 2, 4 -> 8), block 3 identity
CONV = ["--dataset", "digits", "--arch", "conv", "--n-samples", "200", "--epochs", "2", "--channels", "4,8",
        "--stage-blocks", "2,2", "--threads", "1", "--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "run"
    assert main(["train", *CONV, "--gamma", "0.3", "--out", str(out)]) == 0
    return out


def _with_zeroed(run_dir, dest, blocks):
    """A copy of a run whose blocks' last conv is zero: F_k ≡ 0 exactly."""
    shutil.copytree(run_dir, dest)
    w = dict(Run(dest).weights)
    for k in blocks:
        w[f"block{k}.conv2.weight"] = np.zeros_like(w[f"block{k}.conv2.weight"])
    np.savez(dest / "solution.npz", **w)
    return dest


def test_analyze_conv_run_numbers_and_plots(conv_run, capsys):
    an = analyze_conv_run(conv_run)
    m = json.loads((conv_run / "metrics.json").read_text())
    assert an.n_blocks == 4 and len(an.stage_losses) == 5 and len(an.val_stage_accuracy) == 5
    # same float64 eval-mode numbers as train's metrics.json (written by the same evaluation)
    np.testing.assert_allclose(an.stage_losses, m["stage_losses"], rtol=1e-10)
    np.testing.assert_allclose(an.residual_norms, m["residual_norms"], rtol=1e-10)
    assert max(an.rel_residual_norms) == 1.0 and an.vanished == []  # nothing vanishes after 2 epochs
    assert an.recommended_depth == 4
    assert an.stage_accuracy[an.reach_block] >= an.stage_accuracy[-1]
    # the residual norm is RMS_i ||x_{k+1} - S_k(x_k)||, recomputed here independently
    _, d = load_conv_run(conv_run)
    model = conv_model_from_run(Run(conv_run)).eval()
    with torch.no_grad():
        xs = model.trajectory(torch.as_tensor(d.train[0]))
        r2 = float(((xs[3] - model.blocks[2].S(xs[2])) ** 2).sum() / len(d.train[1]))
    assert an.residual_norms[2] == pytest.approx(np.sqrt(r2), rel=1e-10)
    assert main(["analyze", str(conv_run), "--plots"]) == 0
    out = capsys.readouterr().out
    assert "vanished blocks" in out and "val acc" in out
    assert (conv_run / "turnpike.png").stat().st_size > 0 and (conv_run / "stages.png").stat().st_size > 0


def test_constructed_vanished_blocks_are_pruned_without_changing_outputs(conv_run, tmp_path, capsys):
    run = _with_zeroed(conv_run, tmp_path / "zeroed", [1, 2])  # an identity block and the projection block
    an = analyze_conv_run(run)
    assert an.vanished == [1, 2] and an.residual_norms[1] == 0.0 and an.residual_norms[2] == 0.0
    assert main(["prune", str(run), "--out", str(tmp_path / "pruned")]) == 0
    rep = json.loads((tmp_path / "pruned" / "prune.json").read_text())
    assert rep["removed"] == [1] and rep["projection_only"] == [2] and rep["forced"] == []
    assert rep["max_output_change_train"] < 1e-6 and rep["max_output_change_val"] < 1e-6
    assert rep["train_accuracy_after"] == rep["train_accuracy_before"]
    assert rep["val_accuracy_after"] == rep["val_accuracy_before"]
    # block 1 (4x4x3x3 twice + 2 norms) and block 2's branch are gone; its 1x1 skip stays
    assert rep["parameters_before"] - rep["parameters_after"] == (2 * 4 * 4 * 9 + 2 * 8) + (4 * 8 * 9 + 8 * 8 * 9 + 2 * 4 + 2 * 8)
    cfg = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert cfg["architecture"]["stage_blocks"] == [1, 2] and cfg["architecture"]["branchless"] == [1]
    assert cfg["pruning"]["origin"] == [0, 2, 3]
    # the pruned run is a normal conv run: it evaluates, analyses and its stage numbers are the original's
    ev = evaluate_run(str(tmp_path / "pruned"), "torch")
    m = json.loads((tmp_path / "pruned" / "metrics.json").read_text())
    assert ev["objective"] == pytest.approx(m["objective"], rel=1e-10)
    an2 = analyze_conv_run(tmp_path / "pruned")
    np.testing.assert_allclose(an2.stage_losses[-1], an.stage_losses[-1], rtol=1e-9)
    np.testing.assert_allclose(an2.stage_losses[:2], [an.stage_losses[0], an.stage_losses[2]], rtol=1e-9)
    assert an2.branches == ["conv", "none", "conv"] and an2.vanished == []


def test_prune_refuses_a_live_block_unless_forced(conv_run, tmp_path, capsys):
    assert main(["prune", str(conv_run), "--blocks", "3", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "have not vanished" in err and "--force" in err and not (tmp_path / "p").exists()
    with pytest.raises(ValidationError, match="do not exist"):
        prune_conv_run(conv_run, blocks=[9], write=False)
    assert main(["prune", str(conv_run), "--blocks", "3", "--force", "--out", str(tmp_path / "p")]) == 0
    rep = json.loads((tmp_path / "p" / "prune.json").read_text())
    assert rep["forced"] == [3] and rep["removed"] == [3] and rep["max_output_change_train"] > 1e-6


def test_pruned_run_trains_further(conv_run, tmp_path):
    run = _with_zeroed(conv_run, tmp_path / "zeroed", [3])
    assert main(["prune", str(run), "--finetune", "2", "--out", str(tmp_path / "ft")]) == 0
    rep = json.loads((tmp_path / "ft" / "prune.json").read_text())
    assert rep["finetune"]["epochs"] == 2 and rep["removed"] == [3]
    with open(tmp_path / "ft" / "history.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    before = Run(tmp_path / "zeroed").weights
    after = Run(tmp_path / "ft").weights
    assert set(after) == {k for k in before if not k.startswith("block3.")}
    assert any(not np.allclose(after[k], before[k]) for k in after)  # training moved the weights
    model = conv_model_from_run(Run(tmp_path / "ft"))
    assert model.spec.n_blocks == 3
    assert main(["analyze", str(tmp_path / "ft")]) == 0
    assert main(["prune", str(tmp_path / "ft"), "--out", str(tmp_path / "ft2")]) == 0  # and prunes again


def test_prune_conv_network_is_exact_for_zero_branches():
    spec = ConvSpec(1, (8, 8), 3, channels=(3, 5, 5), stage_blocks=(2, 2, 1), norm="batch")
    model = ResNetV2(spec, seed=3, dtype=torch.float64)
    with torch.no_grad():
        for k in (0, 2, 4):  # identity, projection (width change), projection (stride only)
            model.blocks[k].conv2.weight.zero_()
        for m in model.modules():  # non-trivial running statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    net = prune_conv_network(spec, ObjectiveSpec(loss="ce"), model.weights(), [0, 2, 4])
    assert net.removed == [0] and net.projection_only == [2, 4] and net.spec.stage_blocks == (1, 2, 1)
    assert net.spec.branchless == (1, 3)
    small = ResNetV2(net.spec, dtype=torch.float64).load_weights(net.weights).eval()
    x = torch.randn(7, 1, 8, 8, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(small(x), model(x))
        full, cut = model.stage_outputs(x), small.stage_outputs(x)
        for j, k in enumerate(net.origin + [spec.n_blocks]):
            torch.testing.assert_close(cut[j], full[k], rtol=0, atol=1e-12)


def test_conv_spec_branchless_round_trip_and_checks():
    spec = ConvSpec(1, (8, 8), 3, channels=(3, 5), stage_blocks=(1, 1), branchless=(1,))
    assert ConvSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert not spec.has_branch(1) and spec.has_branch(0)
    old = spec.to_dict()
    old.pop("branchless")  # run directories from before the field load as all-branch nets
    assert ConvSpec.from_dict(old).branchless == ()
    with pytest.raises(ValidationError, match="does not exist"):
        ConvSpec(1, (8, 8), 3, channels=(3, 5), stage_blocks=(1, 1), branchless=(2,))
    assert ResNetV2(spec).branch_parameters(1) == []


def test_sweep_conv_tiny_grid_and_resume(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "--backend", "torch", "--arch", "conv", "--dataset", "digits", "--n-samples", "120",
            "--channels", "4,8", "--stage-blocks", "1,1;2,1", "--gamma", "0,1", "--seeds", "0", "--epochs", "1",
            "--no-plots", "--quiet", "--out", str(out)]
    assert main(args) == 0
    rows = read_conv_csv(out)
    assert len(rows) == 4 and [r["blocks"] for r in rows] == [2, 3, 2, 3]
    with open(out / "sweep.csv") as fh:
        header = next(csv.reader(fh))
    assert header == list(CONV_COLUMNS) and set(COLUMNS) <= set(header) and "val_accuracy" in header
    r = rows[1]
    assert r["stage_blocks"] == "2-1" and len(r["stage_accuracy"]) == 4 and 0 <= r["val_accuracy"] <= 1
    an = analyze_conv_run(r["run_dir"])  # every point is a normal conv run directory
    # sweep.csv holds 12 significant digits
    assert an.n_vanished == r["n_vanished"] and an.objective == pytest.approx(r["objective"], rel=1e-10)
    stamp = (out / "runs" / "gamma1-B2-1-seed0" / "solution.npz").stat().st_mtime_ns
    assert main([*args, "--resume"]) == 0  # finished points are read back, not retrained
    assert (out / "runs" / "gamma1-B2-1-seed0" / "solution.npz").stat().st_mtime_ns == stamp
    assert main([*args, "--epochs", "2", "--resume"]) == 2  # finished runs of other settings are refused
    assert "other settings" in capsys.readouterr().err
    assert (out / "runs" / "gamma1-B2-1-seed0" / "solution.npz").stat().st_mtime_ns == stamp
    assert main(["sweep", "--arch", "conv", "--dataset", "digits", "--out", str(tmp_path / "x")]) == 2
    assert "--backend torch" in capsys.readouterr().err


def _shared_conv_config(**kw):
    from ocp_resnet.torch import TrainOptions
    from ocp_resnet.training import ConvNet, DataSource, TrainConfig

    return TrainConfig(DataSource("digits", n_samples=120), ConvNet(channels=(4, 8)), ObjectiveSpec(loss="ce", weight_decay=1e-4),
                       TrainOptions(epochs=1, dtype="float32", device="cpu"), threads=1, **kw)


def test_run_conv_sweep_from_a_train_config_is_train(tmp_path):
    """A grid point of the library sweep is the ``train`` run of the same settings."""
    from ocp_resnet.analysis.conv_sweep import run_conv_sweep

    rows = run_conv_sweep(_shared_conv_config(), [0.3], [(2, 1)], [1], tmp_path / "sw")
    assert main(["train", "--dataset", "digits", "--arch", "conv", "--n-samples", "120", "--epochs", "1",
                 "--channels", "4,8", "--stage-blocks", "2,1", "--gamma", "0.3", "--seed", "1", "--threads", "1",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "train")]) == 0
    ref = Run(tmp_path / "train").metrics
    assert rows[0]["objective"] == ref["objective"] and rows[0]["val_accuracy"] == ref["val_accuracy"]
    point = tmp_path / "sw" / "runs" / "gamma0.3-B2-1-seed1"
    recorded = json.loads(point.with_name(point.name + ".train.json").read_text())
    assert recorded["objective"]["gamma"] == 0.3 and recorded["network"]["stage_blocks"] == [2, 1]
    assert recorded["data"]["seed"] == recorded["options"]["seed"] == 1
    assert json.loads((tmp_path / "sw" / "sweep.json").read_text())["train"]["network"]["channels"] == [4, 8]
    assert point.with_name(point.name + ".log").read_text().startswith("train (conv")


def test_run_conv_sweep_interrupted_point_and_mlp_config(tmp_path, monkeypatch):
    import ocp_resnet.training as training
    from ocp_resnet.analysis.conv_sweep import run_conv_sweep
    from ocp_resnet.status import Status

    seen = []

    def interrupted(config, log=None):
        seen.append(config)
        return training.TrainResult(Status.INTERRUPTED, None, None, 0, 0.0)

    monkeypatch.setattr(training, "train_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_conv_sweep(_shared_conv_config(), [0.0, 1.0], [(1, 1)], [0], tmp_path / "sw")
    assert len(seen) == 1 and seen[0].objective.gamma == 0.0 and seen[0].overwrite and not seen[0].options.progress
    with pytest.raises(ValidationError, match="ConvNet"):
        run_conv_sweep(training.TrainConfig(training.DataSource("digits"), training.MLPNet(), ObjectiveSpec(),
                                            seen[0].options), [0.0], [(1, 1)], [0], tmp_path / "mlp")
