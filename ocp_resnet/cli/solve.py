"""``ocp-resnet solve``: the stage-cost training problem solved by IPOPT."""
from __future__ import annotations

import argparse
import time

from ocp_resnet.cli import _common as c

#: A cold solve whose iteration budget may take longer than this (seconds, by the sizing estimate)
#: says so before it starts; a warm start always does (it resumes a solve that was stopped).
LONG_SOLVE_S = 60.0
#: Iterations of a typical cold solve (IPOPT multiple shooting needs tens to a few hundred on the
#: problems of docs/performance.md): the time budget is printed when that many would pass LONG_SOLVE_S.
TYPICAL_ITERATIONS = 300


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``solve`` sub-command to ``sub`` (the sub-parsers of ``ocp-resnet``)."""
    p = sub.add_parser("solve", help="solve the training problem with CasADi + IPOPT",
                       description="Solve the stage-cost ResNet training problem with IPOPT and write a run directory.")
    c.add_problem_args(p)
    s = p.add_argument_group("solver")
    s.add_argument("--method", default="auto",
                   help="auto (default: chosen from the problem size, one line says which and why), "
                        "multiple-shooting or single-shooting (IPOPT), newton (exact trust-region Newton "
                        "on the condensed objective, docs/performance.md) or newton-cg (its Hessian-free variant "
                        "for large problems: Hessian-vector products by torch)")
    s.add_argument("--hessian", default="auto", help="auto (default), exact or lbfgs")
    s.add_argument("--jit", default="auto", choices=("auto", "yes", "no"),
                   help="compile the per-sample functions with the C compiler (cached between runs): auto "
                        "(default: on the L-BFGS path, where evaluations dominate), yes or no")
    s.add_argument("--threads", type=int, default=None,
                   help="threads that evaluate the samples in parallel (default: one for IPOPT; the Newton path "
                        "uses up to 4 on large problems, timed against one; results are identical)")
    s.add_argument("--curvature", default=None, choices=("primal-dual", "primal"),
                   help="the Newton path's model Hessian: primal-dual (default: the loss gradients carried along "
                        "each step, docs/performance.md) or primal (the exact Hessian at every iterate)")
    s.add_argument("--divergence-restarts", type=int, default=2,
                   help="multiple shooting: restart from re-simulated states when IPOPT's multipliers diverge, "
                        "at most K times (default 2; 0 = the previous behaviour)")
    s.add_argument("--tol", type=float, default=1e-8, help="IPOPT KKT tolerance (default 1e-8)")
    s.add_argument("--max-iter", type=int, default=3000, help="IPOPT iteration limit (default 3000)")
    s.add_argument("--print-level", type=int, default=5, help="IPOPT print level 0..12 (default 5: one line per iteration)")
    s.add_argument("--ipopt", action="append", default=[], metavar="NAME=VALUE",
                   help="pass an IPOPT option through, e.g. --ipopt mumps_pivot_order=0 (repeatable)")
    s.add_argument("--init", default="random",
                   help="random (default), zeros, or a run directory / solution.npz to warm-start from")
    s.add_argument("--certificate-max-params", type=int, default=None, metavar="P",
                   help="second-order certificate (smallest Hessian eigenvalues at the solution) up to P weights "
                        "(default 2000: the dense Hessian; above 2000 Lanczos, minutes at that size; 0 = never)")
    s.add_argument("--quiet", action="store_true", help="print only the final table")
    c.add_robust_args(p)
    c.add_output_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``ocp-resnet solve`` with the parsed flags; returns the exit code."""
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.runs import multiplier_files, write_run
    from ocp_resnet.solvers import IpoptSolver
    from ocp_resnet.solvers.ipopt.sizing import time_budget
    from ocp_resnet.solving import extra_files, extra_metrics, solve_with_restarts, warm_start_record

    t_start = time.perf_counter()
    if args.certificate_max_params is not None and args.certificate_max_params < 0:
        raise ValidationError(f"--certificate-max-params must be >= 0 (0: no certificate), got {args.certificate_max_params}")
    problem, val = c.split_problem(args, c.problem_from_args(args))
    solver = c.solver_from_args(args)
    out = c.output_dir(args, f"{args.dataset.replace('/', '_')}-solve")
    c.echo(f"problem: {problem.data.name} n={problem.n_samples}, N={problem.spec.n_blocks} blocks, widths "
           f"{problem.spec.widths}, loss {problem.objective.loss}, gamma {problem.objective.gamma}, "
           f"lambda {problem.objective.weight_decay}", args.quiet)
    narrow = c.warn_narrow(problem)
    warm = str(args.init) not in ("random", "zeros")
    if isinstance(solver, IpoptSolver):  # the sizing estimates are IPOPT's
        options = solver.options
        from ocp_resnet.solvers.newton import check_newton
        from ocp_resnet.solvers.newton_cg import check_newton_cg

        # what method auto hands over to, as IpoptSolver.solve decides it
        delegate = args.method == "auto" and not options.ipopt and check_newton(problem)
        budget = time_budget(problem, options.max_iter, args.method, args.hessian, newton=delegate,
                             newton_cg=delegate and check_newton_cg(problem) is None)
        # before a warm start (a resumed solve), or when a typical solve of this size would already be long
        if budget is not None and (warm or budget[0] / max(options.max_iter, 1) * TYPICAL_ITERATIONS > LONG_SOLVE_S):
            wall = options.ipopt.get("max_wall_time")
            c.echo(budget[1] + (f" (set: {wall:g} s)" if wall is not None else ""), args.quiet)
    sol, records = solve_with_restarts(problem, c.with_retries(args, solver), init=args.init, seed=c.init_seed(args),
                                       restarts=args.restarts, log=None if args.quiet else c.echo)
    metrics = sol.metrics()
    metrics.update(extra_metrics(problem, sol, records, val, certificate_max_params=args.certificate_max_params))
    if warm:  # warm start (e.g. a torch run): how far did IPOPT move it?
        metrics.update(warm_start_record(problem, args.init))
    config = c.run_config(args, problem, "solve", {
        **solver.record(), "method": sol.method, "hessian": sol.stats.get("hessian"),
        "jit": sol.stats.get("jit"), "requested": {"method": args.method, "hessian": args.hessian},
        "init": str(args.init), "seed": args.seed,
        "init_seed": c.init_seed(args), "restarts": args.restarts, "collapse_retries": args.collapse_retries,
        "val_fraction": args.val_fraction,
    })
    write_run(out, config=config, weights=sol.weights, metrics=metrics, data=problem.data, stats=sol.stats,
              extra_files={**multiplier_files(sol), **extra_files(val)}, overwrite=args.overwrite)
    print(c.format_table(metrics))
    c.report(metrics, narrow)
    print(f"status: {sol.status.value} ({c.flags(sol.status.message)})")
    print(f"objective {sol.objective:.10g}  grad norm {sol.grad_norm:.2e}  iterations {sol.iterations}  "
          f"build {sol.build_time_s:.2f}s  solve {sol.solve_time_s:.2f}s  total {time.perf_counter() - t_start:.2f}s")
    if "init_objective" in metrics:
        print(f"warm start from {metrics['init_from']}: objective {metrics['init_objective']:.10g} -> "
              f"{sol.objective:.10g} (moved {metrics['init_objective'] - sol.objective:.3e}), grad norm "
              f"{metrics['init_grad_norm']:.2e} -> {sol.grad_norm:.2e}")
    print(f"run directory: {out}")
    if not sol.success:  # one line on stderr says why; the run directory holds the last iterate and its status
        c.warn(f"ocp-resnet solve: {sol.status.value}: {sol.status.message} (last iterate saved in {out})")
    return c.exit_code(sol.status)
