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
import time
from typing import TYPE_CHECKING, TypedDict

from ocp_resnet.cli import _common as c
from ocp_resnet.training import ARCHS

if TYPE_CHECKING:
    from ocp_resnet.training import ConvNet, MLPNet, TrainConfig


class _ArchDefaults(TypedDict):
    activation: str
    loss: str
    dtype: str
    epochs: int
    threads: int | None


#: Per-architecture defaults of flags left unset (MLP: those of ``solve``). The dtype: the MLP
#: twin trains in float64 like the CasADi model, conv nets in float32 (``--dtype`` overrides).
ARCH_DEFAULTS: dict[str, _ArchDefaults] = {
    "mlp": {"activation": str(c.DEFAULTS["activation"]), "loss": str(c.DEFAULTS["loss"]), "dtype": "float64",
            "epochs": 300, "threads": 1},
    "conv": {"activation": "relu", "loss": "ce", "dtype": "float32", "epochs": 10, "threads": None},
}


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
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
    t.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: mlp 1, as its tiny matrices gain nothing from threads; "
                        "conv: torch's choice)")
    t.add_argument("--quiet", action="store_true", help="no progress bar; print only the final table")
    t.add_argument("--checkpoint-every", type=int, default=0, metavar="E",
                   help="write RUN_DIR/checkpoint.pt every E epochs and at the end "
                        "(default 0: none; --resume keeps the value of the run it continues)")
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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`~ocp_resnet.training.TrainConfig` the flags describe (per-arch defaults applied)."""
    from ocp_resnet.errors import check_choice
    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.torch import TrainOptions
    from ocp_resnet.training import ConvNet, MLPNet, TrainConfig

    arch = check_choice("arch", args.arch, ARCHS)
    d = ARCH_DEFAULTS[arch]
    activation, loss = args.activation or d["activation"], args.loss or d["loss"]
    opts = TrainOptions(optimizer=args.optimizer, lr=args.lr, epochs=args.epochs or d["epochs"],
                        batch_size=args.batch_size, momentum=args.momentum, schedule=args.schedule,
                        seed=args.seed, device=args.device, dtype=args.dtype or d["dtype"], lbfgs_iter=args.lbfgs_iter,
                        progress=not args.quiet, compile=args.compile, amp=args.amp,
                        channels_last=args.channels_last)
    net: MLPNet | ConvNet
    if arch == "mlp":
        net = MLPNet(blocks=args.blocks, width=c.parse_list("--width", args.width, int, scalar=True),
                     branch=args.branch, hidden=args.hidden, stem=args.stem, activation=activation, step=args.step)
    else:
        net = ConvNet(channels=tuple(c.parse_list("--channels", args.channels, int)),
                      stage_blocks=tuple(c.parse_list("--stage-blocks", args.stage_blocks, int)),
                      activation=activation, norm=args.norm)
    gamma = c.parse_list("--gamma", args.gamma, float, scalar=True)
    objective = ObjectiveSpec(loss=loss, gamma=tuple(gamma) if isinstance(gamma, list) else gamma,
                              weight_decay=args.weight_decay, label_smoothing=args.label_smoothing)
    return TrainConfig(c.data_source(args), net, objective, opts, val_fraction=args.val_fraction,
                       checkpoint_every=args.checkpoint_every, resume=args.resume, out=args.out,
                       overwrite=args.overwrite, threads=args.threads if args.threads is not None else d["threads"])


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet train`` with the parsed flags; returns the exit code."""
    from ocp_resnet.training import train_run

    t_start = time.perf_counter()
    res = train_run(config_from_args(args), log=None if args.quiet else c.echo)
    if res.metrics is None:  # another torchrun rank: rank 0 prints and writes
        return c.exit_code(res.status, training=True)
    m = res.metrics
    print(c.format_table(m))
    val = f"  val accuracy {m['val_accuracy']:.3f}" if m["val_accuracy"] is not None else ""
    print(f"status: {res.status.value} ({c.flags(m['status_message'])})")
    print(f"objective {m['objective']:.10g}  grad norm {m['grad_norm']:.2e}  train accuracy "
          f"{m['train_accuracy']:.3f}{val}  steps {res.steps}  train {res.train_time_s:.2f}s  "
          f"total {time.perf_counter() - t_start:.2f}s")
    print(f"run directory: {res.out}")
    return c.exit_code(res.status, training=True)
