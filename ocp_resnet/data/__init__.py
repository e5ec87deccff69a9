"""Data: the :class:`Dataset` container, embedded and generated sets, user files, image
directories and held-out splits.

* :mod:`.arrays` — :class:`Dataset`, :func:`check_dataset` and the shared array readers;
* :mod:`.datasets` — :func:`load_dataset` (the one entry point), generators, NPZ/CSV/IDX files;
* :mod:`.vision` — image directories in torchvision's on-disk layouts and a synthetic image set;
* :mod:`.validation` — a seeded stratified held-out split and its metrics.
"""
from __future__ import annotations

from ocp_resnet.data.arrays import Dataset, check_dataset, from_arrays
from ocp_resnet.data.datasets import (
    BUILTIN,
    GENERATORS,
    circles,
    digits,
    load_csv,
    load_dataset,
    load_mnist_idx,
    load_npz,
    moons,
    spirals,
    xor,
)
from ocp_resnet.data.validation import split

__all__ = [
    "BUILTIN", "GENERATORS", "Dataset", "check_dataset", "circles", "digits", "from_arrays", "load_csv",
    "load_dataset", "load_mnist_idx", "load_npz", "moons", "split", "spirals", "xor",
]
