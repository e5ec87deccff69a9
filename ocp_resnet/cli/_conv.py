"""Conv ResNet-v2 parts of ``sweep`` (``--arch conv``): flags, per-arch defaults, the grid run."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ocp_resnet.cli import _common as c

if TYPE_CHECKING:
    from ocp_resnet.training import TrainConfig

ARCHS = ("mlp", "conv")
#: Defaults of sweep flags left unset, per --arch (conv: those of ``train --arch conv``).
SWEEP_DEFAULTS = {
    "mlp": {"activation": c.DEFAULTS["activation"], "loss": c.DEFAULTS["loss"], "optimizer": "lbfgs", "epochs": 200,
            "batch_size": 0},
    "conv": {"activation": "relu", "loss": "ce", "optimizer": "adam", "epochs": 10, "batch_size": 64},
}


def add_conv_sweep_args(p: argparse.ArgumentParser) -> None:
    """The flags of ``sweep --arch conv``."""
    p.set_defaults(activation=None, loss=None)  # resolved per --arch (SWEEP_DEFAULTS)
    v = p.add_argument_group("conv ResNet-v2 sweep (--backend torch --arch conv)")
    v.add_argument("--arch", default="mlp", help="mlp (default) or conv: every grid point is one "
                   "'ocp-resnet train --arch conv' run; --seeds then also set the train/val split and batch order")
    v.add_argument("--channels", default="8,16,32", help="conv stage widths (default 8,16,32)")
    v.add_argument("--stage-blocks", default="1,1,1",
                   help="blocks per stage; several depth configurations separated by ';', e.g. '3,3,3;2,2,2' "
                        "(default 1,1,1)")
    v.add_argument("--norm", default="batch", help="batch (default), group or none")
    v.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    v.add_argument("--schedule", default="cosine", help="cosine (default) or constant")
    v.add_argument("--dtype", default=None, help="float32 (conv default) or float64")
    v.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")


#: the validation fraction of a conv grid point when --val-fraction is not given (as in train)
CONV_VAL_FRACTION = 0.2


def apply_sweep_defaults(args: argparse.Namespace, arch: str) -> None:
    """Set the sweep flags left unset to the defaults of ``arch``."""
    for k, v in SWEEP_DEFAULTS[arch].items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def _stage_blocks(text: str) -> list[list[int]]:
    """Depth configurations: comma lists of blocks per stage, separated by ';'."""
    from ocp_resnet.errors import ValidationError

    out = [c.parse_list("--stage-blocks", part, int, example="'3,3,3;2,2,2' (configurations separated by ';')")
           for part in str(text).split(";") if part.strip()]
    if not out:
        raise ValidationError("--stage-blocks is empty: give e.g. 3,3,3")
    return out


#: the ``train`` flags a conv grid point takes from the sweep's flags of the same name (train's
#: other flags keep their defaults; --gamma, --stage-blocks and --seed are set per point)
SHARED_TRAIN_FLAGS = ("dataset", "n_samples", "noise", "dim", "standardize", "lr", "dtype", "channels", "norm",
                      "activation", "loss", "label_smoothing", "weight_decay", "optimizer", "epochs", "batch_size",
                      "momentum", "schedule", "threads", "device")


def shared_config(args: argparse.Namespace, gamma: float, stage_blocks: list[int], seed: int) -> TrainConfig:
    """The :class:`~ocp_resnet.training.TrainConfig` every grid point shares: ``train --arch conv``
    with the sweep's :data:`SHARED_TRAIN_FLAGS` and ``--val-fraction`` (default
    :data:`CONV_VAL_FRACTION`), built by train's own flag mapping (set to the first grid point)."""
    from ocp_resnet.cli import train

    targs = train.register(argparse.ArgumentParser().add_subparsers()).parse_args(["--arch", "conv", "--quiet"])
    for name in SHARED_TRAIN_FLAGS:
        setattr(targs, name, getattr(args, name))
    targs.val_fraction = CONV_VAL_FRACTION if args.val_fraction is None else args.val_fraction
    targs.gamma, targs.stage_blocks, targs.seed = repr(float(gamma)), ",".join(map(str, stage_blocks)), seed
    return train.config_from_args(targs)


def run_conv_sweep_cli(args: argparse.Namespace) -> int:
    """``sweep --arch conv``: the grid of conv trainings, summary, plots."""
    from pathlib import Path

    from ocp_resnet.analysis.conv_sweep import format_conv_summary, run_conv_sweep, summarize_conv
    from ocp_resnet.analysis.sweep import write_csv
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.runs import default_run_dir

    if args.backend != "torch":
        raise ValidationError("--arch conv needs --backend torch (CasADi has no conv nets)")
    gammas = c.parse_list("--gamma", args.gamma, float)
    seeds = c.parse_list("--seeds", args.seeds, int)
    blocks = _stage_blocks(args.stage_blocks)
    out = Path(args.out) if args.out is not None else default_run_dir(f"{args.dataset.replace('/', '_')}-sweep-conv")
    config = shared_config(args, gammas[0], blocks[0], seeds[0])
    rows = run_conv_sweep(config, gammas, blocks, seeds, out, tol=args.vanish_tol, resume=args.resume,
                          overwrite=args.overwrite, log=None if args.quiet else c.echo)
    summary = summarize_conv(rows)
    write_csv(out / "summary.csv", summary, columns=list(summary[0].keys()))
    print(format_conv_summary(summary, markdown=args.markdown))
    print("note: no sub-network bound check for conv sweeps (each depth is trained by SGD, not solved to optimality)")
    if not args.no_plots:
        from ocp_resnet.plotting import plot_sweep

        for path in plot_sweep(rows, out, title=f"{args.dataset} conv"):
            print(f"wrote {path}")
    print(f"sweep directory: {out} ({len(rows)} runs, sweep.csv)")
    return 0
