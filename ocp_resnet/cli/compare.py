"""``ocp-resnet compare``: IPOPT vs torch optimizers on one MLP problem in float64."""
from __future__ import annotations

import argparse

from ocp_resnet.cli import _common as c


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    from ocp_resnet.compare import DEFAULT_OPTIMIZERS, OPTIMIZERS

    p = sub.add_parser("compare", help="compare IPOPT with SGD/Adam/L-BFGS on the same problem",
                       description="Run several optimizers from the same initial weights (float64) and write "
                                   "compare.json, compare.csv and figures.")
    c.add_problem_args(p)
    p.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                   help=f"comma list of {', '.join(OPTIMIZERS)} (default: all)")
    p.add_argument("--epochs", type=int, default=2000, help="full-batch steps of each torch optimizer (default 2000)")
    p.add_argument("--max-iter", type=int, default=3000, help="IPOPT iteration limit (default 3000)")
    p.add_argument("--tol", type=float, default=1e-8, help="IPOPT KKT tolerance (default 1e-8)")
    p.add_argument("--targets", default="1e-3,1e-6", help="objective gaps for time-to-target (default 1e-3,1e-6)")
    p.add_argument("--lr", action="append", default=[], metavar="OPT=LR",
                   help="learning rate of a torch optimizer, e.g. --lr adam=0.005 (repeatable)")
    p.add_argument("--no-polish", action="store_true", help="skip the IPOPT polish of the Adam solution")
    p.add_argument("--jobs", type=int, default=1,
                   help="run N optimizers at once in worker processes (-1: all cores; default 1); same objectives, "
                        "but wall times then include the sharing of the machine")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the optimizers on a Dask cluster (tcp://host:8786; needs ocp_resnet[distributed])")
    c.add_output_args(p)
    p.set_defaults(func=run)
    return p


def _parse_lr(items: list[str]) -> dict[str, float]:
    from ocp_resnet.compare import TORCH_OPTIMIZERS
    from ocp_resnet.errors import ValidationError

    out = {}
    for item in items:
        name, _, val = item.partition("=")
        if name not in TORCH_OPTIMIZERS:
            raise ValidationError(f"--lr {item!r}: use OPT=LR with OPT one of {', '.join(TORCH_OPTIMIZERS)}")
        try:
            out[name] = float(val)
        except ValueError:
            raise ValidationError(f"--lr {item!r}: the learning rate must be a number, e.g. adam=0.01") from None
    return out


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet compare`` with the parsed flags; returns the exit code."""
    from ocp_resnet.compare import FIGURES, compare, format_summary, to_csv
    from ocp_resnet.runs import write_directory

    optimizers = c.parse_list("--optimizers", args.optimizers, str)
    targets = c.parse_list("--targets", args.targets, float)
    problem = c.problem_from_args(args)
    lr = _parse_lr(args.lr)
    out = c.output_dir(args, f"{args.dataset.replace('/', '_')}-compare")
    cmp = compare(problem, optimizers, epochs=args.epochs, max_iter=args.max_iter, tol=args.tol, targets=targets,
                  lr=lr, seed=args.seed, polish=not args.no_polish, log=c.echo, jobs=args.jobs,
                  scheduler=args.scheduler)
    config = c.run_config(args, problem, "compare", {"optimizers": optimizers, "epochs": args.epochs,
                                                      "max_iter": args.max_iter, "tol": args.tol, "lr": lr})
    write_directory(out, {
        "config.json": config,
        "compare.json": cmp.to_dict(),
        "compare.csv": to_csv(cmp),
        **{name: (lambda path, f=f: f(cmp, path)) for name, f in FIGURES.items()},
    }, overwrite=args.overwrite)
    print(format_summary(cmp))
    print(f"written: {out}")
    return 0
