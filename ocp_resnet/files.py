"""Reading and writing the plain files of a run: JSON and NumPy archives, never pickles.

Files a user points the tool at are data, never code: ``.npz`` files are opened with
``allow_pickle=False`` and JSON with the standard parser.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ocp_resnet.errors import ValidationError


def dump_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy numbers and arrays as plain JSON)."""
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=json_default)
        fh.write("\n")


def json_default(o: Any) -> Any:
    """``json.dump``'s fallback for numpy scalars, arrays and paths."""
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def config_kind(config: Any) -> Literal["mlp", "conv"]:
    """``"conv"`` for the ``config.json`` dict of a conv ResNet-v2 run (its architecture says so, or
    ``train`` recorded ``arch: conv``), else ``"mlp"``; :attr:`ocp_resnet.runs.RunRecord.kind` is this."""
    arch, solver = config.get("architecture") or {}, config.get("solver") or {}
    return "conv" if "conv" in (arch.get("kind"), config.get("arch"), solver.get("arch")) else "mlp"


def run_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; a missing one raises ValidationError."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"{p} does not exist: give a run directory written by 'ocp-resnet solve' or 'train'")
    return p


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Weights from a ``solution.npz`` file or a run directory."""
    p = run_path(path)
    f = p / "solution.npz" if p.is_dir() else p
    if not f.exists():
        raise ValidationError(f"{p} has no solution.npz: it is not a complete run directory")
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: np.asarray(z[k], dtype=float) for k in z.files}
    except Exception as exc:
        raise ValidationError(f"{f}: cannot read the weights ({exc}); the file is corrupt or not an .npz") from None


def read_json(path: Path) -> dict[str, Any]:
    """A run directory's JSON file; a missing or corrupt one raises ValidationError naming it."""
    try:
        with open(path) as fh:
            record: dict[str, Any] = json.load(fh)
            return record
    except FileNotFoundError:
        raise ValidationError(f"{path} is missing: the run directory is incomplete") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read ({exc}); the file is corrupt") from None
