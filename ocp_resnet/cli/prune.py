"""``ocp-resnet prune RUN_DIR``: remove vanished blocks physically and write a smaller run."""
from __future__ import annotations

import argparse
import json

from ocp_resnet.cli import _common as c
from ocp_resnet.cli._common import EXIT_OK, exit_code, parse_list


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``prune`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    p = sub.add_parser(
        "prune", help="remove vanished blocks and write the smaller network as a new run directory",
        description="Remove every block whose relative norm is <= --vanish-tol: identity-skip blocks disappear, "
                    "projection blocks keep their S_k as a plain linear layer. Reports blocks_before/after, "
                    "objective_before/after, accuracy_before/after and the largest output change on the data. Conv runs "
                    "(train --arch conv): a block has vanished when its RMS residual output relative to the largest "
                    "is <= --vanish-tol; the report adds validation accuracy, parameters and forward time, and --finetune "
                    "continues training the pruned net.")
    p.add_argument("run_dir", help="a run directory written by solve, train or sweep")
    c.add_vanish_tol(p)
    p.add_argument("--resolve", action="store_true",
                   help="re-solve the pruned problem with IPOPT warm-started from the pruned weights "
                        "(torch runs: fine-tune with the torch back-end)")
    p.add_argument("--out", default=None, help="run directory to write (default RUN_DIR-pruned)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    v = p.add_argument_group("conv runs (train --arch conv)")
    v.add_argument("--blocks", default=None, help="comma list of blocks to prune (default: the vanished ones)")
    v.add_argument("--force", action="store_true", help="also prune --blocks that have not vanished")
    v.add_argument("--finetune", type=int, default=0, metavar="EPOCHS",
                   help="continue training the pruned net this many epochs with the run's optimizer (default 0)")
    v.add_argument("--lr", type=float, default=None, help="learning rate of --finetune (default: the run's)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet prune`` with the parsed flags; returns the exit code."""
    from ocp_resnet.analysis.conv import is_conv_run, prune_conv_run
    from ocp_resnet.analysis.prune import prune_run
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.runs import Run

    if is_conv_run(Run(args.run_dir)):
        if args.resolve:
            raise ValidationError("--resolve is for MLP runs; a conv run is retrained with --finetune EPOCHS")
        blocks = None if args.blocks is None else parse_list("--blocks", args.blocks, int)
        conv_report, _ = prune_conv_run(args.run_dir, tol=args.vanish_tol, blocks=blocks, force=args.force,
                                        finetune=args.finetune, lr=args.lr, out=args.out, overwrite=args.overwrite)
        print(json.dumps(conv_report.to_dict(), indent=2) if args.json else c.flags(conv_report.format()))
        status = (conv_report.finetune or {}).get("status")  # the pruned run is written either way
        return EXIT_OK if status is None else exit_code(status, training=True)
    if args.blocks is not None or args.force or args.finetune or args.lr is not None:
        raise ValidationError("--blocks, --force, --finetune and --lr are for conv runs; MLP runs prune the vanished "
                              "blocks and re-solve with --resolve")
    report, _, _ = prune_run(args.run_dir, tol=args.vanish_tol, resolve=args.resolve, out=args.out,
                             overwrite=args.overwrite, log=None)
    print(json.dumps(report.to_dict(), indent=2) if args.json else c.flags(report.format()))
    # the pruned run is written (with the last iterate of an interrupted or failed re-solve), as for solve
    resolve_status = report.resolve.get("status") if report.resolve else None
    return EXIT_OK if resolve_status is None else exit_code(resolve_status)
