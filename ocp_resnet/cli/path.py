"""``ocp-resnet path``: a warm-started γ path — which blocks vanish as the stage cost grows."""
from __future__ import annotations

import argparse

from ocp_resnet.cli import _common as c


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``path`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    p = sub.add_parser(
        "path", help="solve a warm-started path of stage weights gamma; path.csv, path.png, one run per point",
        description="Solve the problem for every gamma in --gammas, in the given order, each point warm-started "
                    "from the previous solution (primal iterate and IPOPT multipliers). Writes DIR/path.csv, "
                    "DIR/path.png (relative block norms against gamma) and one run directory per point, "
                    "DIR/runs/gamma<g>/, that analyze, prune and evaluate read.")
    c.add_problem_args(p)
    for action in p._actions:  # one γ per point: --gammas replaces --gamma
        if "--gamma" in action.option_strings:
            action.help = argparse.SUPPRESS
    p.add_argument("--gammas", default="1,0.3,0.1,0.03,0",
                   help="comma list of stage weights, solved in this order (default 1,0.3,0.1,0.03,0: from strong "
                        "stage costs down, which found vanished blocks where the upward path did not, "
                        "docs/vanishing.md)")
    s = p.add_argument_group("solver")
    s.add_argument("--method", default="auto",
                   help="IPOPT transcription, newton or newton-cg; auto (default) chooses from the problem's size, as solve does")
    s.add_argument("--hessian", default="exact", help="exact (default) or lbfgs")
    s.add_argument("--tol", type=float, default=1e-8, help="IPOPT KKT tolerance (default 1e-8)")
    s.add_argument("--max-iter", type=int, default=3000, help="IPOPT iteration limit per point (default 3000)")
    s.add_argument("--ipopt", action="append", default=[], metavar="NAME=VALUE",
                   help="pass an IPOPT option through (repeatable)")
    s.add_argument("--cold", action="store_true", help="start every point from the random weights (no warm start)")
    s.add_argument("--vanish-tol", type=float, default=1e-3, help="vanishing tolerance on relative block norms (default 1e-3)")
    s.add_argument("--no-plot", action="store_true", help="do not write path.png")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    c.add_robust_args(p)
    c.add_output_args(p)
    p.set_defaults(func=run)
    return p


def format_rows(rows: list[dict]) -> str:
    """The path table: one line per γ point."""
    head = f"{'gamma':>7} {'objective':>12} {'final loss':>11} {'acc':>6} {'val acc':>7} {'depth':>5} {'iter':>5}  vanished"
    lines = [head]
    for row in rows:
        va = row["val_accuracy"]
        van = row["vanished"] or "-"
        if row["collapsed"]:
            van += " (collapsed: no better than linear)"
        lines.append(f"{row['gamma']:>7g} {row['objective']:>12.6g} {row['final_loss']:>11.5g} "
                     f"{row['train_accuracy']:>6.3f} {va if va == '' else format(va, '.3f'):>7} "
                     f"{row['recommended_depth']:>5} {row['iterations']:>5}  {van}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet path`` with the parsed flags; returns the exit code."""
    from pathlib import Path

    from ocp_resnet.analysis.gamma_path import run_path
    from ocp_resnet.runs import default_run_dir

    gammas = c.parse_list("--gammas", args.gammas, float)
    args.gamma = str(gammas[0])
    problem, val = c.split_problem(args, c.problem_from_args(args))
    solver = c.solver_from_args(args)
    c.warn_narrow(problem)
    out = Path(args.out) if args.out is not None else default_run_dir(f"{args.dataset.replace('/', '_')}-path")
    config = {"argv": c.run_config(args, problem, "path", {})["argv"],
              "data": {**c.data_config(args), "val_fraction": args.val_fraction}}
    rows = run_path(problem, gammas, out, c.with_retries(args, solver), seed=c.init_seed(args),
                    restarts=args.restarts, warm_start=not args.cold, tol=args.vanish_tol, val=val, config=config,
                    overwrite=args.overwrite, plot=not args.no_plot, log=None if args.quiet else c.echo)
    print(format_rows(rows))
    total = sum(int(row["iterations"]) for row in rows)
    print(f"{len(rows)} points, {total} IPOPT iterations in total")
    if not args.no_plot:
        print(f"wrote {out / 'path.png'}")
    print(f"path directory: {out} (path.csv; run directories in {out / 'runs'})")
    code = max((c.exit_code(row["status"]) for row in rows), default=c.EXIT_OK)  # interrupted before failed
    if code == c.EXIT_FAILED:
        failed = [row for row in rows if c.exit_code(row["status"]) != c.EXIT_OK]
        c.warn(f"ocp-resnet path: {len(failed)} point(s) did not converge: "
               + ", ".join(f"gamma {row['gamma']:g} ({row['status']})" for row in failed))
    return code
