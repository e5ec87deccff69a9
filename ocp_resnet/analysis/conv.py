"""Vanishing blocks of conv ResNet-v2 runs (``train --arch conv``): analysis and pruning.

The definitions are those of :mod:`.blocks` with one change: a conv block has *vanished*
when its RMS residual output r_k = sqrt(mean_i ‖F_k(x_k^i)‖²) over the training data, in
eval mode, relative to the largest block's, is ≤ ``tol``. The weight norm is no criterion
here: batch norm inside the branch can silence a branch whose conv weights are not small
(and rescale one whose weights are). The tail-to-head ratio is taken of the residual norms
for the same reason. The recommended depth uses the training stage losses, as for MLP runs;
stage losses and accuracies are also reported on the run's validation split (``val.npz``).

Pruning (:func:`prune_conv_network`): a vanished identity-skip block is dropped; a vanished
projection block keeps its 1x1 skip S_k and loses its branch (``ConvSpec.branchless``).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ValidationError, check_float, check_int
from .blocks import DEFAULT_LOSS_ATOL, DEFAULT_LOSS_RTOL, DEFAULT_TOL, BlockAnalysis, recommended_depth, relative, \
    tail_to_head_ratio


def is_conv_run(run: Any) -> bool:
    """Whether a :class:`~ocp_resnet.runs.Run` holds a conv ResNet-v2."""
    return run.config.get("architecture", {}).get("kind") == "conv"


@dataclass
class ConvBlockAnalysis(BlockAnalysis):
    """:class:`BlockAnalysis` of a conv run, plus the validation split's stage numbers."""

    val_stage_losses: list[float] | None = None
    val_stage_accuracy: list[float] | None = None
    criterion: str = "residual"
    n_parameters: int = 0

    @property
    def reach_block(self) -> int:
        """First stage k whose training accuracy reaches the final accuracy."""
        return first_reach(self.stage_accuracy)

    @property
    def val_reach_block(self) -> int | None:
        return None if self.val_stage_accuracy is None else first_reach(self.val_stage_accuracy)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["reach_block"], d["val_reach_block"] = self.reach_block, self.val_reach_block
        return d

    def format(self) -> str:
        val = self.val_stage_accuracy is not None
        head = (f"{'k':>3} {'|w_k|':>10} {'RMS|F_k|':>10} {'rel':>9} {'loss':>11} {'acc':>6}"
                + (f" {'val loss':>11} {'val acc':>7}" if val else ""))
        lines, van = [head], set(self.vanished)
        for k in range(self.n_blocks + 1):
            row = f"{k:>3} "
            if k < self.n_blocks:
                row += f"{self.block_norms[k]:>10.3e} {self.residual_norms[k]:>10.3e} {self.rel_residual_norms[k]:>9.2e} "
            else:
                row += f"{'':>10} {'':>10} {'':>9} "
            row += f"{self.stage_losses[k]:>11.4e} {self.stage_accuracy[k]:>6.3f}"
            if val:
                row += f" {self.val_stage_losses[k]:>11.4e} {self.val_stage_accuracy[k]:>7.3f}"
            if k == self.n_blocks:
                row += "  (final)"
            elif self.branches[k] == "none":
                row += "  projection only"
            elif k in van:
                row += "  vanished"
            lines.append(row)
        lines.append(
            f"vanished blocks (RMS residual output relative to the largest <= {self.tol:g}): "
            f"{', '.join(map(str, self.vanished)) if self.vanished else 'none'} ({self.n_vanished} of {self.n_blocks})"
        )
        lines.append(
            f"recommended depth: {self.recommended_depth} (stage loss {self.stage_losses[self.recommended_depth]:.6g} "
            f"vs final {self.final_loss:.6g}); tail-to-head residual ratio {self.tail_to_head:.3e}"
        )
        reach = f"stage accuracy first reaches the final one at stage {self.reach_block} (train)"
        if val:
            reach += f", {self.val_reach_block} (val)"
        lines.append(reach + f"; {self.n_parameters} parameters")
        return "\n".join(lines)


def first_reach(stage_accuracy: Sequence[float]) -> int:
    """First k with stage accuracy ≥ the final one (up to float noise)."""
    final = float(stage_accuracy[-1])
    return next(k for k, a in enumerate(stage_accuracy) if float(a) >= final - 1e-12)


