"""Exact trust-region Newton (:mod:`ocp_resnet.solvers.newton`) against IPOPT multiple shooting.

    python benchmarks/newton_vs_ipopt.py                         # the built-in problems P1, W4, S3, N500
    python benchmarks/newton_vs_ipopt.py --problems P1,S3        # some of them
    python benchmarks/newton_vs_ipopt.py --census 20 --census-seed 0   # 20 random small problems
    python benchmarks/newton_vs_ipopt.py --dataset moons --blocks 6 --width 3 --loss sce --seed 1  # one problem
    python benchmarks/newton_vs_ipopt.py --no-ms                 # Newton only

Both solvers start from the same weights (``initial_weights(problem, "random", seed)``, the
CLI's ``--init random --seed``) with tol 1e-8. Times are in-process (build + solve, not the
interpreter start-up), wall and CPU; on a shared machine CPU seconds are the steadier number.
``--check`` also warm-starts IPOPT multiple shooting from Newton's point and reports its
iterations (few iterations: the two solvers agree on the point being a local minimum).

Measured on a 2-core machine shared with other jobs (load 10-13, so wall times were ~10x the
CPU times; CPU seconds include building the derivative functions, not the interpreter start):

    OMP_NUM_THREADS=1 python benchmarks/newton_vs_ipopt.py

    problem     p method  status     iter   cpu s              J    |grad|  J/J_ms
    P1         66 newton  success      53    0.77     0.14637841  4.96e-13  0.9930
                  ipopt-ms success      57    2.00     0.14740837  7.19e-14
    W4        170 newton  success     917   49.77    0.013080233  5.75e-10  0.8587
                  ipopt-ms success     248   79.46    0.015231909  8.41e-08
    S3         80 newton  success     112    2.50    0.030551546  2.15e-08  0.9427
                  ipopt-ms success      88   21.90     0.03240849  1.15e-09

    OMP_NUM_THREADS=1 python benchmarks/newton_vs_ipopt.py --census 8 --census-seed 0 --max-time 900 --no-ms

    8/8 converged; CPU median 8.56 s, worst 19.01 s (iterations 39-344)

(|grad| is ‖∇J‖₂ from :func:`ocp_resnet.evaluate`; Newton stops on ‖∇J‖_∞ ≤ 1e-8. ``--check`` on
P1 and S3: IPOPT multiple shooting warm-started from Newton's point stops after 0 iterations.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocp_resnet import IpoptOptions, Problem, load_dataset, solve  # noqa: E402
from ocp_resnet.solvers import initial_weights  # noqa: E402
from ocp_resnet.solvers.newton import NewtonOptions, newton_solve  # noqa: E402

#: name -> (dataset, n, noise, blocks, width, loss, gamma, weight decay, seed)
BUILTIN = {
    "P1": ("spirals", 200, None, 10, 2, "mse", 0.1, 1e-3, 0),  # the default `ocp-resnet solve` problem
    "W4": ("spirals", 200, 0.2, 8, 4, "mse", 0.0, 1e-5, 13),
    "S3": ("moons", 200, None, 6, 3, "sce", 0.1, 1e-4, 1),
    "N500": ("circles", 500, None, 8, 3, "bce", 0.1, 1e-4, 2),
}


def census(k: int, seed: int) -> dict[str, tuple]:
    """``k`` random small problems: width 3-4, 4-12 blocks, n 100-500, every loss and data set."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(k):
        out[f"C{i}"] = (
            str(rng.choice(["spirals", "moons", "circles", "xor"])), int(rng.integers(100, 501)), None,
            int(rng.integers(4, 13)), int(rng.integers(3, 5)), str(rng.choice(["mse", "sce", "bce", "ce"])),
            float(rng.choice([0.0, 0.1, 1.0])), float(rng.choice([1e-5, 1e-4, 1e-3])), int(rng.integers(0, 100)),
        )
    return out


