"""Data sets and user-file loaders (files are written by the tests)."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from ocp_resnet import ValidationError, load_dataset
from ocp_resnet.data.datasets import load_mnist_idx


@pytest.mark.parametrize("name", ["spirals", "moons", "circles", "xor"])
def test_generators_are_seeded(name):
    a = load_dataset(name, n_samples=51, noise=0.05, seed=3)
    b = load_dataset(name, n_samples=51, noise=0.05, seed=3)
    c = load_dataset(name, n_samples=51, noise=0.05, seed=4)
    assert a.X.shape == (51, 2) and a.y.shape == (51,)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)
    assert set(np.unique(a.y)) == {0, 1}


@pytest.mark.parametrize("n, noise, seed", [(51, 0.05, 3), (200, 0.1, 0), (7, 0.0, 11), (300, 0.3, 42)])
def test_moons_and_circles_are_scikit_learns(n, noise, seed):
    """Our generators draw exactly what make_moons / make_circles draw (same data, same numbers)."""
    from sklearn.datasets import make_circles, make_moons

    for name, make in [("moons", lambda: make_moons(n, noise=noise, random_state=seed)),
                       ("circles", lambda: make_circles(n, noise=noise, factor=0.5, random_state=seed))]:
        X, y = make()
        d = load_dataset(name, n_samples=n, noise=noise, seed=seed)
        np.testing.assert_array_equal(d.X, X)
        np.testing.assert_array_equal(d.y, y)


def test_spirals_match_the_baseline_generator():
    X = load_dataset("spirals", n_samples=200).X
    rng = np.random.default_rng(0)
    t = np.sqrt(rng.uniform(0, 1, 100)) * 3 * np.pi
    a = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    np.testing.assert_allclose(X, np.concatenate([a, -a]))


def test_digits_subsample_and_pca():
    ds = load_dataset("digits", n_samples=100, dim=5, seed=1)
    assert ds.X.shape == (100, 5) and ds.n_classes == 10
    assert ds.meta["images"].shape == (100, 8, 8)


def test_standardize():
    ds = load_dataset("moons", n_samples=100, standardize=True)
    np.testing.assert_allclose(ds.X.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(ds.X.std(0), 1, atol=1e-12)


def test_npz_and_csv_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.arange(20) % 3
    np.savez(tmp_path / "d.npz", X=X, y=y)
    ds = load_dataset(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(ds.X, X)
    assert ds.n_classes == 3
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",", header="a,b,c,label", comments="")
    ds2 = load_dataset(str(tmp_path / "d.csv"))
    np.testing.assert_allclose(ds2.X, X)
    np.testing.assert_array_equal(ds2.y, y)


def _write_idx(path, arr, gz=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_loader(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(12, 28, 28))
    labels = np.arange(12) % 10
    sfx = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", imgs, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, gz)
    ds = load_mnist_idx(tmp_path)
    assert ds.X.shape == (12, 784) and ds.meta["images"].shape == (12, 28, 28)
    np.testing.assert_allclose(ds.meta["images"][3], imgs[3] / 255.0)
    np.testing.assert_array_equal(ds.y, labels)
    ds2 = load_dataset(str(tmp_path), n_samples=5)
    assert ds2.n_samples == 5


def test_truncated_idx_is_rejected(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 2, 2)))
    raw = (tmp_path / "train-images-idx3-ubyte").read_bytes()[:-3]
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(ValidationError, match="truncated"):
        load_mnist_idx(tmp_path)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.zeros((0, 2)), np.zeros(0, int), "empty"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]), "NaN"),
        (np.zeros((3, 2)), np.zeros(3, int), "two classes"),
        (np.zeros((3, 2)), np.array([0, 1, -1]), "0..C-1"),
        (np.zeros((3, 2)), np.array([0, 1]), "one label per row"),
    ],
)
def test_bad_data_is_rejected_with_a_fix(tmp_path, X, y, match):
    np.savez(tmp_path / "bad.npz", X=X, y=y)
    with pytest.raises(ValidationError, match=match):
        load_dataset(str(tmp_path / "bad.npz"))