def conv_vanished(spec: Any, residual_norms: Sequence[float], tol: float = DEFAULT_TOL) -> list[int]:
    """Blocks with a branch whose relative RMS residual output is ≤ ``tol``."""
    rel = relative(residual_norms)
    return [k for k in range(spec.n_blocks) if spec.has_branch(k) and rel[k] <= tol]


# ------------------------------------------------------------------------------ loading
@dataclass
class ConvRunData:
    """What a conv run directory holds, ready for torch: spec, objective, images and labels."""

    spec: Any
    objective: Any
    n_classes: int
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None


def load_conv_run(run: Any) -> tuple[Any, ConvRunData]:
    """(Run, ConvRunData) of a conv run directory (path or Run)."""
    from ..objective import ObjectiveSpec
    from ..runs import Run
    from ..torch.conv import ConvSpec

    if isinstance(run, (str, os.PathLike)):
        run = Run(run)
    if not is_conv_run(run):
        raise ValidationError(f"{run.path} is not a conv run (train --arch conv)")
    spec = ConvSpec.from_dict(run.config["architecture"])
    obj = ObjectiveSpec.from_dict(run.config["objective"])
    shape = (spec.in_channels, *spec.image_size)
    data = run.data()
    val = None
    f = run.path / "val.npz"
    if f.exists():
        try:
            with np.load(f, allow_pickle=False) as z:
                val = (np.asarray(z["X"], float).reshape(-1, *shape), np.asarray(z["y"], int))
        except Exception as exc:
            raise ValidationError(f"{f}: cannot read the validation data ({exc}); the file is corrupt") from None
        if len(val[1]) == 0:
            val = None
    return run, ConvRunData(spec, obj, data.n_classes, (data.X.reshape(-1, *shape), data.y), val)


def _model(spec: Any, weights: Mapping[str, Any], dtype: Any = None) -> Any:
    import torch

    from ..torch.conv import ResNetV2

    return ResNetV2(spec, dtype=dtype or torch.float64).load_weights(weights).eval()


# ------------------------------------------------------------------------------ analysis
def analyze_conv(spec: Any, objective: Any, weights: Mapping[str, Any], n_classes: int,
                 train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None = None,
                 tol: float = DEFAULT_TOL, loss_rtol: float = DEFAULT_LOSS_RTOL,
                 loss_atol: float = DEFAULT_LOSS_ATOL) -> ConvBlockAnalysis:
    """Analyse conv weights (float64, eval mode) on the training images and optional validation images."""
    from ..torch.evaluate import conv_evaluation

    tol = check_float("tol", tol, 0.0)
    check_float("loss_rtol", loss_rtol, 0.0)
    check_float("loss_atol", loss_atol, 0.0)
    model = _model(spec, weights)
    ev = conv_evaluation(model, train[0], train[1], objective, n_classes, gradient=False)
    vev = conv_evaluation(model, val[0], val[1], objective, n_classes, gradient=False) if val is not None else None
    van = conv_vanished(spec, ev["residual_norms"], tol)
    cut = sorted(set(van) | set(spec.branchless))  # branch-free blocks are no reason to keep depth either
    return ConvBlockAnalysis(
        n_blocks=spec.n_blocks, tol=tol, objective=ev["objective"], final_loss=ev["final_loss"],
        stage_losses=list(ev["stage_losses"]), stage_accuracy=list(ev["stage_accuracy"]),
        block_norms=list(ev["block_norms"]), residual_norms=list(ev["residual_norms"]),
        rel_block_norms=relative(ev["block_norms"]), rel_residual_norms=relative(ev["residual_norms"]),
        vanished=van, recommended_depth=recommended_depth(ev["stage_losses"], cut, loss_rtol, loss_atol),
        tail_to_head=tail_to_head_ratio(ev["residual_norms"]),
        branches=["conv" if spec.has_branch(k) else "none" for k in range(spec.n_blocks)],
        val_stage_losses=None if vev is None else list(vev["stage_losses"]),
        val_stage_accuracy=None if vev is None else list(vev["stage_accuracy"]),
        n_parameters=n_parameters(model),
    )


