"""Initial weights of a solve, whatever the caller hands in (one place for every solver)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_int
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.solution import Solution


def initial_weights(problem: Problem, init: Any = "random", seed: int = 0) -> np.ndarray:
    """Flat initial weights: ``"random"`` (seeded), ``"zeros"``, a flat array, a name → array
    mapping, a :class:`Solution`, or a path to a ``solution.npz`` / run directory (warm start)."""
    w = _initial_weights(problem, init, seed)
    if not np.all(np.isfinite(w)):
        raise ValidationError("the initial weights contain NaN or inf: warm-start from a finite run, or use "
                              "init='random' or init='zeros'")
    return w


def _initial_weights(problem: Problem, init: Any, seed: int) -> np.ndarray:
    spec = problem.spec
    seed = check_int("seed", seed, 0)
    if isinstance(init, str) and init in ("random", "zeros"):
        return spec.flatten(spec.init_params(init, seed))
    if isinstance(init, Solution):
        init = init.w
    if isinstance(init, Mapping):
        return spec.flatten(init)
    if isinstance(init, np.ndarray):
        w = np.asarray(init, dtype=float).ravel()
        if w.size != spec.n_params:
            raise ValidationError(f"initial weights have {w.size} entries, this spec needs {spec.n_params}")
        return w
    if isinstance(init, (str,)) or hasattr(init, "__fspath__"):
        from pathlib import Path

        from ocp_resnet.files import load_weights

        if not Path(init).exists():
            raise ValidationError(
                f"unknown init {str(init)!r}: use random, zeros, or the path of a run directory / solution.npz"
            )

        _refuse_conv_run(Path(init))
        weights = load_weights(init)
        extra = sorted(set(weights) - set(spec.param_shapes()))
        if extra:
            raise ValidationError(
                f"{init}: weights {', '.join(extra[:5])} are not in this architecture: the weights do not match "
                f"this spec ({spec.describe()}); check these arguments against the weights file"
            )
        return spec.flatten(weights)
    raise ValidationError(f"init must be 'random', 'zeros', an array or a path, got {type(init).__name__}")


def _refuse_conv_run(path: Any) -> None:
    """A conv ResNet-v2 run's weights (conv kernels, batch norms) have no counterpart in an MLP
    problem: say so, instead of listing weight names that do not match."""
    from ocp_resnet.files import config_kind, read_json

    config = (path if path.is_dir() else path.parent) / "config.json"
    if config.exists() and config_kind(read_json(config)) == "conv":
        raise ValidationError(
            f"{path} is a conv ResNet-v2 run: its weights cannot warm-start the MLP solver (IPOPT solves MLP "
            "ResNets only); warm-start from an MLP run (a solve, or an MLP trained with PyTorch), or use "
            "init='random'")
