"""Image data for the conv nets: torchvision's on-disk layouts (no downloads) and a synthetic set.

``--dataset DIR`` accepts the directories torchvision writes, read locally:

* MNIST / Fashion-MNIST raw IDX files: ``ROOT/MNIST/raw/``, ``ROOT/FashionMNIST/raw/`` or the
  ``raw`` directory itself (``train-images-idx3-ubyte[.gz]`` …) → images (n, 1, 28, 28);
* CIFAR-10 python batches: ``ROOT/cifar-10-batches-py/`` or that directory itself
  (``data_batch_1`` … ``data_batch_5``, ``test_batch``: pickled dicts with ``data``, an
  (n, 3072) uint8 array in channel-major order, and ``labels``) → images (n, 3, 32, 32).

``reader="torchvision"`` reads them through ``torchvision.datasets`` (``download=False``; the
optional extra ``ocp_resnet[vision]``), ``"builtin"`` with this module's readers of the same
formats, ``"auto"`` (default) with torchvision when it is installed. torchvision also checks
the MD5 sums of the official CIFAR files, so hand-made or cut-down copies need ``builtin``.
Pixel values are scaled to [0, 1]; ``n_samples`` draws a seeded subset.

The CIFAR batches are pickles, and a pickle can name any importable callable: the built-in
reader unpickles them with :class:`_CifarUnpickler`, which admits only numpy's array and dtype
reconstruction and builtin containers, so a tampered batch file is refused before it runs
anything.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_choice, check_int

READERS = ("auto", "torchvision", "builtin")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
#: torchvision's directory name of each IDX data set.
IDX_SETS = ("MNIST", "FashionMNIST")
#: MNIST, Fashion-MNIST and CIFAR-10 all have ten classes.
N_CLASSES = 10


def _torchvision() -> Any:
    try:
        import torchvision.datasets as tvd
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        raise ValidationError(
            f"reading image data through torchvision needs the optional extra: pip install 'ocp_resnet[vision]' "
            f"({type(exc).__name__}: {exc}); or use the built-in readers (reader='builtin')") from None
    return tvd


def _use_torchvision(reader: str) -> bool:
    check_choice("reader", reader, READERS)
    if reader == "builtin":
        return False
    if reader == "torchvision":
        _torchvision()
        return True
    try:
        _torchvision()
        return True
    except ValidationError:
        return False


def layout(path: str | os.PathLike[str]) -> tuple[str, Path] | None:
    """(``"cifar10"`` or ``"idx"``, the directory holding the files) for a torchvision layout, else None."""
    p = Path(path)
    for d in (p, p / CIFAR_DIR):
        if (d / CIFAR_TRAIN[0]).exists() or (d / CIFAR_TEST[0]).exists():
            return "cifar10", d
    for d in [p, p / "raw"] + [p / name / "raw" for name in IDX_SETS]:
        if any(d.glob("*-images-idx3-ubyte*")) or any(d.glob("*-images.idx3-ubyte*")):
            return "idx", d
    return None


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The callables a pickled numpy array needs, under the module names numpy 1 and 2 write."""
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    found: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core", "numpy._core"):
        found[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        # protocol 5 pickles; numpy's stubs leave its private _frombuffer out
        found[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


#: builtin types a batch dict may hold (``__builtin__`` is the name Python 2 pickles use).
_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float"})


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches and nothing else: ``find_class`` admits only numpy array/dtype
    reconstruction, builtin containers and ``_codecs.encode`` (how protocol-2 pickles written by
    Python 3 carry bytes); any other global — ``os.system``, ``builtins.eval`` … — is refused."""

    def find_class(self, module: str, name: str) -> Any:
        numpy_globals = _numpy_globals()
        if (module, name) in numpy_globals:
            return numpy_globals[(module, name)]
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR-10 batch holds only numpy arrays, "
                                     "lists and dicts")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ValidationError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if not isinstance(d, dict) or "data" not in d or not ("labels" in d or "fine_labels" in d):
        raise ValidationError(f"{path}: not a CIFAR-10 python batch (no 'data'/'labels' entries)")
    data = np.asarray(d["data"], dtype=np.uint8)
    labels = np.asarray(d.get("labels", d.get("fine_labels")), dtype=int)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValidationError(f"{path}: expected data (n, 3072) and n labels, got {data.shape} and {len(labels)}")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(directory: str | os.PathLike[str], split: str = "train", reader: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 images (n, 3, 32, 32) uint8 and labels from the python batches."""
    found = layout(directory)
    if found is None or found[0] != "cifar10":
        raise ValidationError(f"{directory}: no CIFAR-10 python batches ({CIFAR_DIR}/data_batch_1 …) found")
    d = found[1]
    if _use_torchvision(reader):
        tv = _torchvision().CIFAR10(str(d.parent), train=split == "train", download=False)
        return np.asarray(tv.data).transpose(0, 3, 1, 2), np.asarray(tv.targets, dtype=int)
    names = [n for n in (CIFAR_TRAIN if split == "train" else CIFAR_TEST) if (d / n).exists()]
    if not names:
        raise ValidationError(f"{d}: no CIFAR-10 {split} batch found")
    parts = [_read_cifar_batch(d / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def load_idx_images(directory: str | os.PathLike[str], split: str = "train",
                    reader: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """MNIST / Fashion-MNIST images (n, 1, 28, 28) uint8 and labels from raw IDX files."""
    from ocp_resnet.data.arrays import read_idx

    found = layout(directory)
    if found is None or found[0] != "idx":
        raise ValidationError(f"{directory}: no IDX image files (train-images-idx3-ubyte …) found")
    d = found[1]
    if _use_torchvision(reader) and d.name == "raw" and d.parent.name in IDX_SETS:
        cls = getattr(_torchvision(), d.parent.name)
        tv = cls(str(d.parent.parent), train=split == "train", download=False)
        return tv.data.numpy()[:, None], tv.targets.numpy().astype(int)
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path:
        for name in (f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte",
                     f"{prefix}-{kind}.idx{3 if kind == 'images' else 1}-ubyte"):
            for cand in (d / name, d / (name + ".gz")):
                if cand.exists():
                    return cand
        raise ValidationError(f"{d}: no {prefix}-{kind} IDX file found")

    images, labels = read_idx(find("images")), read_idx(find("labels")).astype(int)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValidationError(f"{d}: {images.shape} images do not match {len(labels)} labels")
    return images[:, None], labels


def load_image_dir(path: str | os.PathLike[str], n_samples: int | None = None, seed: int = 0, split: str = "train",
                   reader: str = "auto") -> Any:
    """A :class:`~ocp_resnet.data.datasets.Dataset` (``meta['images']`` (n, C, H, W) in [0, 1]) from a torchvision layout."""
    from ocp_resnet.data.arrays import from_arrays

    found = layout(path)
    if found is None:
        raise ValidationError(
            f"{path}: no image data found: give a directory with MNIST/Fashion-MNIST IDX files "
            f"(ROOT/MNIST/raw/…) or CIFAR-10 python batches (ROOT/{CIFAR_DIR}/…)")
    kind, d = found
    images, labels = (load_cifar10 if kind == "cifar10" else load_idx_images)(path, split, reader)
    if n_samples is not None and n_samples < len(labels):
        idx = np.sort(np.random.default_rng(seed).choice(len(labels), n_samples, replace=False))
        images, labels = images[idx], labels[idx]
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise ValidationError(f"{d}: labels must be 0..{N_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    imgs = images.astype(np.float64) / 255.0
    name = "cifar10" if kind == "cifar10" else (d.parent.name.lower() if d.name == "raw" else "mnist")
    ds = from_arrays(imgs.reshape(len(imgs), -1), labels, name, {"images": imgs}, whole=False)
    ds.n_classes = N_CLASSES  # all three sets have ten classes, also when a subset lacks some
    return ds


def synthetic_images(n_samples: int = 256, channels: int = 3, size: int = 32, n_classes: int = 10,
                     noise: float = 0.5, seed: int = 0) -> Any:
    """A seeded image classification set: class c is a fixed random pattern plus Gaussian noise.

    For tests and throughput benchmarks (any size, no files); learnable, not trivially so at
    ``noise`` 0.5. Images (n, channels, size, size) in ``meta['images']``.
    """
    from ocp_resnet.data.arrays import Dataset

    n_samples = check_int("n_samples", n_samples, n_classes)
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(n_classes, channels, size, size))
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    imgs = protos[y] + noise * rng.normal(size=(n_samples, channels, size, size))
    return Dataset(imgs.reshape(n_samples, -1), y, n_classes, "synthetic-images", {"images": imgs})
