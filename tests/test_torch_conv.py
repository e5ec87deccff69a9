"""Conv ResNet-v2: stage outputs ŷ_k in one pass, equal to the truncated networks; training on digits."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from ocp_resnet import ObjectiveSpec, ValidationError, load_dataset
from ocp_resnet.torch import (
    ConvSpec,
    ResNetV2,
    StageCostLoss,
    Trainer,
    TrainOptions,
    conv_evaluation,
    images_of,
    targets,
    weighted_stage_cost,
)
from ocp_resnet.torch.conv import PreActBlock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _truncated(m: ResNetV2, xs, k):
    """ŷ_k the slow way: x_k through every later skip, then the head (no running-stat update)."""
    z = xs[k]
    for j in range(k, m.spec.n_blocks):
        z = m.blocks[j].skip(z)
    return m.head(z, track_stats=k == m.spec.n_blocks).T


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_stage_outputs_are_the_truncated_networks(norm, mode):
    spec = ConvSpec(2, (9, 7), 5, channels=(4, 8, 6), stage_blocks=(2, 1, 2), norm=norm, activation="softplus")
    m = ResNetV2(spec, seed=1, dtype=torch.float64)
    getattr(m, mode)()
    x = torch.rand(6, 2, 9, 7, dtype=torch.float64)
    xs = m.trajectory(x)
    outs = m.stage_outputs_from(xs)
    assert len(outs) == spec.n_blocks + 1
    for k, z in enumerate(outs):
        assert torch.allclose(z, _truncated(m, xs, k), rtol=1e-12, atol=1e-12), k
    # the batched stage cost equals Σ γ_k ℓ(ŷ_k) from the list of outputs
    obj = ObjectiveSpec(loss="sce", gamma=tuple(np.linspace(0.0, 1.0, spec.n_blocks)))
    t = targets(obj, np.arange(6) % 5, 5, torch.float64).T
    cost, final = m.cost(x, t, obj)
    assert torch.allclose(cost, weighted_stage_cost(obj, outs, t, 5), rtol=1e-12, atol=1e-13)
    assert torch.allclose(final, outs[-1])


def test_stage_cost_runs_every_block_once_and_leaves_running_stats_alone(monkeypatch):
    spec = ConvSpec(1, (8, 8), 3, channels=(4, 8), stage_blocks=(2, 2))
    a, b = ResNetV2(spec, seed=0), ResNetV2(spec, seed=0)
    calls = []
    orig = PreActBlock.forward
    monkeypatch.setattr(PreActBlock, "forward", lambda self, x: calls.append(1) or orig(self, x))
    x = torch.rand(10, 1, 8, 8)
    y = np.arange(10) % 3
    for model, g in ((a, 1.0), (b, 0.0)):
        obj = ObjectiveSpec(loss="ce", gamma=g)
        calls.clear()
        J, _ = StageCostLoss(obj, 3)(model.train(), x, targets(obj, y, 3, torch.float32))
        J.backward()
        assert len(calls) == spec.n_blocks  # one forward pass, no rerun per stage
    for (ka, va), (_kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        if "running" in ka:
            assert torch.equal(va, vb), ka


def test_conv_gradient_matches_finite_differences():
    spec = ConvSpec(1, (6, 6), 3, channels=(3, 4), stage_blocks=(1, 1), norm="group", activation="tanh")
    m = ResNetV2(spec, seed=2, dtype=torch.float64)
    obj = ObjectiveSpec(loss="ce", gamma=0.7, weight_decay=1e-2)
    x = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    T = targets(obj, np.arange(5) % 3, 3, torch.float64)
    loss = StageCostLoss(obj, 3)
    J, _ = loss(m, x, T)
    J.backward()
    p = m.blocks[1].S.weight
    g = p.grad[1, 2, 0, 0].item()
    h = 1e-6
    with torch.no_grad():
        p[1, 2, 0, 0] += h
        Jp = loss(m, x, T)[0].item()
        p[1, 2, 0, 0] -= 2 * h
        Jm = loss(m, x, T)[0].item()
    assert abs((Jp - Jm) / (2 * h) - g) <= 1e-6 * max(1.0, abs(g))


def test_conv_resnet_trains_on_digits_well_above_chance():
    ds = load_dataset("digits", n_samples=400, seed=0)
    imgs = images_of(ds)
    spec = ConvSpec(1, (8, 8), 10, channels=(8, 16), stage_blocks=(1, 1))
    model = ResNetV2(spec, seed=0)
    obj = ObjectiveSpec(loss="ce", gamma=0.1, weight_decay=1e-4)
    tr = Trainer(obj, 10, TrainOptions(optimizer="adam", lr=1e-2, epochs=3, batch_size=32, dtype="float32",
                                       progress=False)).fit(model, imgs, ds.y)
    assert tr.history_[-1]["accuracy"] > 0.6  # chance is 0.1
    ev = conv_evaluation(model, imgs, ds.y, obj, 10)
    assert ev.stage_accuracy[-1] > 0.6
    assert len(ev.stage_losses) == 3 and len(ev.block_norms) == 2 and ev.grad_norm > 0


def test_same_seed_gives_identical_training():
    ds = load_dataset("digits", n_samples=120, seed=0)
    imgs = images_of(ds)
    spec = ConvSpec(1, (8, 8), 10, channels=(4, 8), stage_blocks=(1, 1))
    obj = ObjectiveSpec(loss="ce", gamma=0.5)

    def fit(seed):
        m = ResNetV2(spec, seed=seed)
        tr = Trainer(obj, 10, TrainOptions(epochs=2, batch_size=16, dtype="float32", seed=seed, device="cpu",
                                            progress=False))
        tr.fit(m, imgs, ds.y, val=(imgs[:20], ds.y[:20]))
        return tr.history_, m.weights()

    h1, w1 = fit(0)
    h2, w2 = fit(0)
    h3, w3 = fit(1)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(h1) == strip(h2)
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    assert not all(np.array_equal(w1[k], w3[k]) for k in w1)


def test_weights_round_trip_and_spec_dict():
    spec = ConvSpec(3, (8, 8), 4, channels=(4, 8), stage_blocks=(1, 2), norm="batch")
    assert ConvSpec.from_dict(spec.to_dict()) == spec
    m = ResNetV2(spec, seed=0)
    w = m.weights()
    assert "block1.S.weight" in w and "head.linear.weight" in w and "block0.norm1.running_mean" in w
    assert "block0.S.weight" not in w  # same width and resolution: identity skip
    m2 = ResNetV2(spec, seed=5).load_weights(w)
    m.eval(), m2.eval()
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(m(x), m2(x))
    with pytest.raises(ValidationError, match="missing"):
        m2.load_weights({k: v for k, v in w.items() if k != "stem.weight"})
    with pytest.raises(ValidationError, match="one count per stage"):
        ConvSpec(1, (8, 8), 2, channels=(4, 8), stage_blocks=(1,))
    with pytest.raises(ValidationError, match="unknown norm"):
        ConvSpec(1, (8, 8), 2, norm="layer")


def _write_idx(path, arr: np.ndarray) -> None:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_images_from_mnist_idx_and_npz(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "mnist"
    d.mkdir()
    _write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, size=(30, 6, 6)))
    _write_idx(d / "train-labels-idx1-ubyte.gz", np.arange(30) % 3)
    ds = load_dataset(str(d))
    imgs = images_of(ds)
    assert imgs.shape == (30, 1, 6, 6) and imgs.max() <= 1.0
    f = tmp_path / "rgb.npz"
    np.savez(f, X=rng.random((12, 3, 5, 5)), y=np.arange(12) % 2)
    assert images_of(load_dataset(str(f))).shape == (12, 3, 5, 5)
    with pytest.raises(ValidationError, match="needs image data"):
        images_of(load_dataset("moons", n_samples=10))


@pytest.mark.parametrize("loss", ["ce", "sce", "mse", "bce"])
def test_batched_stage_cost_equals_the_sum_of_stage_losses_for_every_loss(loss):
    C = 2 if loss == "bce" else 3
    obj = ObjectiveSpec(loss=loss, gamma=(0.3, 0.0, 1.5))
    spec = ConvSpec(1, (6, 6), obj.n_outputs(C), channels=(3, 5), stage_blocks=(2, 1))
    m = ResNetV2(spec, seed=0, dtype=torch.float64)
    x = torch.rand(7, 1, 6, 6, dtype=torch.float64)
    t = targets(obj, np.arange(7) % C, C, torch.float64).T
    cost, _ = m.cost(x, t, obj)
    outs = m.stage_outputs_from(m.trajectory(x))
    assert cost.shape == (1, 7)
    assert torch.allclose(cost, weighted_stage_cost(obj, outs, t, C), rtol=1e-12, atol=1e-13)
