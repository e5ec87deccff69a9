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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.analysis.blocks import (
    DEFAULT_LOSS_ATOL,
    DEFAULT_LOSS_RTOL,
    DEFAULT_TOL,
    BlockAnalysis,
    recommended_depth,
    relative,
    tail_to_head_ratio,
)
from ocp_resnet.errors import ValidationError, check_float, check_int

if TYPE_CHECKING:
    from ocp_resnet.torch.train import Trainer, TrainOptions


def is_conv_run(run: Any) -> bool:
    """Whether a :class:`~ocp_resnet.runs.Run` holds a conv ResNet-v2."""
    return run.kind == "conv"


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
        """First stage k whose validation accuracy reaches the final one (None without validation data)."""
        return None if self.val_stage_accuracy is None else first_reach(self.val_stage_accuracy)

    def to_dict(self) -> dict[str, Any]:
        """The analysis as a JSON-ready dict, with the reach blocks."""
        d = super().to_dict()
        d["reach_block"], d["val_reach_block"] = self.reach_block, self.val_reach_block
        return d

    def format(self) -> str:
        """A per-block table with training (and validation) stage numbers."""
        val_losses, val_accuracy = self.val_stage_losses, self.val_stage_accuracy
        val = val_accuracy is not None
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
            if val_losses is not None and val_accuracy is not None:
                row += f" {val_losses[k]:>11.4e} {val_accuracy[k]:>7.3f}"
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
    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.runs import Run
    from ocp_resnet.torch.conv import ConvSpec

    if isinstance(run, (str, os.PathLike)):
        run = Run(run)
    if not is_conv_run(run):
        raise ValidationError(f"{run.path} is not a conv run (a ConvNet trained with ocp_resnet.training)")
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

    from ocp_resnet.torch.conv import ResNetV2

    return ResNetV2(spec, dtype=dtype or torch.float64).load_weights(weights).eval()


# ------------------------------------------------------------------------------ analysis
def analyze_conv(spec: Any, objective: Any, weights: Mapping[str, Any], n_classes: int,
                 train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None = None,
                 tol: float = DEFAULT_TOL, loss_rtol: float = DEFAULT_LOSS_RTOL,
                 loss_atol: float = DEFAULT_LOSS_ATOL) -> ConvBlockAnalysis:
    """Analyse conv weights (float64, eval mode) on the training images and optional validation images."""
    from ocp_resnet.torch.evaluate import conv_evaluation

    tol = check_float("tol", tol, 0.0)
    check_float("loss_rtol", loss_rtol, 0.0)
    check_float("loss_atol", loss_atol, 0.0)
    model = _model(spec, weights)
    ev = conv_evaluation(model, train[0], train[1], objective, n_classes, gradient=False)
    vev = conv_evaluation(model, val[0], val[1], objective, n_classes, gradient=False) if val is not None else None
    van = conv_vanished(spec, ev.residual_norms, tol)
    cut = sorted(set(van) | set(spec.branchless))  # branch-free blocks are no reason to keep depth either
    return ConvBlockAnalysis(
        n_blocks=spec.n_blocks, tol=tol, objective=ev.objective, final_loss=ev.final_loss,
        stage_losses=list(ev.stage_losses), stage_accuracy=list(ev.stage_accuracy),
        block_norms=list(ev.block_norms), residual_norms=list(ev.residual_norms),
        rel_block_norms=relative(ev.block_norms), rel_residual_norms=relative(ev.residual_norms),
        vanished=van, recommended_depth=recommended_depth(ev.stage_losses, cut, loss_rtol, loss_atol),
        tail_to_head=tail_to_head_ratio(ev.residual_norms),
        branches=["conv" if spec.has_branch(k) else "none" for k in range(spec.n_blocks)],
        val_stage_losses=None if vev is None else list(vev.stage_losses),
        val_stage_accuracy=None if vev is None else list(vev.stage_accuracy),
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
    from ocp_resnet.torch.conv import ConvSpec

    cut = sorted({int(k) for k in blocks})
    bad = [k for k in cut if not 0 <= k < spec.n_blocks]
    if bad:
        raise ValidationError(f"blocks {bad} do not exist: the network has blocks 0..{spec.n_blocks - 1}")
    _model(spec, weights)  # checks names and shapes
    stage_of = [s for s, n in enumerate(spec.stage_blocks) for _ in range(n)]
    counts = list(spec.stage_blocks)
    origin: list[int] = []  # the old index of each kept block
    removed: list[int] = []
    proj_only: list[int] = []
    branchless: list[int] = []
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


def forward_times(models: Sequence[Any], images: np.ndarray, repeats: int = 20, batch: int = 512) -> list[float]:
    """Seconds of one eval-mode forward pass over ``images`` (no gradients) per model: passes of
    the models alternate (so drifting load on the machine hits all alike) and each model's best
    of ``repeats`` counts, as the least disturbed by other load."""
    import torch

    X = [torch.as_tensor(np.asarray(images), dtype=m.dtype, device=m.device) for m in models]
    best = [float("inf")] * len(models)
    with torch.no_grad():
        for r in range(repeats + 1):
            for j, m in enumerate(models):
                m.eval()
                t0 = time.perf_counter()
                for i in range(0, X[j].shape[0], batch):
                    m(X[j][i:i + batch])
                if r:  # the first pass warms up
                    best[j] = min(best[j], time.perf_counter() - t0)
    return best


def _max_change(a: Any, b: Any, images: np.ndarray, y: np.ndarray, objective: Any,
                chunk: int = 512) -> tuple[float, float, float]:
    """(max |logits_a − logits_b|, accuracy a, accuracy b) in eval mode over ``images``."""
    import torch

    from ocp_resnet.torch.loss import predictions

    X = torch.as_tensor(np.asarray(images), dtype=a.dtype)
    Y = torch.as_tensor(np.asarray(y, dtype=int))
    change, hits_a, hits_b = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, X.shape[0], chunk):
            za, zb, yb = a(X[i:i + chunk]), b(X[i:i + chunk]), Y[i:i + chunk]
            change = max(change, float((za - zb).abs().max()))
            hits_a += int((predictions(objective, za.T) == yb).sum())
            hits_b += int((predictions(objective, zb.T) == yb).sum())
    n = max(X.shape[0], 1)
    return change, hits_a / n, hits_b / n


