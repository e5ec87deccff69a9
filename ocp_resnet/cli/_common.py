"""Flags and helpers shared by the sub-commands (problem flags, output, tables)."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ValidationError

#: Defaults of a bare ``ocp-resnet solve``: the embedded two spirals, small enough to solve in
#: seconds, with stage costs on, so the table shows trailing blocks vanishing (docs/theory.md).
DEFAULTS = dict(
    dataset="spirals",
    n_samples=200,
    blocks=10,
    width="2",
    branch="single",
    activation="tanh",
    step=1.0,
    loss="mse",
    label_smoothing=0.1,
    gamma="0.1",
    weight_decay=1e-3,
)


def _float_list(text: str) -> float | list[float]:
    """"0.5" -> 0.5, "0.1,0.2" -> [0.1, 0.2]."""
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip() != ""]
    except ValueError:
        raise ValidationError(f"gamma must be a number or a comma list of numbers, got {text!r}") from None
    if not vals:
        raise ValidationError("gamma is empty: give a number or a comma list of N numbers")
    return vals[0] if len(vals) == 1 and "," not in str(text) else vals


def _int_list(name: str, text: str) -> int | list[int]:
    try:
        vals = [int(v) for v in str(text).split(",")]
    except ValueError:
        raise ValidationError(f"{name} must be an integer or a comma list of integers, got {text!r}") from None
    return vals[0] if len(vals) == 1 else vals


def add_problem_args(p: argparse.ArgumentParser) -> None:
    """The flags that define a problem (data, architecture, objective), shared by all commands."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=DEFAULTS["dataset"],
                   help="spirals, moons, circles, xor, digits, or a path to .npz/.csv/MNIST IDX dir (default: spirals)")
    g.add_argument("--n-samples", type=int, default=None, help="number of samples (default 200 for generated sets)")
    g.add_argument("--noise", type=float, default=None, help="noise level of generated sets")
    g.add_argument("--dim", type=int, default=None, help="reduce features to this many PCA components (digits, files)")
    g.add_argument("--standardize", action="store_true", help="scale features to zero mean, unit variance")
    a = p.add_argument_group("architecture")
    a.add_argument("--blocks", type=int, default=DEFAULTS["blocks"], help="number of residual blocks N (default 10)")
    a.add_argument("--width", default=DEFAULTS["width"],
                   help="state width, or N+1 comma-separated widths of x_0..x_N (default 2)")
    a.add_argument("--branch", default=DEFAULTS["branch"], help="residual branch: single or basic (default single)")
    a.add_argument("--hidden", type=int, default=None, help="hidden width of basic branches (default: the width)")
    a.add_argument("--stem", default="pad", help="stem: pad (zero-pad input to width) or linear (default pad)")
    a.add_argument("--activation", default=DEFAULTS["activation"], help="tanh, softplus, smooth_relu (relu: torch only)")
    a.add_argument("--step", type=float, default=DEFAULTS["step"], help="step size h of single branches (default 1)")
    o = p.add_argument_group("objective")
    o.add_argument("--loss", default=DEFAULTS["loss"], help="ce, bce, mse or sce (default mse)")
    o.add_argument("--label-smoothing", type=float, default=DEFAULTS["label_smoothing"],
                   help="label smoothing ε of the sce loss (default 0.1)")
    o.add_argument("--gamma", default=DEFAULTS["gamma"],
                   help="stage-cost weight γ: one number, or N comma-separated values (default 0.1; 0 = ordinary training)")
    o.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"], help="weight decay λ (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed of data generation and initial weights (default 0)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="run directory to write (default runs/<timestamp>-<label>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")


def data_config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "dataset": args.dataset,
        "n_samples": args.n_samples,
        "noise": args.noise,
        "dim": args.dim,
        "standardize": bool(args.standardize),
        "seed": args.seed,
    }


def problem_from_args(args: argparse.Namespace):
    """Build the (validated) Problem the flags describe."""
    from ..data import load_dataset
    from ..problem import Problem

    ds = load_dataset(args.dataset, n_samples=args.n_samples, noise=args.noise, seed=args.seed,
                      dim=args.dim, standardize=args.standardize)
    return Problem.build(
        ds,
        blocks=args.blocks,
        width=_int_list("width", args.width),
        branch=args.branch,
        hidden=args.hidden,
        stem=args.stem,
        activation=args.activation,
        step=args.step,
        loss=args.loss,
        gamma=_float_list(args.gamma),
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
    )


def format_table(metrics: dict[str, Any]) -> str:
    """Per-block norms and per-stage losses/accuracies as a text table."""
    sl, sa = metrics["stage_losses"], metrics["stage_accuracy"]
    bn, rn = metrics["block_norms"], metrics["residual_norms"]
    top = max(bn) if bn else 0.0
    van = set(metrics.get("vanished", ()))  # marked as `analyze` marks them
    lines = [f"{'k':>3} {'|w_k|':>10} {'rel':>9} {'RMS|F_k|':>10} {'stage loss':>12} {'stage acc':>9}"]
    for k in range(len(sl)):
        if k < len(bn):
            rel = bn[k] / top if top > 0 else 0.0
            mark = "   vanished" if k in van else ""
            lines.append(f"{k:>3} {bn[k]:>10.3e} {rel:>9.2e} {rn[k]:>10.3e} {sl[k]:>12.5e} {sa[k]:>9.3f}{mark}")
        else:
            lines.append(f"{k:>3} {'':>10} {'':>9} {'':>10} {sl[k]:>12.5e} {sa[k]:>9.3f}   (final)")
    return "\n".join(lines)


def echo(msg: str = "", quiet: bool = False) -> None:
    if not quiet:
        print(msg, flush=True)


def warn(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_config(args: argparse.Namespace, problem, command: str, solver: dict[str, Any]) -> dict[str, Any]:
    """The full resolved configuration written to ``config.json`` (one schema for all commands)."""
    return {
        "command": command,
        "argv": list(sys.argv),
        "data": data_config(args),
        "architecture": problem.spec.to_dict(),
        "objective": problem.objective.to_dict(),
        "solver": solver,
    }


def output_dir(args: argparse.Namespace, label: str):
    """The run directory to write, checked before any work so a clash costs nothing."""
    from ..runs import check_target, default_run_dir

    if args.out is None:
        return default_run_dir(label)
    return check_target(args.out, args.overwrite)
