"""The data container every loader returns, and the checks and array readers they share.

:class:`Dataset` holds ``X`` of shape (n, p) and integer labels ``y`` in 0..C-1 (scikit-learn
layout); :func:`check_dataset` rejects data no solver should see; :func:`from_arrays` and
:func:`read_idx` turn user arrays and IDX files into one.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_int


@dataclass
class Dataset:
    """Features ``X`` (n, p), labels ``y`` (n,), class count and a description."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    name: str = "data"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples n (rows of ``X``)."""
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        """Number of input features p (columns of ``X``)."""
        return int(self.X.shape[1])


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file (MNIST format, optionally gzipped); a bad file is a ValidationError naming it."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read ({exc}); check the MNIST directory") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValidationError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValidationError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} values)")
    return data.reshape(dims)


def from_arrays(X: Any, y: Any, name: str, meta: dict[str, Any], whole: bool = True) -> Dataset:
    """``whole``: the arrays are a whole user file, so every class 0..C-1 must occur in it."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.dtype.kind not in "fiub" or y.dtype.kind not in "fiub":
        raise ValidationError(f"{name}: X and y must be numeric arrays (got {X.dtype}, {y.dtype})")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValidationError(f"{name}: labels y must be integers 0..C-1")
    y = y.astype(int)
    labels = np.unique(y)
    n_classes = int(labels.max()) + 1 if labels.size else 0
    if whole and labels.size and labels.min() >= 0 and labels.size != n_classes:  # e.g. 1-based, or digits 3 and 8
        shown = ", ".join(map(str, labels[:10])) + (", …" if labels.size > 10 else "")
        raise ValidationError(
            f"{name}: labels must be 0..C-1 with every class present, found {shown}: relabel them, "
            "e.g. y = numpy.unique(y, return_inverse=True)[1]"
        )
    return Dataset(X.astype(float), y, n_classes, name, meta)


def check_dataset(ds: Dataset) -> Dataset:
    """Reject data no solver should see, with a message that names the fix."""
    X, y = np.asarray(ds.X), np.asarray(ds.y)
    y_ok = y.dtype.kind in "iu" or (y.dtype.kind == "f" and bool(np.all(np.isfinite(y) & (y == np.round(y)))))
    if X.dtype.kind not in "fiu" or not y_ok:
        raise ValidationError(
            f"{ds.name}: X must be a numeric array and y integer labels 0..C-1 (got dtypes {X.dtype}, {y.dtype})"
        )
    if X.ndim != 2:
        raise ValidationError(f"{ds.name}: X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValidationError(f"{ds.name}: the data set is empty; give at least two samples")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValidationError(
            f"{ds.name}: y must be 1-D with one label per row of X ({X.shape[0]}), got shape {y.shape}"
        )
    if X.shape[1] == 0:
        raise ValidationError(f"{ds.name}: X has no feature columns; give at least one feature per sample")
    if not np.all(np.isfinite(X)):
        raise ValidationError(f"{ds.name}: X contains NaN or inf; clean or impute the data first")
    if y.min() < 0:
        raise ValidationError(f"{ds.name}: labels must be integers 0..C-1, found {int(y.min())}")
    if y.max() >= ds.n_classes:
        raise ValidationError(f"{ds.name}: label {int(y.max())} is out of range 0..{ds.n_classes - 1}")
    if y.min() == y.max():  # (not np.unique: its first call imports numpy.ma, ~10 ms of every start)
        raise ValidationError(f"{ds.name}: the labels have fewer than two classes; a classifier needs at least two")
    check_int("n_classes", ds.n_classes, 2)
    return ds
