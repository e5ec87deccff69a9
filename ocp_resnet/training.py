"""One PyTorch training run, end to end: data, network, :class:`~ocp_resnet.torch.Trainer`, evaluation,
run directory. ``ocp-resnet train`` is this module's :func:`train_run` behind flags.

::

    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.torch import TrainOptions
    from ocp_resnet.training import DataSource, MLPNet, TrainConfig, train_run

    result = train_run(TrainConfig(DataSource("moons", n_samples=60), MLPNet(blocks=3),
                                   ObjectiveSpec(loss="mse", gamma=0.1), TrainOptions(epochs=15), out="runs/moons"))
    result.status, result.metrics["objective"], result.out

The run directory holds the files of a ``solve`` run (config.json, solution.npz, data.npz with the
training split, metrics.json, stats.json) plus ``model.pt`` (the torch state_dict), ``history.csv``
(per-epoch numbers), ``val.npz`` (the validation split, if any) and, with checkpoints,
``checkpoint.pt``. metrics.json is the evaluation of the trained weights in float64
(:func:`ocp_resnet.torch.evaluate.mlp_evaluation` / ``conv_evaluation``); the validation numbers
are those of the last epoch.

Under ``torchrun`` the ranks train together (DistributedDataParallel,
:mod:`ocp_resnet.torch.distributed`); rank 0 alone evaluates and writes.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.data.arrays import Dataset
from ocp_resnet.errors import ValidationError
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.torch import TrainOptions
    from ocp_resnet.torch.train import Trainer

ARCHS = ("mlp", "conv")


@dataclass(frozen=True)
class DataSource:
    """Where the data come from: the arguments of :func:`ocp_resnet.data.datasets.load_dataset`."""

    dataset: str = "spirals"
    n_samples: int | None = None
    noise: float | None = None
    dim: int | None = None
    standardize: bool = False
    seed: int = 0

    def load(self) -> Dataset:
        """The data set (validated)."""
        from ocp_resnet.data.datasets import load_dataset

        return load_dataset(self.dataset, n_samples=self.n_samples, noise=self.noise, seed=self.seed,
                            dim=self.dim, standardize=self.standardize)

    def to_dict(self) -> dict[str, Any]:
        """The ``data`` section of config.json."""
        return {"dataset": self.dataset, "n_samples": self.n_samples, "noise": self.noise, "dim": self.dim,
                "standardize": bool(self.standardize), "seed": self.seed}


@dataclass(frozen=True)
class MLPNet:
    """The MLP ResNet (twin of the CasADi model): the arguments of :meth:`ArchSpec.uniform`."""

    blocks: int = 10
    width: int | list[int] = 2
    branch: str = "single"
    hidden: int | None = None
    stem: str = "pad"
    activation: str = "tanh"
    step: float = 1.0
    arch = "mlp"

    def spec(self, data: Dataset, objective: ObjectiveSpec) -> Any:
        """The validated :class:`~ocp_resnet.model.architecture.ArchSpec` for these data."""
        from ocp_resnet.model.architecture import ArchSpec
        from ocp_resnet.model.problem import Problem

        spec = ArchSpec.uniform(data.n_features, objective.n_outputs(data.n_classes), self.blocks, self.width,
                                self.branch, self.hidden, self.stem, self.activation, self.step)
        Problem(spec, objective, data)  # checks spec, objective and data together, as a solve does
        return spec


@dataclass(frozen=True)
class ConvNet:
    """A pre-activation conv ResNet-v2 for image data (:class:`~ocp_resnet.torch.ConvSpec`)."""

    channels: tuple[int, ...] = (8, 16, 32)
    stage_blocks: tuple[int, ...] = (1, 1, 1)
    activation: str = "relu"
    norm: str = "batch"
    arch = "conv"

    def spec(self, data: Dataset, objective: ObjectiveSpec) -> Any:
        """The validated :class:`~ocp_resnet.torch.ConvSpec` for these images."""
        from ocp_resnet.torch import ConvSpec, images_of

        imgs = images_of(data)
        spec = ConvSpec(imgs.shape[1], imgs.shape[2:], objective.n_outputs(data.n_classes),
                        channels=tuple(self.channels), stage_blocks=tuple(self.stage_blocks),
                        activation=self.activation, norm=self.norm)
        objective.stage_weights(spec.n_blocks)  # checks a γ list against N
        return spec


@dataclass
class TrainConfig:
    """One training run: data, network, objective, optimizer options and where the run goes.

    ``out=None`` writes ``runs/<timestamp>-<dataset>-train-<arch>`` (or, with ``resume``, into the
    resumed run directory). ``checkpoint_every`` E > 0 keeps ``checkpoint.pt`` every E epochs;
    ``resume`` continues the checkpoint of a run directory (same settings; ``epochs`` may grow).
    ``threads`` sets torch's CPU threads (None: leave them).
    """

    data: DataSource
    network: MLPNet | ConvNet
    objective: ObjectiveSpec
    options: TrainOptions
    val_fraction: float = 0.2
    checkpoint_every: int = 0
    resume: str | os.PathLike | None = None
    out: str | os.PathLike | None = None
    overwrite: bool = False
    threads: int | None = None
    #: the command line recorded in config.json
    argv: list[str] = field(default_factory=lambda: list(sys.argv))

    @property
    def arch(self) -> str:
        """``"mlp"`` or ``"conv"``, after the network."""
        return self.network.arch

    def to_dict(self) -> dict[str, Any]:
        """The training settings as JSON values: data, network, objective, options, val_fraction,
        checkpoint_every, threads. Where the run goes (out, resume, overwrite, argv) is left out, so
        two configs that train the same run compare equal."""
        record = {"arch": self.arch, "data": self.data.to_dict(), "network": asdict(self.network),
                  "objective": self.objective.to_dict(), "options": self.options.to_dict(),
                  "val_fraction": self.val_fraction, "checkpoint_every": self.checkpoint_every,
                  "threads": self.threads}
        return json.loads(json.dumps(record, default=str))  # tuples as lists, as a stored record reads back


@dataclass
class TrainResult:
    """What :func:`train_run` did. On a torchrun rank other than 0, ``metrics`` and ``out`` are
    ``None`` and ``status`` is the trainer's stop reason (``MAX_ITER`` when it ran all epochs)."""

    status: Status
    metrics: dict[str, Any] | None
    out: Path | None
    steps: int
    train_time_s: float


