"""Device and dtype names of the torch back-end resolved in one place.

The MLP back-end (parity with CasADi, ``solve --backend torch``, sweeps) runs in float64; conv
nets (``train --arch conv``) run in float32 unless ``--dtype float64`` is given.
"""
from __future__ import annotations

import torch

from ocp_resnet.errors import ValidationError, check_choice

#: The dtypes a model may use, by name.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → cuda when present, else cpu; ``cuda[:i]`` fails clearly without a GPU."""
    if isinstance(name, torch.device):
        return name
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValidationError(f"device={name!r}: no CUDA device is available here; use device='cpu' or device='auto'")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValidationError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """``float32``/``float64`` (or a torch dtype) → the torch dtype.

    Where each back-end's dtype is chosen: :class:`~ocp_resnet.torch.TrainOptions` defaults to
    float64; the CLI's ``train`` sets it per architecture (``ocp_resnet.cli.train.ARCH_DEFAULTS``:
    ``--arch mlp`` float64, ``--arch conv`` float32, ``--dtype`` overrides), and ``sweep
    --backend torch --arch conv`` follows it; ``compare`` trains in float64; metrics of trained
    runs are evaluated in float64; the CasADi/IPOPT back-end is float64 throughout.
    """
    if isinstance(name, torch.dtype):
        return name
    check_choice("dtype", name, DTYPES)
    return DTYPES[name]
