"""Image data in torchvision's on-disk layouts (written here as small files) and the synthetic set."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from ocp_resnet import ValidationError, load_dataset
from ocp_resnet.data.vision import layout, load_image_dir, synthetic_images
from ocp_resnet.torch import images_of


def _cifar(root, n=(7, 5), test=4, seed=0):
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    batches = []
    for i, m in enumerate(list(n) + [test]):
        data = rng.integers(0, 256, size=(m, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, size=m))
        labels[: min(m, 10)] = list(range(min(m, 10)))
        name = f"data_batch_{i + 1}" if i < len(n) else "test_batch"
        with open(d / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, fh)
        batches.append((data, labels))
    return d, batches


def _idx(path, arr, gz=False):
    raw = struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def test_cifar10_python_batches(tmp_path):
    d, batches = _cifar(tmp_path)
    assert layout(tmp_path) == ("cifar10", d) and layout(d) == ("cifar10", d)
    ds = load_image_dir(tmp_path, reader="builtin")
    imgs = images_of(ds)
    assert imgs.shape == (12, 3, 32, 32) and ds.n_classes == 10
    # channel-major rows: pixel (c, i, j) is data[:, c*1024 + 32*i + j], scaled to [0, 1]
    data0 = batches[0][0]
    assert imgs[0, 2, 3, 5] == data0[0, 2 * 1024 + 32 * 3 + 5] / 255.0
    assert imgs[7, 0, 0, 0] == batches[1][0][0, 0] / 255.0  # batches are concatenated in order
    assert list(ds.y[:7]) == [int(v) for v in batches[0][1]]
    test = load_image_dir(d, split="test", reader="builtin")
    assert test.n_samples == 4
    # the CLI entry point reads the same directory
    assert load_dataset(str(tmp_path), n_samples=5).n_samples == 5


def test_torchvision_mnist_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    _idx(raw / "train-images-idx3-ubyte", imgs)
    _idx(raw / "train-labels-idx1-ubyte", np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8), gz=False)
    assert layout(tmp_path) == ("idx", raw)
    ds = load_dataset(str(tmp_path))
    assert ds.name == "fashionmnist" and images_of(ds).shape == (6, 1, 28, 28)
    np.testing.assert_array_equal(images_of(ds)[:, 0], imgs / 255.0)


def test_bad_files_and_missing_extra_name_the_fix(tmp_path, monkeypatch):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(ValidationError, match="not a CIFAR-10 python batch"):
        load_image_dir(tmp_path, reader="builtin")
    with pytest.raises(ValidationError, match="no image data found"):
        load_image_dir(tmp_path / "nothing")
    import builtins

    real = builtins.__import__

    def no_tv(name, *a, **kw):
        if name.startswith("torchvision"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tv)
    with pytest.raises(ValidationError, match=r"ocp_resnet\[vision\]"):
        load_image_dir(tmp_path, reader="torchvision")


def test_synthetic_images_are_seeded_and_learnable():
    a, b = synthetic_images(40, channels=3, size=8, n_classes=4, seed=3), synthetic_images(40, 3, 8, 4, seed=3)
    assert np.array_equal(a.X, b.X) and images_of(a).shape == (40, 3, 8, 8)
    assert sorted(set(a.y)) == [0, 1, 2, 3]
    # nearest class mean separates the classes far above chance (the set is learnable)
    means = np.stack([a.X[a.y == c].mean(0) for c in range(4)])
    pred = np.argmin(((a.X[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == a.y).mean() > 0.9
    assert load_dataset("synthetic-images", n_samples=20).n_samples == 20