@dataclass
class _Setup:
    """The built pieces of a run: split data, model, inputs of the trainer."""

    spec: Any
    data: Dataset
    train: Dataset  # the training split, as data.npz stores it (conv: images flattened)
    val: Dataset | None
    inputs: np.ndarray  # what the model takes, all samples (conv: images)
    tr_idx: np.ndarray
    va_idx: np.ndarray
    model: Any


def train_run(config: TrainConfig, *, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train ``config`` with :class:`~ocp_resnet.torch.Trainer`, evaluate and write its run directory.

    Joins the torchrun process group when started by torchrun (and leaves it at the end).
    ``log`` receives one line describing the run before training (rank 0 only).
    """
    from ocp_resnet.torch import distributed

    ctx = distributed.init_from_env(config.options.device)  # one process unless started by torchrun
    try:
        return _train(config, ctx, log)
    finally:
        distributed.shutdown()


def _train(config: TrainConfig, ctx: Any, log: Callable[[str], None] | None) -> TrainResult:
    import torch

    from ocp_resnet.errors import check_int
    from ocp_resnet.torch import Trainer, distributed

    opts = config.options
    if config.threads is not None:
        if config.threads < 1:
            raise ValidationError(f"threads must be >= 1, got {config.threads}")
        torch.set_num_threads(config.threads)
    device = ctx.device(opts.device)
    check_int("checkpoint_every", config.checkpoint_every, 0)
    resume = distributed.load_checkpoint(config.resume) if config.resume else None
    out = _target(config, resume is not None)
    ds = config.data.load()
    s = _setup(config, ds)
    if log is not None and ctx.is_main:
        log(_header(config, s, ctx, device))
    same = _checkpoint_config(config, s.spec)
    _check_resume(config, resume, same)
    ckpt_path = out / distributed.CHECKPOINT
    every = config.checkpoint_every or (int(resume.get("checkpoint_every", 0)) if resume is not None else 0)

    def save(state: dict) -> None:
        if ctx.is_main:
            distributed.save_checkpoint(ckpt_path, {**state, "config": same, "checkpoint_every": every})

    val = (s.inputs[s.va_idx], ds.y[s.va_idx]) if len(s.va_idx) else None
    trainer = Trainer(config.objective, ds.n_classes, opts).fit(
        s.model, s.inputs[s.tr_idx], ds.y[s.tr_idx], val=val, checkpoint=save if every else None,
        checkpoint_every=every, resume=resume)
    if not ctx.is_main:  # rank 0 evaluates and writes the run directory
        status = trainer.stopped_ if trainer.stopped_ is not None else Status.MAX_ITER
        return TrainResult(status, None, None, trainer.steps_, trainer.train_time_s_)
    # the directory is ours when it holds only this training's checkpoint, or is the resumed run
    ours = resume is not None and config.resume is not None and out == Path(config.resume) or (
        ckpt_path.exists() and sorted(p.name for p in out.iterdir()) == [distributed.CHECKPOINT])
    status, metrics = _evaluate(config, s, trainer, device)
    _write(out, config, s, trainer, metrics, ctx, device, ckpt_path, overwrite=config.overwrite or ours)
    return TrainResult(status, metrics, out, trainer.steps_, trainer.train_time_s_)


def _target(config: TrainConfig, resuming: bool) -> Path:
    """The run directory to write, checked before any work so a clash costs nothing."""
    from ocp_resnet.runs import check_target, default_run_dir

    if resuming and config.out is None and config.resume is not None:
        return Path(config.resume)  # the same run, continued
    if config.out is None:
        return default_run_dir(f"{config.data.dataset.replace('/', '_')}-train-{config.arch}")
    return check_target(config.out, config.overwrite)


def _subset(ds: Dataset, idx: np.ndarray, X: np.ndarray | None = None) -> Dataset:
    return Dataset((ds.X if X is None else X)[idx], ds.y[idx], ds.n_classes, ds.name)


def _setup(config: TrainConfig, ds: Dataset) -> _Setup:
    from ocp_resnet.torch import ResNetMLP, ResNetV2, split

    spec = config.network.spec(ds, config.objective)
    seed = config.data.seed
    tr_idx, va_idx = split(ds.n_samples, config.val_fraction, seed)
    model: ResNetMLP | ResNetV2
    if config.arch == "mlp":
        X, inputs, model = None, ds.X, ResNetMLP(spec, init="random", seed=seed)
    else:
        from ocp_resnet.torch import images_of

        inputs = images_of(ds)
        X, model = inputs.reshape(len(inputs), -1), ResNetV2(spec, seed=seed)
    val = _subset(ds, va_idx, X) if len(va_idx) else None
    return _Setup(spec, ds, _subset(ds, tr_idx, X), val, inputs, tr_idx, va_idx, model)


def _header(config: TrainConfig, s: _Setup, ctx: Any, device: Any) -> str:
    import torch

    opts, obj = config.options, config.objective
    n_params = sum(p.numel() for p in s.model.parameters())
    ranks = f", {ctx.world_size} ranks ({ctx.backend})" if ctx.active else ""
    return (f"train ({config.arch}, torch {torch.__version__}, {device}, {opts.dtype}{ranks}): {s.data.name} "
            f"{len(s.tr_idx)} train / {len(s.va_idx)} val samples, N={s.spec.n_blocks} blocks, {n_params} parameters, "
            f"loss {obj.loss}, gamma {obj.gamma}, lambda {obj.weight_decay}, {opts.optimizer} lr "
            f"{opts.learning_rate:g}, {opts.epochs} epochs")


def _checkpoint_config(config: TrainConfig, spec: Any) -> dict[str, Any]:
    """What a checkpoint must share with the run that continues it (epochs may grow)."""
    same = {"arch": config.arch, "data": config.data.to_dict(), "architecture": spec.to_dict(),
            "objective": config.objective.to_dict(), "val_fraction": config.val_fraction,
            "train": {k: v for k, v in config.options.to_dict().items() if k not in ("epochs", "progress", "device")}}
    return json.loads(json.dumps(same, default=str))


def _check_resume(config: TrainConfig, resume: dict | None, same: dict[str, Any]) -> None:
    if resume is None:
        return
    if resume.get("config") != same:
        raise ValidationError(f"{config.resume} was trained with other settings: resume with the original "
                              "settings (only epochs=N may differ)")
    if int(resume["epoch"]) > config.options.epochs:
        raise ValidationError(f"{config.resume} has trained {resume['epoch']} epochs already: give "
                              f"epochs >= {resume['epoch']}")


def _evaluate(config: TrainConfig, s: _Setup, trainer: Trainer, device: Any) -> tuple[Status, dict[str, Any]]:
    """Status and metrics.json of the trained model, evaluated in float64 on the training split."""
    import torch

    from ocp_resnet.model.problem import Problem
    from ocp_resnet.torch import ResNetV2, conv_evaluation, mlp_evaluation
    from ocp_resnet.torch.evaluate import training_metrics, training_status

    if config.arch == "mlp":
        ev = mlp_evaluation(Problem(s.spec, config.objective, s.train), s.model.weights())
    else:
        model64 = ResNetV2(s.spec, dtype=torch.float64, device=device).load_weights(s.model.weights())
        ev = conv_evaluation(model64, s.inputs[s.tr_idx], s.data.y[s.tr_idx], config.objective, s.data.n_classes)
    status = training_status(ev, trainer.stopped_)
    hist = trainer.history_
    last = hist[-1] if hist else {}
    metrics = training_metrics(
        ev, status, iterations=trainer.steps_, solve_time_s=trainer.train_time_s_,
        n_variables=sum(p.numel() for p in s.model.parameters()), n_constraints=0, method=config.options.optimizer,
        arch=config.arch, val_accuracy=last.get("val_accuracy"), val_loss=last.get("val_loss"), epochs=len(hist),
        device=str(device), dtype=config.options.dtype,
    )
    return status, metrics


def _write(out: Path, config: TrainConfig, s: _Setup, trainer: Trainer, metrics: dict[str, Any], ctx: Any, device: Any,
           ckpt_path: Path, overwrite: bool) -> None:
    import torch

    from ocp_resnet.torch import distributed

    solver = {"backend": "torch", "arch": config.arch, **config.options.to_dict(), "val_fraction": config.val_fraction,
              "threads": torch.get_num_threads(), "device_used": str(device), "world_size": ctx.world_size}
    run_config = {"command": "train", "argv": list(config.argv), "data": config.data.to_dict(),
                  "architecture": s.spec.to_dict(), "objective": config.objective.to_dict(), "solver": solver}
    extra: dict[str, Any] = {}
    if ckpt_path.exists():  # the last checkpoint stays with the run, for --resume
        extra[distributed.CHECKPOINT] = lambda path: shutil.copyfile(ckpt_path, path)
    write_training_run(out, config=run_config, spec=s.spec, objective=config.objective, weights=s.model.weights(),
                       state_dict=s.model.state_dict(), metrics=metrics, train=s.train, val=s.val, trainer=trainer,
                       stats={"world_size": ctx.world_size}, extra_files=extra, overwrite=overwrite)


def write_training_run(out: str | os.PathLike, *, config: Mapping[str, Any], spec: Any, objective: ObjectiveSpec,
                       weights: Mapping[str, np.ndarray], state_dict: Mapping[str, Any], metrics: Mapping[str, Any],
                       train: Dataset, val: Dataset | None = None, trainer: Trainer | None = None,
                       stats: Mapping[str, Any] | None = None, extra_files: Mapping[str, Any] | None = None,
                       overwrite: bool = False) -> Path:
    """Write the run directory of a torch training (MLP or conv), the format of ``ocp-resnet train``.

    ``config`` gets the ``architecture`` and ``objective`` of ``spec``/``objective`` and ``arch``
    (and fresh library versions); ``weights`` go to solution.npz, ``state_dict`` to model.pt,
    ``train`` (conv: images flattened) to data.npz, ``val`` to val.npz. stats.json and
    history.csv hold the ``trainer``'s history, steps and time (empty without one) and ``stats``.
    """
    import torch

    from ocp_resnet.runs import write_run
    from ocp_resnet.torch.train import history_csv

    cfg = {**dict(config), "architecture": spec.to_dict(), "objective": objective.to_dict(),
           "arch": getattr(spec, "kind", "mlp")}  # ConvSpec.kind is "conv"
    cfg.pop("versions", None)  # write_run records the versions of this writing
    hist = list(getattr(trainer, "history_", None) or [])
    files: dict[str, Any] = {"model.pt": lambda path: torch.save(state_dict, path), "history.csv": history_csv(hist)}
    if val is not None:
        files["val.npz"] = lambda path: np.savez(path, X=val.X, y=val.y, n_classes=val.n_classes)
    files.update(extra_files or {})
    run_stats = {"history": hist, "steps": int(getattr(trainer, "steps_", 0) or 0),
                 "train_time_s": float(getattr(trainer, "train_time_s_", 0.0) or 0.0), **dict(stats or {})}
    return write_run(out, config=cfg, weights=dict(weights), metrics=metrics, data=train, stats=run_stats,
                     extra_files=files, overwrite=overwrite)
