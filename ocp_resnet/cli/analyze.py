"""``ocp-resnet analyze RUN_DIR``: which blocks vanished, the recommended depth, and plots."""
from __future__ import annotations

import argparse
import json


def register(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "analyze", help="vanishing-block analysis of a run directory (either back-end)",
        description="Print per-block weight norms and RMS residual outputs (absolute and relative to the "
                    "largest), stage losses/accuracies, the vanished blocks and a recommended depth. "
                    "--plots writes turnpike.png, stages.png, trajectories.png and (2-D data) "
                    "decision_regions.png into the run directory.")
    p.add_argument("run_dir", help="a run directory written by solve, train, prune or sweep")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="a block has vanished when its norm relative to the largest is <= tol (default 1e-3)")
    p.add_argument("--loss-rtol", type=float, default=1e-2,
                   help="recommended depth: stage loss within this relative tolerance of the final loss (default 1e-2)")
    p.add_argument("--plots", action="store_true", help="write PNG figures into the run directory")
    p.add_argument("--plot-dir", default=None, help="write the figures here instead of the run directory")
    p.add_argument("--json", action="store_true", help="print the analysis as JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..analysis.blocks import analyze, run_problem
    from ..runs import Run

    run_ = Run(args.run_dir)
    from ..analysis.conv import analyze_conv_run, is_conv_run

    if is_conv_run(run_):  # vanishing by RMS residual output; train and validation stage numbers
        an = analyze_conv_run(run_, args.tol, loss_rtol=args.loss_rtol)
    else:
        problem, weights = run_problem(run_)
        an = analyze(problem, weights, args.tol, loss_rtol=args.loss_rtol)
    if args.json:
        print(json.dumps(an.to_dict(), indent=2))
    else:
        print(an.format())
    if args.plots or args.plot_dir:
        from ..plotting import plot_run

        for path in plot_run(run_.path, args.tol, args.plot_dir):
            print(f"wrote {path}")
    return 0
