"""``ocp-resnet sweep``: γ × depth × seed grids, sweep.csv, plots and the sub-network bound."""
from __future__ import annotations

import argparse
import copy

from ocp_resnet.cli import _common as c


def _retarget(p: argparse.ArgumentParser, flag: str, default: str, help: str) -> None:
    """Turn a shared problem flag into a list flag of this command."""
    for action in p._actions:
        if flag in action.option_strings:
            action.type, action.default, action.help = str, default, help
            return


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    p = sub.add_parser(
        "sweep", help="solve a grid of stage weights x depths x seeds; write sweep.csv, plots, bound check",
        description="Solve the problem for every gamma in --gamma, N in --blocks and initial-weight seed in "
                    "--seeds (the data set is drawn once, with --seed). Writes DIR/runs/<point>/ run "
                    "directories, DIR/sweep.csv (one row per run), DIR/summary.csv, plots, and DIR/bound.csv "
                    "comparing every J_N with the padded shallower optima J_M* + sum_k gamma_k L_M.")
    c.add_problem_args(p)
    _retarget(p, "--blocks", "2,4,6,8,10", "comma list of depths N (default 2,4,6,8,10)")
    _retarget(p, "--gamma", "0,1", "comma list of stage weights gamma, one per sweep line (default 0,1)")
    g = p.add_argument_group("sweep")
    g.add_argument("--seeds", default="0,1,2", help="comma list of initial-weight seeds (default 0,1,2)")
    g.add_argument("--backend", default="casadi", help="casadi (IPOPT, default) or torch")
    g.add_argument("--method", default="auto",
                   help="IPOPT transcription, newton or newton-cg; auto (default) chooses from the problem's size, as solve does")
    g.add_argument("--hessian", default="exact", help="exact (default) or lbfgs")
    g.add_argument("--tol", type=float, default=1e-8, help="IPOPT KKT tolerance (default 1e-8)")
    g.add_argument("--max-iter", type=int, default=3000, help="IPOPT iteration limit (default 3000)")
    t = p.add_argument_group("torch back-end (--backend torch)")
    t.add_argument("--optimizer", default=None, help="adam, adamw, sgd or lbfgs (default: mlp lbfgs, full batch; conv adam)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs per run (default: mlp 200, conv 10)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    t.add_argument("--batch-size", type=int, default=None, help="mini-batch size, 0 = full batch (default: mlp 0, conv 64)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for small MLPs)")
    from ocp_resnet.cli._conv import add_conv_sweep_args

    add_conv_sweep_args(p)
    g.add_argument("--vanish-tol", type=float, default=1e-3, help="vanishing tolerance on relative block norms (default 1e-3)")
    g.add_argument("--bound-rtol", type=float, default=1e-6, help="relative allowance of the bound check (default 1e-6)")
    g.add_argument("--resume", action="store_true", help="continue an existing sweep directory, reusing finished runs")
    g.add_argument("--markdown", action="store_true", help="print the summary table as markdown")
    g.add_argument("--no-plots", action="store_true", help="do not write the sweep plots")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.add_argument("--jobs", type=int, default=1,
                   help="solve N grid points at once in worker processes, one thread each (-1: all cores; "
                        "default 1); the numbers are those of --jobs 1")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="send the grid points to a Dask cluster (tcp://host:8786; needs ocp_resnet[distributed])")
    g.add_argument("--restarts", type=int, default=1,
                   help="IPOPT: keep the best of init seeds s..s+K-1 at every grid point (default 1)")
    c.add_collapse_retries(g)
    g.add_argument("--val-fraction", type=float, default=None,
                   help="hold out this fraction of the data (stratified, seeded by --seed); validation accuracy per run "
                        "(default: none; --arch conv: 0.2, as train)")
    c.add_output_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet sweep`` with the parsed flags; returns the exit code."""
    from pathlib import Path

    from ocp_resnet.analysis.bound import check_bound
    from ocp_resnet.analysis.sweep import format_summary, run_sweep, summarize, write_csv
    from ocp_resnet.cli._conv import ARCHS, apply_sweep_defaults, run_conv_sweep_cli
    from ocp_resnet.errors import ValidationError, check_choice
    from ocp_resnet.runs import default_run_dir

    arch = check_choice("arch", args.arch, ARCHS)
    apply_sweep_defaults(args, arch)
    if arch == "conv":
        return run_conv_sweep_cli(args)
    gammas = c.parse_list("--gamma", args.gamma, float)
    blocks = c.parse_list("--blocks", args.blocks, int)
    seeds = c.parse_list("--seeds", args.seeds, int)
    check_choice("backend", args.backend, ("casadi", "torch"))
    if "," in str(args.width):
        raise ValidationError("a depth sweep needs one state width: give --width as one number")
    base_args = copy.copy(args)
    base_args.blocks, base_args.gamma = blocks[0], str(gammas[0])
    base, val = c.split_problem(args, c.problem_from_args(base_args))  # validates every problem flag once
    c.warn_narrow(base)
    out = Path(args.out) if args.out is not None else default_run_dir(f"{args.dataset.replace('/', '_')}-sweep")
    if args.backend == "torch":
        solver = {"optimizer": args.optimizer, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                  "threads": args.threads}
    else:
        from ocp_resnet.solvers import make_solver

        solver = c.with_retries(args, make_solver("casadi", method=args.method, tol=args.tol, max_iter=args.max_iter,
                                                  hessian=args.hessian))
    config = {"argv": c.run_config(base_args, base, "sweep", {})["argv"],
              "data": {**c.data_config(args), "val_fraction": args.val_fraction}, "restarts": args.restarts}
    rows = run_sweep(base, gammas, blocks, seeds, out, backend=args.backend, solver=solver, tol=args.vanish_tol,
                     resume=args.resume, overwrite=args.overwrite, config=config,
                     log=None if args.quiet else c.echo, jobs=args.jobs, scheduler=args.scheduler,
                     restarts=args.restarts, val=val)
    summary = summarize(rows)
    write_csv(out / "summary.csv", summary, columns=list(summary[0].keys()))
    print(format_summary(summary, markdown=args.markdown))
    report = check_bound(rows, rtol=args.bound_rtol)
    write_csv(out / "bound.csv", report.to_rows(), columns=list(report.to_rows()[0].keys()) if report.checks
              else ["gamma", "N", "seed", "M"])
    print(report.format())
    if not args.no_plots:
        from ocp_resnet.plotting import plot_sweep

        for path in plot_sweep(rows, out, title=args.dataset):
            print(f"wrote {path}")
    print(f"sweep directory: {out} ({len(rows)} runs, sweep.csv)")
    return 0