def build(case: tuple) -> Problem:
    ds, n, noise, blocks, width, loss, gamma, wd, seed = case
    data = load_dataset(ds, n_samples=n, noise=noise, seed=seed)
    return Problem.build(data, blocks=blocks, width=width, loss=loss, gamma=gamma, weight_decay=wd)


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(BUILTIN), help="comma list of built-in problems")
    ap.add_argument("--census", type=int, default=0, help="this many random problems instead")
    ap.add_argument("--census-seed", type=int, default=0)
    ap.add_argument("--dataset", default=None, help="one problem from flags (with the flags below)")
    ap.add_argument("--n-samples", type=int, default=200)
    ap.add_argument("--noise", type=float, default=None)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--loss", default="mse")
    ap.add_argument("--gamma", type=float, default=0.1)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-iter", type=int, default=3000)
    ap.add_argument("--max-time", type=float, default=0.0, help="wall-clock limit of each Newton solve in seconds (0: none)")
    ap.add_argument("--ms-cpu", type=float, default=0.0, help="CPU-time limit of each IPOPT solve in seconds (0: none)")
    ap.add_argument("--no-ms", action="store_true", help="run Newton only")
    ap.add_argument("--check", action="store_true", help="warm-start IPOPT MS from Newton's point")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.dataset:
        cases = {"cli": (args.dataset, args.n_samples, args.noise, args.blocks, args.width, args.loss, args.gamma,
                         args.weight_decay, args.seed)}
    elif args.census:
        cases = census(args.census, args.census_seed)
    else:
        cases = {k: BUILTIN[k] for k in args.problems.split(",")}
    head = (f"{'problem':<8} {'p':>4} {'method':<7} {'status':<9} {'iter':>5} {'wall s':>7} {'cpu s':>7} "
            f"{'J':>14} {'|grad|':>9} {'J/J_ms':>7}" + (f" {'MS warm it':>10}" if args.check else ""))
    print(head, flush=True)
    ratios, walls, cpus, conv = [], [], [], 0
    limit = {"max_cpu_time": args.ms_cpu} if args.ms_cpu else {}
    for name, case in cases.items():
        problem = build(case)
        w0 = initial_weights(problem, "random", case[-1])
        sn, wn, cn = timed(lambda: newton_solve(problem, w0, NewtonOptions(max_iter=args.max_iter, max_time_s=args.max_time)))  # noqa: B023
        walls.append(wn)
        cpus.append(cn)
        conv += sn.success
        extra = ""
        if args.check:
            sw = solve(problem, method="multiple-shooting", init=sn.w, options=IpoptOptions(tol=1e-8))
            extra = f" {sw.iterations:>10}"
        ratio = ""
        if not args.no_ms:
            sm, wm, cm = timed(lambda: solve(problem, method="multiple-shooting", init=w0,  # noqa: B023
                                             options=IpoptOptions(tol=1e-8, max_iter=args.max_iter, ipopt=limit)))
            r = sn.objective / sm.objective
            ratios.append(r)
            ratio = f"{r:>7.4f}"
        print(f"{name:<8} {problem.spec.n_params:>4} {'newton':<7} {sn.status.value:<9} {sn.iterations:>5} {wn:>7.2f} "
              f"{cn:>7.2f} {sn.objective:>14.8g} {sn.grad_norm:>9.2e} {ratio:>7}{extra}", flush=True)
        if not args.no_ms:
            print(f"{'':<8} {'':>4} {'ipopt-ms':<7} {sm.status.value:<9} {sm.iterations:>5} {wm:>7.2f} {cm:>7.2f} "
                  f"{sm.objective:>14.8g} {sm.grad_norm:>9.2e}", flush=True)
    print(f"newton: {conv}/{len(cases)} converged; wall median {statistics.median(walls):.2f} s, worst {max(walls):.2f} s; "
          f"cpu median {statistics.median(cpus):.2f} s, worst {max(cpus):.2f} s"
          + (f"; median J/J_ms {statistics.median(ratios):.4f}" if ratios else ""))


if __name__ == "__main__":
    main()
