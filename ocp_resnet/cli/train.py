"""``ocp-resnet train``: the stage-cost problem trained with PyTorch (MLP twin or conv ResNet-v2).

Writes a run directory like ``solve`` (config.json, solution.npz, data.npz, metrics.json,
stats.json) plus ``model.pt`` (the torch state_dict), ``history.csv`` (per-epoch loss and
accuracy) and, with a validation split, ``val.npz``. ``data.npz`` holds the training split, so
``evaluate`` reproduces the objective in metrics.json; MLP runs can be polished by IPOPT with
``ocp-resnet solve --init RUN_DIR``.

Under ``torchrun --nproc-per-node K -m ocp_resnet train …`` the K ranks train together
(DistributedDataParallel, :mod:`ocp_resnet.torch.distributed`); rank 0 alone prints and writes.
``--checkpoint-every E`` keeps ``checkpoint.pt`` in the run directory (written every E epochs,
before the run directory is complete); ``--resume RUN_DIR`` continues from it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import _common as c

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
ARCHS = ("mlp", "conv")
#: Per-architecture defaults of flags left unset (MLP: those of ``solve``).
ARCH_DEFAULTS = {
    "mlp": {"activation": c.DEFAULTS["activation"], "loss": c.DEFAULTS["loss"], "dtype": "float64", "epochs": 300,
            "threads": 1},
    "conv": {"activation": "relu", "loss": "ce", "dtype": "float32", "epochs": 10, "threads": None},
}


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train with PyTorch (MLP twin of the CasADi model, or a conv ResNet-v2)",
        description="Train the stage-cost ResNet problem with PyTorch (SGD/Adam/AdamW/L-BFGS) and write a run "
                    "directory with the same files as 'solve' plus model.pt and history.csv.")
    c.add_problem_args(p)
    p.set_defaults(activation=None, loss=None)  # resolved per --arch (see ARCH_DEFAULTS)
    t = p.add_argument_group("torch training")
    t.add_argument("--arch", default="mlp", help="mlp (the CasADi model's twin, default) or conv (ResNet-v2 for images)")
    t.add_argument("--optimizer", default="adam", help="sgd (momentum), adam (default), adamw or lbfgs (full batch)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: sgd 0.05, adam/adamw 0.01, lbfgs 1)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default: mlp 300, conv 10)")
    t.add_argument("--batch-size", type=int, default=64, help="mini-batch size; 0 = full batch (default 64)")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    t.add_argument("--schedule", default="cosine", help="learning-rate schedule: cosine (default) or constant")
    t.add_argument("--lbfgs-iter", type=int, default=20, help="L-BFGS iterations per epoch (default 20)")
    t.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of the data held out for validation (default 0.2; 0 = none)")
    t.add_argument("--device", default="auto", help="auto (cuda when present, default), cpu, cuda or cuda:N")
    t.add_argument("--dtype", default=None, help="float32 or float64 (default: mlp float64, conv float32)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: mlp 1, as its tiny matrices gain nothing from "
                   "threads; conv: torch's choice)")
    t.add_argument("--quiet", action="store_true", help="no progress bar; print only the final table")
    t.add_argument("--checkpoint-every", type=int, default=0, metavar="E",
                   help="write RUN_DIR/checkpoint.pt every E epochs and at the end (default 0: none; --resume keeps the value of the run it continues)")
    t.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the training in RUN_DIR/checkpoint.pt with the same flags (more --epochs "
                        "extend it); writes into RUN_DIR unless --out is given")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step (GPU throughput)")
    t.add_argument("--amp", default=None, help="bf16: bfloat16 autocast (float32 models; GPU throughput)")
    t.add_argument("--channels-last", action="store_true", help="channels-last memory layout (conv nets)")
    v = p.add_argument_group("conv architecture (--arch conv)")
    v.add_argument("--channels", default="8,16,32", help="widths of the stages (default 8,16,32)")
    v.add_argument("--stage-blocks", default="1,1,1", help="residual blocks per stage (default 1,1,1)")
    v.add_argument("--norm", default="batch", help="batch (default), group or none")
    c.add_output_args(p)
    p.set_defaults(func=run)
    return p


def _ints(name: str, text: str) -> list[int]:
    v = c._int_list(name, text)
    return v if isinstance(v, list) else [v]


def _objective(args: argparse.Namespace, n_classes: int):
    from ..objective import ObjectiveSpec

    g = c._float_list(args.gamma)
    return ObjectiveSpec(loss=args.loss, gamma=tuple(g) if isinstance(g, list) else g,
                         weight_decay=args.weight_decay, label_smoothing=args.label_smoothing)


def _subset(ds: Any, idx: np.ndarray, X: np.ndarray | None = None):
    from ..data import Dataset

    return Dataset((ds.X if X is None else X)[idx], ds.y[idx], ds.n_classes, ds.name)


def run(args: argparse.Namespace) -> int:
    from ..torch import distributed

    t_start = time.perf_counter()
    ctx = distributed.init_from_env(args.device)  # one process unless started by torchrun
    try:
        return _run(args, ctx, t_start)
    finally:
        distributed.shutdown()


def _run(args: argparse.Namespace, ctx: Any, t_start: float) -> int:
    import torch

    from ..data import load_dataset
    from ..errors import ValidationError, check_choice, check_int
    from ..problem import Problem
    from ..runs import write_run
    from ..solution import Status
    from ..torch import (ConvSpec, ResNetMLP, ResNetV2, Trainer, TrainOptions, conv_evaluation, images_of,
                         mlp_evaluation, split)
    from ..torch import distributed
    from ..torch.evaluate import training_metrics, training_status
    from ..torch.train import history_csv

    arch = check_choice("arch", args.arch, ARCHS)
    d = ARCH_DEFAULTS[arch]
    args.activation = args.activation or d["activation"]
    args.loss = args.loss or d["loss"]
    dtype_name = args.dtype or d["dtype"]
    threads = args.threads if args.threads is not None else d["threads"]
    if threads is not None:
        if threads < 1:
            raise ValidationError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    opts = TrainOptions(optimizer=args.optimizer, lr=args.lr, epochs=args.epochs or d["epochs"],
                        batch_size=args.batch_size, momentum=args.momentum, schedule=args.schedule,
                        seed=args.seed, device=args.device, dtype=dtype_name, lbfgs_iter=args.lbfgs_iter,
                        progress=not args.quiet, compile=args.compile, amp=args.amp,
                        channels_last=args.channels_last)
    device = ctx.device(opts.device)
    check_int("checkpoint-every", args.checkpoint_every, 0)
    quiet = args.quiet or not ctx.is_main
    resume = distributed.load_checkpoint(args.resume) if args.resume else None
    if resume is not None and args.out is None:
        from pathlib import Path

        out = Path(args.resume)  # the same run, continued
    else:
        out = c.output_dir(args, f"{args.dataset.replace('/', '_')}-train-{arch}")

    if arch == "mlp":
        full = c.problem_from_args(args)
        spec, obj, ds = full.spec, full.objective, full.data
    else:
        ds = load_dataset(args.dataset, n_samples=args.n_samples, noise=args.noise, seed=args.seed,
                          dim=args.dim, standardize=args.standardize)
        obj = _objective(args, ds.n_classes)
        imgs = images_of(ds)
        spec = ConvSpec(imgs.shape[1], imgs.shape[2:], obj.n_outputs(ds.n_classes),
                        channels=tuple(_ints("channels", args.channels)),
                        stage_blocks=tuple(_ints("stage-blocks", args.stage_blocks)),
                        activation=args.activation, norm=args.norm)
        obj.stage_weights(spec.n_blocks)  # checks a γ list against N
    tr_idx, va_idx = split(ds.n_samples, args.val_fraction, args.seed)

    if arch == "mlp":
        train_ds = _subset(ds, tr_idx)
        problem = Problem(spec, obj, train_ds)
        model = ResNetMLP(spec, init="random", seed=args.seed)
        inputs = ds.X
    else:
        flat = imgs.reshape(len(imgs), -1)
        train_ds = _subset(ds, tr_idx, flat)
        problem = SimpleNamespace(spec=spec, objective=obj, data=train_ds)
        model = ResNetV2(spec, seed=args.seed)
        inputs = imgs
    val_ds = _subset(ds, va_idx, None if arch == "mlp" else imgs.reshape(len(imgs), -1)) if len(va_idx) else None
    n_params = sum(p.numel() for p in model.parameters())
    ranks = f", {ctx.world_size} ranks ({ctx.backend})" if ctx.active else ""
    c.echo(f"train ({arch}, torch {torch.__version__}, {device}, {dtype_name}{ranks}): {ds.name} {len(tr_idx)} "
           f"train / {len(va_idx)} val samples, N={spec.n_blocks} blocks, {n_params} parameters, loss {obj.loss}, "
           f"gamma {obj.gamma}, lambda {obj.weight_decay}, {opts.optimizer} lr {opts.learning_rate:g}, "
           f"{opts.epochs} epochs", quiet)

    # what a checkpoint must share with the run that continues it (epochs may grow)
    same = {"arch": arch, "data": c.data_config(args), "architecture": spec.to_dict(), "objective": obj.to_dict(),
            "val_fraction": args.val_fraction,
            "train": {k: v for k, v in opts.to_dict().items() if k not in ("epochs", "progress", "device")}}
    same = json.loads(json.dumps(same, default=str))
    if resume is not None:
        if resume.get("config") != same:
            raise ValidationError(f"{args.resume} was trained with other flags: resume with the original flags "
                                  "(only --epochs may change)")
        if int(resume["epoch"]) > opts.epochs:
            raise ValidationError(f"{args.resume} has trained {resume['epoch']} epochs already: give --epochs "
                                  f">= {resume['epoch']}")
    ckpt_path = out / distributed.CHECKPOINT
    every = args.checkpoint_every or (int(resume.get("checkpoint_every", 0)) if resume is not None else 0)

    def save(state: dict) -> None:
        if ctx.is_main:
            distributed.save_checkpoint(ckpt_path, {**state, "config": same, "checkpoint_every": every})

    trainer = Trainer(obj, ds.n_classes, opts).fit(
        model, inputs[tr_idx], ds.y[tr_idx], val=(inputs[va_idx], ds.y[va_idx]) if len(va_idx) else None,
        checkpoint=save if every else None, checkpoint_every=every, resume=resume)
    hist = trainer.history_
    if not ctx.is_main:  # rank 0 evaluates and writes the run directory
        return {"nan": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}.get(trainer.stopped_ or "", EXIT_OK)

    if arch == "mlp":
        weights = model.weights()
        ev = mlp_evaluation(problem, weights)
    else:
        model64 = ResNetV2(spec, dtype=torch.float64, device=device).load_weights(model.weights())
        ev = conv_evaluation(model64, imgs[tr_idx], ds.y[tr_idx], obj, ds.n_classes)
        weights = model.weights()
    status = training_status(ev, trainer.stopped_)
    last = hist[-1] if hist else {}
    metrics = training_metrics(
        ev, status, iterations=trainer.steps_, solve_time_s=trainer.train_time_s_, n_variables=n_params,
        n_constraints=0, method=opts.optimizer, arch=arch, val_accuracy=last.get("val_accuracy"),
        val_loss=last.get("val_loss"), epochs=len(hist), device=str(device), dtype=dtype_name,
    )
    solver = {"backend": "torch", "arch": arch, **opts.to_dict(), "val_fraction": args.val_fraction,
              "threads": torch.get_num_threads(), "device_used": str(device), "world_size": ctx.world_size}
    config = c.run_config(args, problem, "train", solver)
    config["arch"] = arch
    extra: dict[str, Any] = {
        "model.pt": lambda path: torch.save(model.state_dict(), path),
        "history.csv": history_csv(hist),
    }
    if ckpt_path.exists():  # the last checkpoint stays with the run, for --resume
        extra[distributed.CHECKPOINT] = lambda path: shutil.copyfile(ckpt_path, path)
    if val_ds is not None:
        extra["val.npz"] = lambda path: np.savez(path, X=val_ds.X, y=val_ds.y, n_classes=val_ds.n_classes)
    stats = {"history": hist, "steps": trainer.steps_, "train_time_s": trainer.train_time_s_,
             "world_size": ctx.world_size}
    # the directory is ours when it holds only this training's checkpoint, or is the resumed run
    ours = resume is not None and out == Path(args.resume) or (
        ckpt_path.exists() and sorted(p.name for p in out.iterdir()) == [distributed.CHECKPOINT])
    write_run(out, config=config, weights=weights, metrics=metrics, data=train_ds, stats=stats,
              extra_files=extra, overwrite=args.overwrite or ours)
    print(c.format_table(metrics))
    val = f"  val accuracy {metrics['val_accuracy']:.3f}" if metrics["val_accuracy"] is not None else ""
    print(f"status: {status.value} ({metrics['status_message']})")
    print(f"objective {metrics['objective']:.10g}  grad norm {metrics['grad_norm']:.2e}  train accuracy "
          f"{metrics['train_accuracy']:.3f}{val}  steps {trainer.steps_}  train {trainer.train_time_s_:.2f}s  "
          f"total {time.perf_counter() - t_start:.2f}s")
    print(f"run directory: {out}")
    return {Status.NAN: EXIT_FAILED, Status.INTERRUPTED: EXIT_INTERRUPTED}.get(status, EXIT_OK)