# ------------------------------------------------------------------------------ conv run directories
def write_conv_run(out: Any, *, config: Mapping[str, Any], spec: Any, objective: Any, weights: Mapping[str, Any],
                   n_classes: int, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None,
                   status: Any = None, trainer: Trainer | None = None, extra_metrics: Mapping[str, Any] | None = None,
                   extra_files: Any = None, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate conv weights and write their run directory with
    :func:`ocp_resnet.training.write_training_run` (``train --arch conv``'s format); returns the metrics.

    ``extra_files`` is a mapping of further files, or a function of the metrics returning one.

    config.json, solution.npz, data.npz (training split, images flattened), metrics.json
    (evaluated in float64, eval mode, with ``val_accuracy``/``val_loss`` of ``val``), stats.json,
    model.pt, history.csv (empty without a ``trainer``) and val.npz.
    """
    import torch

    from ocp_resnet.data.arrays import Dataset
    from ocp_resnet.torch.evaluate import conv_evaluation, training_metrics, training_status
    from ocp_resnet.training import write_training_run

    model = _model(spec, weights)
    ev = conv_evaluation(model, train[0], train[1], objective, n_classes)
    vev = conv_evaluation(model, val[0], val[1], objective, n_classes, gradient=False) if val is not None else None
    if status is None:
        status = training_status(ev, getattr(trainer, "stopped_", None))
    hist = list(getattr(trainer, "history_", []) or [])
    metrics = training_metrics(
        ev, status, iterations=int(getattr(trainer, "steps_", 0) or 0),
        solve_time_s=float(getattr(trainer, "train_time_s_", 0.0) or 0.0), n_variables=n_parameters(model),
        n_constraints=0, arch="conv", val_accuracy=None if vev is None else vev.stage_accuracy[-1],
        val_loss=None if vev is None else vev.stage_losses[-1], epochs=len(hist), **dict(extra_metrics or {}))
    flat = lambda a: np.asarray(a, float).reshape(len(a), -1)  # noqa: E731
    name = str(config.get("data", {}).get("dataset", "data"))
    train_ds = Dataset(flat(train[0]), np.asarray(train[1], int), n_classes, name)
    val_ds = None if val is None else Dataset(flat(val[0]), np.asarray(val[1], int), n_classes, name)
    state = {model._private(k): torch.as_tensor(v) for k, v in weights.items()}
    files = (extra_files(metrics) if callable(extra_files) else extra_files) or {}
    write_training_run(out, config=config, spec=spec, objective=objective, weights=weights, state_dict=state,
                       metrics=metrics, train=train_ds, val=val_ds, trainer=trainer, extra_files=files,
                       overwrite=overwrite)
    return metrics


def train_options(solver: Mapping[str, Any], **override: Any) -> Any:
    """TrainOptions from a run's ``config['solver']`` (what train recorded), with overrides."""
    from ocp_resnet.solvers import TorchSolver, make_solver

    trainer = make_solver("torch", **{k: v for k, v in solver.items() if k != "backend"})
    assert isinstance(trainer, TorchSolver)
    return replace(trainer.options, **override)


# ------------------------------------------------------------------------------ prune
@dataclass
class ConvPruneReport:
    """What pruning a conv run did: blocks, output change, accuracies, size and speed."""

    tol: float
    blocks_before: int
    blocks_after: int
    removed: list[int]
    projection_only: list[int]
    forced: list[int]
    max_output_change_train: float
    max_output_change_val: float | None
    train_accuracy_before: float
    train_accuracy_after: float
    val_accuracy_before: float | None
    val_accuracy_after: float | None
    parameters_before: int
    parameters_after: int
    forward_time_before_s: float
    forward_time_after_s: float
    forward_images: int
    finetune: dict[str, Any] | None = None
    out: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``prune.json``)."""
        return asdict(self)

    def format(self) -> str:
        """The report as text lines."""
        def acc(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        speed = self.forward_time_before_s / self.forward_time_after_s if self.forward_time_after_s > 0 else float("nan")
        lines = [
            f"blocks_before {self.blocks_before}  blocks_after {self.blocks_after}  (removed {self.removed or 'none'}"
            f"{f'; reduced to projection {self.projection_only}' if self.projection_only else ''}"
            f"{f'; forced {self.forced}' if self.forced else ''})",
            f"max output change: train {self.max_output_change_train:.3e}  val "
            + ("n/a" if self.max_output_change_val is None else f"{self.max_output_change_val:.3e}"),
            f"train accuracy {self.train_accuracy_before:.4f} -> {self.train_accuracy_after:.4f}   "
            f"val accuracy {acc(self.val_accuracy_before)} -> {acc(self.val_accuracy_after)}",
            f"parameters {self.parameters_before} -> {self.parameters_after} "
            f"({1 - self.parameters_after / max(self.parameters_before, 1):.1%} fewer)",
            f"forward time ({self.forward_images} images, float32, eval, best of 20 alternating passes) "
            f"{self.forward_time_before_s * 1e3:.2f} ms -> {self.forward_time_after_s * 1e3:.2f} ms ({speed:.2f}x)",
        ]
        if self.finetune:
            f = self.finetune
            lines.append(f"fine-tuned {f['epochs']} epochs ({f['optimizer']}): status {f['status']}, train accuracy "
                         f"{f['train_accuracy']:.4f}, val accuracy {acc(f['val_accuracy'])}, {f['time_s']:.2f}s")
        lines += [f"note: {n}" for n in self.notes]
        if self.out:
            lines.append(f"run directory: {self.out}")
        return "\n".join(lines)


def prune_conv_run(run_dir: Any, tol: float = DEFAULT_TOL, blocks: Iterable[int] | None = None, force: bool = False,
                   finetune: int = 0, lr: float | None = None, out: Any = None, overwrite: bool = False,
                   write: bool = True, log: Any = None) -> tuple[ConvPruneReport, PrunedConvNetwork]:
    """Prune a conv run's vanished blocks (or ``blocks``; non-vanished ones need ``force``),
    compare outputs, optionally fine-tune ``finetune`` epochs (the run's optimizer settings,
    learning rate ``lr`` if given), and write a conv run directory."""
    from ocp_resnet.runs import check_target

    run, d = load_conv_run(run_dir)
    finetune = check_int("finetune", finetune, 0)
    if write:
        if out is None:
            out = Path(str(run.path).rstrip("/") + "-pruned")
        check_target(out, overwrite)
    an = analyze_conv(d.spec, d.objective, run.weights, d.n_classes, d.train, d.val, tol)
    cut, forced = _conv_cut(d.spec, an, blocks, force)
    net = prune_conv_network(d.spec, d.objective, run.weights, cut)
    report = _conv_report(d, run.weights, net, an, cut, forced)
    solver = dict(run.config.get("solver", {}))
    weights, trainer = net.weights, None  # trainer: set by a fine-tuning
    if finetune:
        opts = train_options(solver, epochs=finetune, progress=False, **({} if lr is None else {"lr": lr}))
        weights, trainer = _finetune(net, d, opts, log)
        solver.update(opts.to_dict())
    if write:
        report.out = str(out)
        _write_pruned_conv(out, run, d, net, an, forced, finetune, solver, weights, trainer, report, overwrite)
    elif trainer is not None:  # fine-tuned, not written
        from ocp_resnet.torch.evaluate import conv_evaluation

        mt = _model(net.spec, weights)
        ev = conv_evaluation(mt, *d.train, d.objective, d.n_classes, gradient=False)
        vev = conv_evaluation(mt, *d.val, d.objective, d.n_classes, gradient=False) if d.val is not None else None
        report.finetune = _finetune_info(finetune, solver.get("optimizer"), "not written", ev.stage_accuracy[-1],
                                         None if vev is None else vev.stage_accuracy[-1], trainer.train_time_s_)
    return report, replace(net, weights=dict(weights))


def _conv_cut(spec: Any, an: ConvBlockAnalysis, blocks: Iterable[int] | None,
              force: bool) -> tuple[list[int], list[int]]:
    """(blocks to prune, those of them that have not vanished); the latter only with ``force``."""
    cut = an.vanished if blocks is None else sorted({int(k) for k in blocks})
    bad = [k for k in cut if not 0 <= k < spec.n_blocks]
    if bad:
        raise ValidationError(f"blocks {bad} do not exist: the network has blocks 0..{spec.n_blocks - 1}")
    forced = [k for k in cut if k not in an.vanished and spec.has_branch(k)]
    if forced and not force:
        rel = ", ".join(f"{k} ({an.rel_residual_norms[k]:.2e})" for k in forced)
        raise ValidationError(
            f"blocks {rel} have not vanished (relative RMS residual output > tol {an.tol:g}): pruning them changes the "
            "network; pass force=True to prune them anyway (with finetune=EPOCHS to retrain), or prune only vanished blocks")
    return cut, forced


def _conv_report(d: ConvRunData, weights: Mapping[str, Any], net: PrunedConvNetwork, an: ConvBlockAnalysis,
                 cut: list[int], forced: list[int]) -> ConvPruneReport:
    """Output change, accuracies, size and forward time of the pruned conv net against the original."""
    import torch

    m0, m1 = _model(d.spec, weights), _model(net.spec, net.weights)
    ch_tr, acc0, acc1 = _max_change(m0, m1, *d.train, d.objective)
    ch_va = va0 = va1 = None
    if d.val is not None:
        ch_va, va0, va1 = _max_change(m0, m1, *d.val, d.objective)
    bench = d.val[0] if d.val is not None else d.train[0]
    f0, f1 = forward_times([_model(d.spec, weights, torch.float32), _model(net.spec, net.weights, torch.float32)],
                           bench)
    report = ConvPruneReport(
        tol=an.tol, blocks_before=d.spec.n_blocks, blocks_after=net.spec.n_blocks, removed=net.removed,
        projection_only=net.projection_only, forced=forced, max_output_change_train=ch_tr,
        max_output_change_val=ch_va, train_accuracy_before=acc0, train_accuracy_after=acc1,
        val_accuracy_before=va0, val_accuracy_after=va1, parameters_before=n_parameters(m0),
        parameters_after=n_parameters(m1), forward_time_before_s=f0, forward_time_after_s=f1,
        forward_images=len(bench))
    if not cut:
        report.notes.append(f"no block has vanished at tol {an.tol:g}: the pruned network is the original one "
                            f"(see the analysis for the relative residual norms, or use tol > {an.tol:g})")
    return report


def _finetune(net: PrunedConvNetwork, d: ConvRunData, opts: TrainOptions,
              log: Any) -> tuple[dict[str, np.ndarray], Trainer]:
    """Train the pruned conv net with ``opts``; returns (weights, trainer)."""
    from ocp_resnet.torch import Trainer
    from ocp_resnet.torch.train import resolve_dtype

    model = _model(net.spec, net.weights, resolve_dtype(opts.dtype))
    trainer = Trainer(net.objective, d.n_classes, opts, log=log).fit(model, *d.train, val=d.val)
    return model.weights(), trainer


def _write_pruned_conv(out: Any, run: Any, d: ConvRunData, net: PrunedConvNetwork, an: ConvBlockAnalysis,
                       forced: list[int], finetune: int, solver: Mapping[str, Any], weights: Mapping[str, Any],
                       trainer: Trainer | None, report: ConvPruneReport, overwrite: bool) -> None:
    """The pruned conv run directory, with ``prune.json`` (the report, fine-tuning included)."""
    config = {**run.config, "command": "prune", "solver": solver, "pruned_from": str(run.path),
              "pruning": {"tol": an.tol, "removed": net.removed, "projection_only": net.projection_only,
                          "origin": net.origin, "forced": forced, "finetune_epochs": finetune}}

    def files(metrics: Mapping[str, Any]) -> dict[str, Any]:
        if finetune:
            report.finetune = _finetune_info(finetune, solver.get("optimizer"), metrics["status"],
                                             metrics["train_accuracy"], metrics["val_accuracy"], metrics["solve_time_s"])
        return {"prune.json": report.to_dict()}

    write_conv_run(
        out, config=config, spec=net.spec, objective=net.objective, weights=weights, n_classes=d.n_classes,
        train=d.train, val=d.val, trainer=trainer,
        extra_metrics={"pruned": True, "pruned_from": str(run.path), "method": solver.get("optimizer")},
        extra_files=files, overwrite=overwrite)


def _finetune_info(epochs: int, optimizer: str | None, status: str, train_acc: float, val_acc: float | None,
                   time_s: float) -> dict[str, Any]:
    """The ``finetune`` entry of the conv prune report."""
    return {"epochs": epochs, "optimizer": optimizer, "status": status, "train_accuracy": train_acc,
            "val_accuracy": val_acc, "time_s": time_s}