def n_parameters(model: Any) -> int:
    """Trainable parameters of a torch model."""
    return int(sum(p.numel() for p in model.parameters()))


def analyze_conv_run(run: Any, tol: float = DEFAULT_TOL, loss_rtol: float = DEFAULT_LOSS_RTOL,
                     loss_atol: float = DEFAULT_LOSS_ATOL) -> ConvBlockAnalysis:
    """Analyse a conv run directory (path or Run)."""
    run, d = load_conv_run(run)
    return analyze_conv(d.spec, d.objective, run.weights, d.n_classes, d.train, d.val, tol, loss_rtol, loss_atol)


# ------------------------------------------------------------------------------ pruning
@dataclass
class PrunedConvNetwork:
    """A smaller conv spec + objective + weights, and where its blocks came from."""

    spec: Any
    objective: Any
    weights: dict[str, np.ndarray]
    removed: list[int]
    projection_only: list[int]
    origin: list[int]  # original index of every block of the pruned network


def prune_conv_network(spec: Any, objective: Any, weights: Mapping[str, Any], blocks: Iterable[int]) -> PrunedConvNetwork:
    """Remove the residual branches of ``blocks`` (original indices) from a conv net."""
    from ..torch.conv import ConvSpec

    cut = sorted({int(k) for k in blocks})
    bad = [k for k in cut if not 0 <= k < spec.n_blocks]
    if bad:
        raise ValidationError(f"blocks {bad} do not exist: the network has blocks 0..{spec.n_blocks - 1}")
    _model(spec, weights)  # checks names and shapes
    stage_of = [s for s, n in enumerate(spec.stage_blocks) for _ in range(n)]
    counts = list(spec.stage_blocks)
    origin, removed, proj_only, branchless = [], [], [], []
    for k in range(spec.n_blocks):
        drop = k in cut or not spec.has_branch(k)
        if drop and not spec.has_projection(k):
            removed.append(k)
            counts[stage_of[k]] -= 1
            continue
        if drop:
            if spec.has_branch(k):
                proj_only.append(k)
            branchless.append(len(origin))
        origin.append(k)
    new_spec = replace(spec, stage_blocks=tuple(counts), branchless=tuple(branchless))
    new_spec = ConvSpec.from_dict(new_spec.to_dict())  # validated
    new_w: dict[str, np.ndarray] = {}
    for name, a in weights.items():
        if name.startswith("block"):
            idx, rest = name[len("block"):].split(".", 1)
            k = int(idx)
            if k not in origin or (not rest.startswith("S.") and origin.index(k) in branchless):
                continue
            name = f"block{origin.index(k)}.{rest}"
        new_w[name] = np.array(a, dtype=float, copy=True)
    gamma = objective.gamma
    if isinstance(gamma, tuple):
        gamma = tuple(gamma[k] for k in origin)
    return PrunedConvNetwork(new_spec, replace(objective, gamma=gamma), new_w, removed, proj_only, origin)


def forward_time(model: Any, images: np.ndarray, repeats: int = 5, batch: int = 512) -> float:
    """Median seconds of one eval-mode forward pass over ``images`` (no gradients)."""
    import torch

    X = torch.as_tensor(np.asarray(images), dtype=model.dtype, device=model.device)
    model.eval()
    times = []
    with torch.no_grad():
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            for i in range(0, X.shape[0], batch):
                model(X[i:i + batch])
            if r:  # the first pass warms up
                times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _max_change(a: Any, b: Any, images: np.ndarray, y: np.ndarray, objective: Any) -> tuple[float, float, float]:
    """(max |logits_a − logits_b|, accuracy a, accuracy b) in eval mode over ``images``."""
    import torch

    from ..torch.loss import predictions

    X = torch.as_tensor(np.asarray(images), dtype=a.dtype)
    Y = torch.as_tensor(np.asarray(y, dtype=int))
    with torch.no_grad():
        za, zb = a(X), b(X)
        acc_a = float((predictions(objective, za.T) == Y).double().mean())
        acc_b = float((predictions(objective, zb.T) == Y).double().mean())
        return float((za - zb).abs().max()) if za.numel() else 0.0, acc_a, acc_b
