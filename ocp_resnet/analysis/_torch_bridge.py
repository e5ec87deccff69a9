"""The analysis' link to the torch back-end (``ocp_resnet.torch``): training and fine-tuning.

The torch back-end is optional here; every entry point checks for it and raises a
:class:`~ocp_resnet.errors.ValidationError` naming the alternative when it is missing.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ..errors import ValidationError


def _trainer() -> Callable[..., Any] | None:
    """The torch back-end's training function, if this installation has one."""
    try:
        import ocp_resnet.torch as ot
    except ImportError:
        return None
    return getattr(ot, "train", None)


def require() -> None:
    """Raise unless the torch back-end can train."""
    if _trainer() is None:
        raise ValidationError(
            "the torch back-end (ocp_resnet.torch with a train function) is not available in this "
            "installation: use --backend casadi"
        )


def train(problem: Any, seed: int, solver: Mapping[str, Any], log: Any) -> tuple[dict, dict, dict]:
    """Train ``problem`` from seeded random weights; returns (weights, metrics, stats)."""
    require()
    raise ValidationError("torch training in sweeps is pending the torch back-end's trainer API: use --backend casadi")


def fine_tune(problem: Any, weights: Mapping[str, Any], solver: Mapping[str, Any], log: Any) -> tuple[dict, Any, dict]:
    """Fine-tune pruned weights with the torch back-end; returns (info, weights, solver config)."""
    require()
    raise ValidationError("torch fine-tuning is pending the torch back-end's trainer API: prune without --resolve")
