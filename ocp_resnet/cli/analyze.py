"""``ocp-resnet analyze RUN_DIR``: which blocks vanished, the recommended depth, and plots."""
from __future__ import annotations

import argparse
import json
from typing import Any

from ocp_resnet.cli import _common as c


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``analyze`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    p = sub.add_parser(
        "analyze", help="vanishing-block analysis of a run directory (either back-end)",
        description="Print per-block weight norms and RMS residual outputs (absolute and relative to the "
                    "largest), stage losses/accuracies, the vanished blocks and a recommended depth. "
                    "--plots writes turnpike.png, stages.png, trajectories.png and (2-D data) "
                    "decision_regions.png into the run directory.")
    p.add_argument("run_dir", help="a run directory written by solve, train, prune or sweep")
    c.add_vanish_tol(p)
    p.add_argument("--loss-rtol", type=float, default=1e-2,
                   help="recommended depth: stage loss within this relative tolerance of the final loss (default 1e-2)")
    p.add_argument("--plots", action="store_true", help="write PNG figures into the run directory")
    p.add_argument("--plot-dir", default=None, help="write the figures here instead of the run directory")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    p.add_argument("--costates", action="store_true",
                   help="costates p_k and stage-Hamiltonian gradients: print a per-layer table and write costates.npz, "
                        "costates.json and costates.png into the run directory (or --plot-dir)")
    p.add_argument("--overwrite", action="store_true", help="replace existing costates.* files")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet analyze`` with the parsed flags; returns the exit code."""
    from ocp_resnet.analysis.blocks import analyze, run_problem
    from ocp_resnet.runs import Run

    run_ = Run(args.run_dir)
    from ocp_resnet.analysis.blocks import BlockAnalysis, verdict
    from ocp_resnet.analysis.conv import analyze_conv_run, is_conv_run

    if args.costates:  # refuse a clash before any work
        from ocp_resnet.analysis.costates import check_costates_target

        check_costates_target(args.plot_dir or run_.path, args.overwrite)
    an: BlockAnalysis  # a ConvBlockAnalysis for conv runs
    if is_conv_run(run_):  # vanishing by RMS residual output; train and validation stage numbers
        an = analyze_conv_run(run_, args.vanish_tol, loss_rtol=args.loss_rtol)
        col: dict[str, Any] = {}  # the linear-classifier reference is computed for IPOPT problems only
        narrow = None
    else:
        from ocp_resnet.analysis.collapse import collapse_record, narrow_head

        problem, weights = run_problem(run_)
        an = analyze(problem, weights, args.vanish_tol, loss_rtol=args.loss_rtol)
        col = collapse_record(problem, an.final_loss)
        narrow = narrow_head(problem.spec, problem.data.n_classes)
    if args.json:
        print(json.dumps({**an.to_dict(), **col, "verdict": c.flags(verdict(an, **col, narrow=narrow))}, indent=2))
    else:
        print(an.format())
        if col.get("collapsed") and an.n_blocks:  # a linear model is its own linear classifier
            print(f"collapsed: yes (final loss {an.final_loss:.6g}, best linear classifier {col['linear_loss']:.6g})")
        print(c.flags(verdict(an, **col, narrow=narrow)))
    if args.plots or args.plot_dir:
        from ocp_resnet.plotting import plot_run

        for path in plot_run(run_.path, args.vanish_tol, args.plot_dir):
            print(f"wrote {path}")
    if args.costates:
        from ocp_resnet.analysis.costates import costates_of_run, write_costates

        cs = costates_of_run(run_)
        if not args.json:
            print(cs.format())
        for path in write_costates(cs, args.plot_dir or run_.path, args.overwrite):
            print(f"wrote {path}")
    return 0
