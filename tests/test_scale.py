"""Scale-out: K DDP ranks follow the one-process trajectory; checkpoints resume bit-identically.

The ranks run on 127.0.0.1 only (gloo, float64 on the CPU), started with torch.multiprocessing.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from ocp_resnet import Problem, Status, ValidationError, load_dataset
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.torch import ConvSpec, ResNetMLP, ResNetV2, Trainer, TrainOptions, distributed

from .helpers import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cases() -> dict:
    """name → (model factory, objective, n_classes, inputs, labels, options)."""
    mlp = Problem.build(load_dataset("spirals", n_samples=101), blocks=4, width=2, loss="sce", gamma=0.5,
                        weight_decay=1e-3)
    rng = np.random.default_rng(0)
    imgs = rng.normal(size=(30, 1, 6, 6))
    labels = np.arange(30) % 3
    conv_obj = ObjectiveSpec(loss="ce", gamma=0.3, weight_decay=1e-4)
    conv_spec = ConvSpec(1, (6, 6), 3, channels=(3, 4), stage_blocks=(1, 1), norm="group", activation="tanh")
    common = dict(seed=0, device="cpu", dtype="float64", progress=False)
    return {
        # 16 = 8 + 8 per rank; the last batch of 5 splits 3 + 2
        "adam": (lambda: ResNetMLP(mlp.spec, seed=0), mlp.objective, 2, mlp.data.X, mlp.data.y,
                 TrainOptions(optimizer="adam", epochs=4, batch_size=16, **common)),
        "adamw": (lambda: ResNetMLP(mlp.spec, seed=1), mlp.objective, 2, mlp.data.X, mlp.data.y,
                  TrainOptions(optimizer="adamw", epochs=2, batch_size=33, **common)),
        "lbfgs": (lambda: ResNetMLP(mlp.spec, seed=0), mlp.objective, 2, mlp.data.X, mlp.data.y,
                  TrainOptions(optimizer="lbfgs", epochs=2, lbfgs_iter=5, **common)),
        "conv": (lambda: ResNetV2(conv_spec, seed=0, dtype=torch.float64), conv_obj, 3, imgs, labels,
                 TrainOptions(optimizer="sgd", epochs=2, batch_size=10, lr=0.05, **common)),
    }


def _train(name: str) -> tuple[dict, list]:
    make, obj, C, X, y, opts = _cases()[name]
    model = make()
    tr = Trainer(obj, C, opts).fit(model, X, y)
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}, tr.history_


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = distributed.init_from_env("cpu")
    assert ctx.active and ctx.backend == "gloo"
    try:
        res = {name: _train(name) for name in _cases()}
        res["interrupt"] = _interrupt_on_one_rank(rank)
    finally:
        distributed.shutdown()
    torch.save(res, f"{out}.{rank}")


def _interrupt_on_one_rank(rank: int) -> tuple:
    """Ctrl-C reaches rank 1 alone, during its 3rd step: both ranks must stop after that step."""
    import signal

    make, obj, C, X, y, opts = _cases()["adam"]
    model = make()
    calls = [0]
    cost = model.cost

    def cost_then_sigint(*a, **kw):
        calls[0] += 1
        if rank == 1 and calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return cost(*a, **kw)

    model.cost = cost_then_sigint
    tr = Trainer(obj, C, opts).fit(model, X, y)
    return tr.stopped_, tr.steps_, len(tr.history_)


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    import torch.multiprocessing as mp

    out = str(tmp_path_factory.mktemp("ddp") / "res")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("name", ["adam", "adamw", "lbfgs", "conv"])
def test_two_ranks_follow_the_one_process_trajectory(ddp_results, name):
    torch.set_num_threads(1)
    w1, hist1 = _train(name)
    for rank in range(2):
        wk, histk = ddp_results[rank][name]
        assert set(wk) == set(w1)
        diff = max(float(np.max(np.abs(wk[k] - w1[k]))) for k in w1)
        assert diff < 1e-10, (name, rank, diff)
        # metrics are summed over the ranks: the recorded loss and accuracy are the global ones
        assert [h["accuracy"] for h in histk] == [h["accuracy"] for h in hist1]
        np.testing.assert_allclose([h["loss"] for h in histk], [h["loss"] for h in hist1], rtol=1e-12)
    # the weights moved (a test that cannot fail otherwise)
    make = _cases()[name][0]
    w0 = {k: v.detach().numpy() for k, v in make().state_dict().items()}
    assert max(float(np.max(np.abs(w0[k] - w1[k]))) for k in w1) > 1e-4


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(ddp_results):
    assert ddp_results[0]["interrupt"] == ddp_results[1]["interrupt"] == (Status.INTERRUPTED, 3, 0)


def test_batches_that_cannot_be_split_are_refused():
    ctx = distributed.Context(rank=0, world_size=4)
    ctx.check_batches(100, 16)  # last batch 4
    with pytest.raises(ValidationError, match="cannot be split across 4 ranks"):
        ctx.check_batches(99, 16)  # last batch 3


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
def test_resume_from_a_checkpoint_is_bit_identical(name):
    torch.set_num_threads(1)
    make, obj, C, X, y, opts = _cases()[name]
    full = make()
    Trainer(obj, C, opts).fit(full, X, y)
    saved = []

    class Crash(Exception):
        pass

    def ckpt(state):  # keep the state after epoch 1, then "crash"
        saved.append(torch.load(_roundtrip(state), weights_only=False))
        raise Crash

    with pytest.raises(Crash):
        Trainer(obj, C, opts).fit(make(), X, y, checkpoint=ckpt, checkpoint_every=1)
    assert saved[0]["epoch"] == 1
    resumed = make()
    tr = Trainer(obj, C, opts).fit(resumed, X, y, resume=saved[0])
    assert len(tr.history_) == opts.epochs
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _roundtrip(state):
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


def _cli(*args: str, check: bool = True, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = (launcher or [sys.executable]) + ["-m", "ocp_resnet", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


TRAIN = ("train", "--dataset", "spirals", "--n-samples", "110", "--blocks", "3", "--width", "2", "--optimizer",
         "adam", "--batch-size", "16", "--val-fraction", "0.2", "--quiet", "--device", "cpu")


def test_cli_resume_continues_bit_identically(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _cli(*TRAIN, "--epochs", "4", "--schedule", "constant", "--out", str(a))
    _cli(*TRAIN, "--epochs", "2", "--schedule", "constant", "--checkpoint-every", "1", "--out", str(b))
    assert (b / "checkpoint.pt").exists()
    _cli(*TRAIN, "--epochs", "4", "--schedule", "constant", "--resume", str(b))
    wa, wb = np.load(a / "solution.npz"), np.load(b / "solution.npz")
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    # other flags, or fewer epochs than done, are refused with the fix named
    r = _cli(*TRAIN, "--epochs", "4", "--schedule", "constant", "--lr", "0.1", "--resume", str(b), check=False)
    assert r.returncode == 2 and "other settings" in r.stderr
    r = _cli(*TRAIN, "--epochs", "1", "--schedule", "constant", "--resume", str(b), check=False)
    assert r.returncode == 2 and "--epochs >= 4" in r.stderr


def test_torchrun_two_ranks_write_one_run_like_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _cli(*TRAIN, "--epochs", "3", "--out", str(one))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    r = _cli(*TRAIN, "--epochs", "3", "--out", str(two), launcher=launcher)
    assert r.stdout.count("run directory:") == 1  # rank 0 alone prints and writes
    wa, wb = np.load(one / "solution.npz"), np.load(two / "solution.npz")
    assert max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa) < 1e-10
    import json

    assert json.loads((two / "stats.json").read_text())["world_size"] == 2


def _conv_fit(**kw):
    make, obj, C, X, y, opts = _cases()["conv"]
    model = make()
    o = TrainOptions(**{**opts.to_dict(), "lr": opts.lr, **kw})
    tr = Trainer(obj, C, o).fit(model, X, y)
    return model, tr


def test_channels_last_trains_the_same_net():
    torch.set_num_threads(1)
    a, _ = _conv_fit()
    b, _ = _conv_fit(channels_last=True)
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-12, rtol=0), k


def test_amp_bf16_trains_float32_and_is_refused_for_float64():
    torch.set_num_threads(1)
    model, tr = _conv_fit(dtype="float32", amp="bf16", epochs=3)
    assert tr.stopped_ is None and all(np.isfinite(h["loss"]) for h in tr.history_)
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValidationError, match="amp='bf16' autocasts float32 models: give dtype='float32'"):
        TrainOptions(amp="bf16", dtype="float64")
    with pytest.raises(ValidationError, match="amp must be bf16 or none"):
        TrainOptions(amp="fp8", dtype="float32")


@pytest.mark.slow
def test_compile_trains_close_to_eager():  # ~2 min of inductor compilation on the CPU
    torch.set_num_threads(1)
    a, _ = _conv_fit(epochs=1)
    b, _ = _conv_fit(epochs=1, compile=True)
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-8), k


def test_throughput_benchmark_runs_on_the_cpu(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("torch_throughput", ROOT / "benchmarks" / "torch_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--device", "cpu", "--channels", "4,8", "--size", "8", "--batch", "16", "--steps", "2",
                     "--epochs", "2", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "gamma=0 / reference images/s" in out and "stage-cost overhead" in out
