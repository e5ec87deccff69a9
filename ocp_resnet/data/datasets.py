"""Data sets: seeded generators, scikit-learn's real 8x8 digits, and user files.

Every loader returns a :class:`Dataset` with ``X`` of shape (n, p) and integer labels
``y`` in 0..C-1 (scikit-learn layout). :func:`load_dataset` is the one entry point the CLI
uses and checks the result (finite values, at least two classes).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ocp_resnet.data.arrays import Dataset, check_dataset, from_arrays, read_idx
from ocp_resnet.errors import ValidationError, check_float, check_int

GENERATORS = ("spirals", "moons", "circles", "xor")
BUILTIN = GENERATORS + ("digits",)


# ------------------------------------------------------------------------- generators
def spirals(n_samples: int = 200, noise: float = 0.0, seed: int = 0) -> Dataset:
    """Two interleaved spirals in [-1, 1]² (the predecessors' benchmark)."""
    rng = np.random.default_rng(seed)
    m = n_samples - n_samples // 2
    t = np.sqrt(rng.uniform(0, 1, m)) * 3 * np.pi
    a = np.stack([t * np.cos(t), t * np.sin(t)], 1) / (3 * np.pi)
    b = -a[: n_samples // 2]
    X = np.concatenate([a, b]) + noise * rng.normal(size=(n_samples, 2))
    y = np.concatenate([np.zeros(m, int), np.ones(n_samples // 2, int)])
    return Dataset(X, y, 2, "spirals")


def _shuffled_with_noise(X: np.ndarray, n_out: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Label the first ``n_out`` rows 0 and the rest 1, shuffle, add N(0, noise²): the same draws
    from ``RandomState(seed)`` as scikit-learn's ``make_moons``/``make_circles`` (bit for bit;
    tests/test_data.py compares). Written out because importing scikit-learn costs about a
    second, which is half of a typical small solve."""
    rng = np.random.RandomState(seed)
    y = np.hstack([np.zeros(n_out, dtype=int), np.ones(len(X) - n_out, dtype=int)])
    idx = np.arange(len(X))
    rng.shuffle(idx)
    X, y = X[idx], y[idx]
    return X + rng.normal(scale=noise, size=X.shape), y


def moons(n_samples: int = 200, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two half moons (scikit-learn's ``make_moons(n_samples, noise=noise, random_state=seed)``)."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    X = np.vstack([np.append(np.cos(t_out), 1 - np.cos(t_in)),
                   np.append(np.sin(t_out), 1 - np.sin(t_in) - 0.5)]).T
    X, y = _shuffled_with_noise(X, n_out, noise, seed)
    return Dataset(X, y, 2, "moons")


def circles(n_samples: int = 200, noise: float = 0.05, seed: int = 0) -> Dataset:
    """Two concentric circles (scikit-learn's ``make_circles(n_samples, noise=noise, factor=0.5,
    random_state=seed)``)."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)  # endpoint=False: no duplicate point
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    X = np.vstack([np.append(np.cos(t_out), 0.5 * np.cos(t_in)),
                   np.append(np.sin(t_out), 0.5 * np.sin(t_in))]).T
    X, y = _shuffled_with_noise(X, n_out, noise, seed)
    return Dataset(X, y, 2, "circles")


def xor(n_samples: int = 200, noise: float = 0.0, seed: int = 0) -> Dataset:
    """Uniform points in [-1, 1]², class = sign(x₁ x₂) > 0, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_samples, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    X = X + noise * rng.normal(size=X.shape)
    return Dataset(X, y, 2, "xor")


def digits(
    n_samples: int | None = None, dim: int | None = None, seed: int = 0, classes: list[int] | None = None
) -> Dataset:
    """scikit-learn's 1,797 real 8x8 digits, scaled to [0, 1].

    ``classes`` keeps a subset of digits (relabelled 0..C-1), ``n_samples`` draws a seeded
    stratified-free random subsample, ``dim`` reduces to that many PCA components so IPOPT
    problems stay small. ``meta['images']`` keeps the (n, 8, 8) images for conv nets.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = d.data / 16.0, d.target.astype(int)
    if classes:
        keep = np.isin(y, classes)
        X, y = X[keep], np.searchsorted(sorted(classes), y[keep])
    if n_samples is not None and n_samples < len(y):
        idx = np.sort(np.random.default_rng(seed).choice(len(y), n_samples, replace=False))
        X, y = X[idx], y[idx]
    images = X.reshape(-1, 8, 8).copy()
    if dim is not None and dim < X.shape[1]:
        from sklearn.decomposition import PCA

        X = PCA(n_components=dim, random_state=seed).fit_transform(X)
    n_classes = int(len(classes)) if classes else 10
    return Dataset(X, y, n_classes, "digits", {"images": images})


# ------------------------------------------------------------------------- user files
def load_npz(path: str | os.PathLike[str]) -> Dataset:
    """A ``.npz`` with arrays ``X`` (n, p) or images (n, H, W) / (n, C, H, W), and ``y`` (n,)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "X" not in f or "y" not in f:
                raise ValidationError(
                    f"{path}: an .npz data file needs arrays named 'X' and 'y', found {sorted(f.files)}"
                )
            X, y = np.asarray(f["X"]), np.asarray(f["y"])
    except ValidationError:
        raise
    except Exception as exc:  # corrupt zip, not an npz, unreadable
        raise ValidationError(f"{path}: cannot read as .npz ({exc}); save it with numpy.savez(path, X=X, y=y)") from None
    meta = {}
    if X.ndim > 2:
        meta["images"] = X.astype(float)
        X = X.reshape(X.shape[0], -1)
    return from_arrays(X, y, Path(path).name, meta)


def load_csv(path: str | os.PathLike[str]) -> Dataset:
    """A numeric CSV, one sample per row, last column = integer label; a header row is skipped."""
    try:
        with open(path) as fh:
            first = fh.readline()
        skip = 0
        try:
            [float(v) for v in first.strip().split(",")]
        except ValueError:
            skip = 1
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            A = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read ({exc.strerror}); check the path") from None
    except ValueError as exc:
        raise ValidationError(
            f"{path}: not a numeric CSV ({exc}); write numbers only, last column = label"
        ) from None
    if A.size == 0:
        raise ValidationError(f"{path}: the CSV has no data rows; give at least two samples, last column = label")
    if A.shape[1] < 2:
        raise ValidationError(f"{path}: a CSV needs feature columns and a last label column")
    return from_arrays(A[:, :-1], A[:, -1], Path(path).name, {})


def load_mnist_idx(directory: str | os.PathLike[str], split: str = "train", n_samples: int | None = None,
                   seed: int = 0) -> Dataset:
    """MNIST (or Fashion-MNIST) from local IDX files (``train-images-idx3-ubyte[.gz]`` …)."""
    d = Path(directory)
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path:
        for name in (f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte",):
            for cand in (d / name, d / (name + ".gz"), d / name.replace("-idx", ".idx")):
                if cand.exists():
                    return cand
        raise ValidationError(f"{d}: no {prefix}-{kind} IDX file found; point dataset=DIR at the MNIST directory")

    images = read_idx(find("images")).astype(float) / 255.0
    labels = read_idx(find("labels")).astype(int)
    if len(images) != len(labels):
        raise ValidationError(f"{d}: {len(images)} images but {len(labels)} labels")
    if n_samples is not None and n_samples < len(labels):
        idx = np.sort(np.random.default_rng(seed).choice(len(labels), n_samples, replace=False))
        images, labels = images[idx], labels[idx]
    return from_arrays(images.reshape(len(images), -1), labels, "mnist", {"images": images},
                        whole=n_samples is None)


# ------------------------------------------------------------------------- entry point
def load_dataset(
    name: str,
    n_samples: int | None = None,
    noise: float | None = None,
    seed: int = 0,
    dim: int | None = None,
    standardize: bool = False,
) -> Dataset:
    """Load a built-in data set by name, or a user file (.npz, .csv, MNIST IDX directory)."""
    if n_samples is not None:
        n_samples = check_int("n_samples", n_samples, 1)
    if noise is not None:
        noise = check_float("noise", noise, 0.0)
    if dim is not None:
        dim = check_int("dim (number of PCA components)", dim, 1)
    seed = check_int("seed", seed, 0)
    if name in GENERATORS:
        gen = {"spirals": spirals, "moons": moons, "circles": circles, "xor": xor}[name]
        kw: dict[str, Any] = {"n_samples": 200 if n_samples is None else n_samples, "seed": seed}
        if noise is not None:
            kw["noise"] = noise
        ds = gen(**kw)
    elif name == "digits":
        ds = digits(n_samples=n_samples, dim=dim, seed=seed)
    elif name == "synthetic-images":  # 3x32x32, 10 classes (ocp_resnet.data.vision); for tests and benchmarks
        from ocp_resnet.data.vision import synthetic_images

        image_kw: dict[str, Any] = {} if noise is None else {"noise": noise}
        ds = synthetic_images(n_samples=256 if n_samples is None else n_samples, seed=seed, **image_kw)
    else:
        p = Path(name)
        if not p.exists():
            raise ValidationError(
                f"unknown dataset {name!r}: use one of {', '.join(BUILTIN)}, synthetic-images, or a path to an "
                ".npz/.csv file, an MNIST IDX directory or a CIFAR-10 python-batch directory"
            )
        if p.is_dir():
            from ocp_resnet.data import vision
            found = vision.layout(p)  # torchvision's layouts: CIFAR-10 batches, ROOT/MNIST/raw, ...
            if found is not None and (found[0] == "cifar10" or found[1] != p):
                ds = vision.load_image_dir(p, n_samples=n_samples, seed=seed)
            else:
                ds = load_mnist_idx(p, n_samples=n_samples, seed=seed)
        elif p.suffix == ".npz":
            ds = load_npz(p)
        elif p.suffix == ".csv":
            ds = load_csv(p)
        else:
            raise ValidationError(f"{name}: unknown file type {p.suffix!r}; use .npz, .csv or an MNIST IDX directory")
        if n_samples is not None and n_samples < ds.n_samples and p.suffix in (".npz", ".csv"):
            idx = np.sort(np.random.default_rng(seed).choice(ds.n_samples, n_samples, replace=False))
            ds = Dataset(ds.X[idx], ds.y[idx], ds.n_classes, ds.name, _subset_meta(ds.meta, idx))
        if dim is not None and dim < ds.n_features:
            from sklearn.decomposition import PCA

            ds.X = PCA(n_components=dim, random_state=seed).fit_transform(ds.X)
    if standardize:
        mu, sd = ds.X.mean(0), ds.X.std(0)
        ds.X = (ds.X - mu) / np.where(sd > 0, sd, 1.0)
    check_dataset(ds)
    return ds


def _subset_meta(meta: dict[str, Any], idx: np.ndarray) -> dict[str, Any]:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in meta.items()}
