"""`ocp-resnet train`, `evaluate --backend torch|casadi` and `solve --init TORCH_RUN`, end to end (in-process)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from ocp_resnet.cli import main
from ocp_resnet.cli.evaluate import evaluate_run
from ocp_resnet.model.architecture import ArchSpec
from ocp_resnet.torch import ResNetMLP

MOONS = ["--dataset", "moons", "--n-samples", "60", "--blocks", "3", "--epochs", "15", "--threads", "1", "--device", "cpu",
         "--quiet"]
CONV = ["--dataset", "digits", "--arch", "conv", "--n-samples", "200", "--epochs", "2", "--channels", "4,8",
        "--stage-blocks", "1,1", "--threads", "1", "--device", "cpu", "--quiet"]
SOLVE_KEYS = {
    "objective", "final_loss", "stage_losses", "stage_accuracy", "train_accuracy", "block_norms", "residual_norms",
    "grad_norm", "status", "status_message", "success", "iterations", "build_time_s", "solve_time_s", "n_variables",
    "n_constraints", "method", "backend",
}


pytestmark = pytest.mark.usefixtures("restore_torch_threads")


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch") / "moons"
    assert main(["train", *MOONS, "--out", str(out)]) == 0
    return out


def test_train_writes_the_solve_files_plus_model_and_history(moons_run):
    for f in ("config.json", "solution.npz", "data.npz", "metrics.json", "stats.json", "model.pt", "history.csv",
              "val.npz"):
        assert (moons_run / f).is_file(), f
    m = json.loads((moons_run / "metrics.json").read_text())
    assert SOLVE_KEYS <= set(m) and m["backend"] == "torch" and m["status"] in ("success", "max_iter")
    assert 0.0 <= m["val_accuracy"] <= 1.0 and m["epochs"] == 15
    cfg = json.loads((moons_run / "config.json").read_text())
    assert cfg["command"] == "train" and cfg["arch"] == "mlp" and cfg["solver"]["optimizer"] == "adam"
    spec = ArchSpec.from_dict(cfg["architecture"])
    names = np.load(moons_run / "solution.npz").files
    assert sorted(names) == sorted(spec.param_shapes())
    model = ResNetMLP(spec)
    model.load_state_dict(torch.load(moons_run / "model.pt"))
    w = model.weights()
    assert all(np.array_equal(w[k], np.load(moons_run / "solution.npz")[k]) for k in names)
    rows = list(csv.DictReader(open(moons_run / "history.csv")))
    assert len(rows) == 15 and {"epoch", "loss", "accuracy", "val_accuracy", "lr"} <= set(rows[0])
    assert len(np.load(moons_run / "data.npz")["y"]) == 48  # the training split (val 0.2 of 60)


def test_both_backends_evaluate_a_torch_run_and_reproduce_its_metrics(moons_run):
    m = json.loads((moons_run / "metrics.json").read_text())
    ec, et = evaluate_run(str(moons_run), "casadi"), evaluate_run(str(moons_run), "torch")
    for e in (ec, et):
        assert abs(e["objective"] - m["objective"]) <= 1e-10 * m["objective"]
        assert abs(e["grad_norm"] - m["grad_norm"]) <= 1e-8 * m["grad_norm"]
    assert et["stage_accuracy"] == ec["stage_accuracy"]


def test_torch_evaluates_a_casadi_run(tmp_path):
    out = tmp_path / "s"
    assert main(["solve", "--dataset", "moons", "--n-samples", "30", "--blocks", "2", "--quiet", "--out", str(out)]) == 0
    et = evaluate_run(str(out), "torch")
    m = json.loads((out / "metrics.json").read_text())
    assert abs(et["objective"] - m["objective"]) <= 1e-10 * m["objective"] and et["grad_norm"] < 1e-6


def test_same_seed_same_numbers(moons_run, tmp_path):
    out = tmp_path / "again"
    assert main(["train", *MOONS, "--out", str(out)]) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (moons_run, out))
    assert a["objective"] == b["objective"] and a["stage_losses"] == b["stage_losses"]
    za, zb = np.load(moons_run / "solution.npz"), np.load(out / "solution.npz")
    assert all(np.array_equal(za[k], zb[k]) for k in za.files)


def test_the_library_call_behind_train_gives_the_same_run(moons_run, tmp_path):
    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.torch import TrainOptions
    from ocp_resnet.training import DataSource, MLPNet, TrainConfig, train_run

    # the train command's defaults: those of solve (mse, γ 1, λ 1e-4; docs/defaults.md)
    cfg = TrainConfig(DataSource("moons", n_samples=60), MLPNet(blocks=3), ObjectiveSpec(loss="mse", gamma=1.0,
                      weight_decay=1e-4), TrainOptions(epochs=15, device="cpu", progress=False),
                      threads=1, out=tmp_path / "lib")
    res = train_run(cfg)
    assert res.out == tmp_path / "lib" and res.status.value == res.metrics["status"]
    a = json.loads((moons_run / "metrics.json").read_text())
    assert a["objective"] == res.metrics["objective"] and a["stage_losses"] == res.metrics["stage_losses"]
    za, zb = np.load(moons_run / "solution.npz"), np.load(res.out / "solution.npz")
    assert all(np.array_equal(za[k], zb[k]) for k in za.files)


def test_ipopt_polishes_a_torch_run(tmp_path, capsys):
    run = tmp_path / "t"
    assert main(["train", *MOONS, "--val-fraction", "0", "--out", str(run)]) == 0
    out = tmp_path / "polished"
    assert main(["solve", "--dataset", "moons", "--n-samples", "60", "--blocks", "3", "--quiet", "--init", str(run),
                 "--out", str(out)]) == 0
    assert "warm start from" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    t = json.loads((run / "metrics.json").read_text())
    assert abs(m["init_objective"] - t["objective"]) <= 1e-10 * t["objective"]  # same data, same weights
    assert m["objective"] <= m["init_objective"] and m["grad_norm"] < m["init_grad_norm"]


def test_train_conv_on_digits_and_evaluate(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["train", *CONV, "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert SOLVE_KEYS <= set(m) and m["arch"] == "conv" and len(m["stage_losses"]) == 3
    assert m["train_accuracy"] > 0.1
    e = evaluate_run(str(out), "torch")
    assert abs(e["objective"] - m["objective"]) <= 1e-10 * m["objective"]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2  # casadi has no conv nets
    assert "--backend torch" in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [
    (["--dataset", "moons", "--arch", "conv"], "needs image data"),
    (["--optimizer", "rmsprop"], "unknown optimizer"),
    (["--arch", "resnet"], "unknown arch"),
    (["--val-fraction", "1.5"], "--val-fraction must be < 1"),
    (["--dtype", "half"], "unknown dtype"),
    (CONV + ["--gamma", "0.1,0.2,0.3"], "one value per block"),
])
def test_bad_input_exits_2_naming_the_fix(tmp_path, capsys, argv, msg):
    assert main(["train", *argv, "--out", str(tmp_path / "x")]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_train_conv_on_a_local_mnist_idx_directory(tmp_path):
    import gzip
    import struct

    def write_idx(path, arr):
        arr = np.asarray(arr, dtype=np.uint8)
        with gzip.open(path, "wb") as fh:
            fh.write(bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())

    d = tmp_path / "mnist"
    d.mkdir()
    rng = np.random.default_rng(0)
    write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, size=(40, 12, 12)))
    write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(40) % 4)
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(d), "--arch", "conv", "--epochs", "1", "--channels", "4,8",
                 "--stage-blocks", "1,1", "--threads", "1", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"]["image_size"] == [12, 12] and cfg["architecture"]["n_outputs"] == 4
    assert np.load(out / "data.npz")["X"].shape == (32, 144)
