"""Held-out data: a seeded stratified split, and stage losses/accuracies on the held-out part.

The objective uses the training part only; the validation numbers say whether the network
truncated at a stage (the pruned network) keeps its *test* accuracy, not only its fit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ocp_resnet.data.arrays import Dataset
from ocp_resnet.errors import ValidationError, check_float


def split(data: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, validation): a stratified split holding out ``fraction`` of every class (seeded)."""
    from sklearn.model_selection import train_test_split

    fraction = check_float("val_fraction", fraction, 0.0, strict=True)
    if fraction >= 1.0:
        raise ValidationError(f"val_fraction must be in (0, 1), got {fraction}: e.g. 0.25 holds out a quarter")
    counts = np.bincount(data.y, minlength=data.n_classes)
    n_val = int(np.ceil(fraction * data.n_samples))
    present = int(np.sum(counts > 0))
    if counts[counts > 0].min() < 2 or n_val < present or data.n_samples - n_val < present:
        raise ValidationError(
            f"val_fraction={fraction} cannot hold out every class of {data.n_samples} samples "
            f"(class counts {counts.tolist()}): use more samples or another fraction"
        )
    idx = np.arange(data.n_samples)
    tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=data.y)
    tr, va = np.sort(tr), np.sort(va)
    meta = {**data.meta, "val_fraction": fraction, "split_seed": seed}
    return (Dataset(data.X[tr], data.y[tr], data.n_classes, data.name, meta),
            Dataset(data.X[va], data.y[va], data.n_classes, f"{data.name} (held out)", meta))


def val_data_file(val: Dataset) -> dict[str, Any]:
    """``{"val_data.npz": writer}`` for ``write_run``'s ``extra_files``."""
    return {"val_data.npz": lambda p: np.savez(p, X=val.X, y=val.y, n_classes=val.n_classes)}


def format_val_table(metrics: dict[str, Any]) -> str:
    """Per-stage training vs validation loss/accuracy as text."""
    sl, sa = metrics["stage_losses"], metrics["stage_accuracy"]
    vl, vacc = metrics["val_stage_losses"], metrics["val_stage_accuracy"]
    lines = [f"held-out data ({metrics['val_n_samples']} samples):",
             f"{'k':>3} {'train loss':>12} {'train acc':>9} {'val loss':>12} {'val acc':>8}"]
    for k in range(len(sl)):
        lines.append(f"{k:>3} {sl[k]:>12.5e} {sa[k]:>9.3f} {vl[k]:>12.5e} {vacc[k]:>8.3f}")
    return "\n".join(lines)
