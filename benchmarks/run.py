"""Performance benchmark of the IPOPT path: one command, one table.

    python benchmarks/run.py            # canonical problem, baseline, scaling series, torch Adam, P3
    python benchmarks/run.py --quick    # the same in a few minutes (smaller series, no P3)
    python benchmarks/run.py --p2       # also the full P2 solve (n=2000, N=20, width 4, tol 1e-6)

Every measured point runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own and
one point's caches cannot help the next. Times are wall clock *and* the process's CPU time: on a
shared machine the CPU time is the steadier number (say which one you quote).

Rows
* ``P1 cli``: ``ocp-resnet solve`` on the canonical problem (two spirals n=200, N=10 single tanh
  blocks, width 2, bce, γ=1/11, λ=1e-4, tol 1e-8), process start included.
* ``canonical ms/ss``: build / solve / iterations / time per iteration / peak RSS through the API.
* ``baseline ms/ss`` (only with ``--baseline SCRIPT``): a reference implementation of the same
  problem, run as ``python SCRIPT 200 10 2 ms|ss`` and timed as a whole process; it must print a
  line starting with ``ms `` / ``ss ``. (The naive CasADi Opti script the first performance numbers
  in docs/performance.md were compared with weighted the terminal loss by γ too, ours by 1.)
* ``series``: n × N with ``--series-iters`` IPOPT iterations each (time per iteration vs n·N), for
  the P2 path (single shooting + L-BFGS, width 4) and exact-Hessian multiple shooting (width 2).
* ``torch adam``: full-batch Adam (lr ``--adam-lr``) on the same objective from the same initial
  weights until J ≤ J_ipopt + 1e-3: wall time, steps, ratio to the IPOPT end-to-end time.
* P3 (torch stage-cost step overhead): benchmarks/torch_step.py, owned by the torch back-end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CANON = dict(n=200, N=10, width=2, tol=1e-8)
P1_CMD = ["ocp-resnet", "solve", "--dataset", "spirals", "--n-samples", "200", "--blocks", "10", "--width", "2",
          "--loss", "bce", "--gamma", "0.0909090909", "--weight-decay", "1e-4", "--tol", "1e-8", "--quiet",
          "--overwrite"]


# ----------------------------------------------------------------------------- workers (subprocess side)
def _problem(n: int, N: int, width: int):
    from ocp_resnet import Problem, load_dataset

    return Problem.build(load_dataset("spirals", n_samples=n), blocks=N, width=width, loss="bce",
                         gamma=1.0 / (N + 1), weight_decay=1e-4)


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_ipopt(a: dict) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    from ocp_resnet import IpoptOptions, solve

    prob = _problem(a["n"], a["N"], a["width"])
    opts = IpoptOptions(tol=a["tol"], max_iter=a.get("max_iter", 3000), hessian=a.get("hessian", "exact"),
                        ipopt=a.get("ipopt", {}))
    t1, c1 = time.perf_counter(), time.process_time()
    marks = {}

    def cb(info):  # the first iteration callback closes the build (nlpsol creation included)
        marks.setdefault("t", time.perf_counter())
        marks.setdefault("c", time.process_time())

    sol = solve(prob, method=a["method"], options=opts, callback=cb)
    t2, c2 = time.perf_counter(), time.process_time()
    tb, cb_ = marks.get("t", t2), marks.get("c", c2)
    it = max(sol.iterations, 1)
    return dict(objective=sol.objective, iterations=sol.iterations, status=sol.status.value,
                import_s=t1 - t0, build_s=tb - t1, solve_s=t2 - tb, build_cpu=cb_ - c1, solve_cpu=c2 - cb_,
                per_iter_ms=1000 * (t2 - tb) / it, per_iter_cpu_ms=1000 * (c2 - cb_) / it,
                total_s=t2 - t0, total_cpu=c2 - c0, rss_mb=_rss_mb(), n_variables=sol.n_variables)


def worker_adam(a: dict) -> dict:
    import numpy as np
    import torch

    from ocp_resnet.torch import ResNetMLP, StageCostLoss

    torch.set_num_threads(1)
    prob = _problem(a["n"], a["N"], a["width"])
    model = ResNetMLP(prob.spec, init="random", seed=0, dtype=torch.float64)
    X = torch.as_tensor(prob.U.T, dtype=torch.float64)
    T = torch.as_tensor(prob.T.T, dtype=torch.float64)
    loss = StageCostLoss(prob.objective, prob.data.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=a["lr"])
    target, limit = a["target"], a["time_limit"]
    t0, c0 = time.perf_counter(), time.process_time()
    steps, J = 0, float("inf")
    best = float("inf")
    while True:
        opt.zero_grad(set_to_none=True)
        Jt, _ = loss(model, X, T)
        J = float(Jt.detach())
        best = min(best, J)
        if J <= target or time.perf_counter() - t0 > limit:
            break
        Jt.backward()
        opt.step()
        steps += 1
    return dict(reached=bool(J <= target), steps=steps, objective=J, best=best, wall_s=time.perf_counter() - t0,
                cpu_s=time.process_time() - c0, rss_mb=_rss_mb(), check=bool(np.isfinite(J)))


WORKERS = {"ipopt": worker_ipopt, "adam": worker_adam}


# ----------------------------------------------------------------------------- driver side
def run_worker(kind: str, args: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(args)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f}s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:120]}


def run_timed(cmd: list[str], timeout: float, cwd: str | None = None) -> tuple[float, float, str]:
    """Wall and CPU (user+sys of the child) seconds of ``cmd``, and its stdout."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        text = out.stdout + out.stderr
    except subprocess.TimeoutExpired:
        return float("nan"), float("nan"), f"timeout {timeout:.0f}s"
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, text


def fmt(v, spec="{:.2f}") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return spec.format(v)


def ipopt_row(name: str, r: dict) -> str:
    if "error" in r:
        return f"| {name} | {r['error']} |" + " |" * 8
    return (f"| {name} | {fmt(r['build_s'])} ({fmt(r['build_cpu'])}) | {fmt(r['solve_s'])} ({fmt(r['solve_cpu'])}) "
            f"| {r['iterations']} | {fmt(r['per_iter_ms'], '{:.1f}')} ({fmt(r['per_iter_cpu_ms'], '{:.1f}')}) "
            f"| {fmt(r['total_s'])} ({fmt(r['total_cpu'])}) | {fmt(r['rss_mb'], '{:.0f}')} | {r['objective']:.10g} "
            f"| {r['status']} |")


HEADER = ("| run | build s (cpu) | solve s (cpu) | iters | ms/iter (cpu) | total s (cpu) | peak RSS MB | objective | status |\n"
          "|---|---|---|---|---|---|---|---|---|")


def best_of(kind: str, args: dict, repeats: int, timeout: float) -> dict:
    """The run with the least total CPU time of ``repeats`` (the machine is shared)."""
    rs = [run_worker(kind, args, timeout) for _ in range(repeats)]
    ok = [r for r in rs if "error" not in r]
    return min(ok, key=lambda r: r["total_cpu"]) if ok else rs[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="a few minutes: small series, one repeat, no P3")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of the canonical rows (min CPU kept; default 3, quick 1)")
    ap.add_argument("--series-iters", type=int, default=20, help="IPOPT iterations per series point (default 20)")
    ap.add_argument("--point-timeout", type=float, default=300.0, help="seconds per subprocess (default 300)")
    ap.add_argument("--p2", action="store_true", help="also solve P2 (n=2000, N=20, width 4, tol 1e-6) to the end")
    ap.add_argument("--p2-method", default="single-shooting", help="transcription of the P2 solve (default single-shooting)")
    ap.add_argument("--p2-hessian", default="lbfgs", help="Hessian of the P2 solve (default lbfgs)")
    ap.add_argument("--p2-ipopt", action="append", default=[], metavar="NAME=VALUE",
                    help="IPOPT option for the P2 solve, e.g. limited_memory_max_history=30 (repeatable)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a reference script to time on the canonical problem (python SCRIPT 200 10 2 ms|ss)")
    ap.add_argument("--no-torch", action="store_true", help="skip torch Adam and P3")
    ap.add_argument("--adam-lr", type=float, default=1e-2)
    ap.add_argument("--adam-time", type=float, default=180.0, help="give up Adam after this many seconds")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](json.loads(args.worker[1]))), flush=True)
        return 0

    reps = args.repeats or (1 if args.quick else 3)
    load = os.getloadavg()
    print(f"# ocp_resnet performance benchmark\n\nmachine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\ncommand: python benchmarks/run.py {' '.join(sys.argv[1:])}\n", flush=True)

    # P1: the CLI end-to-end
    print("## P1: `ocp-resnet solve` on the canonical problem (process start included, target ≤ 1 s)\n")
    runs = []
    for _ in range(reps):
        runs.append(run_timed(P1_CMD + ["--out", f"/tmp/ocp_resnet_bench_p1_{os.getpid()}"], args.point_timeout))
    p1_wall, p1_cpu, text = min(runs, key=lambda r: r[1] if r[1] == r[1] else 1e9)
    last = [l for l in text.splitlines() if l.startswith("objective")]
    print(f"best of {reps}: wall {p1_wall:.2f} s, CPU {p1_cpu:.2f} s  ({last[0] if last else text[-200:]})\n", flush=True)

    # canonical problem through the API, single and multiple shooting
    print("## Canonical problem (n=200, N=10, width 2, tol 1e-8), best of", reps, "by CPU time\n")
    print(HEADER)
    canon = {}
    for method in ("multiple-shooting", "single-shooting"):
        r = best_of("ipopt", {**CANON, "method": method}, reps, args.point_timeout)
        canon[method] = r
        print(ipopt_row(f"ours {method}", r), flush=True)

    base = {}
    if args.baseline is not None:
        for mode in (("ms",) if args.quick else ("ms", "ss")):
            wall, cpu, text = run_timed([sys.executable, str(args.baseline), "200", "10", "2", mode], args.point_timeout)
            line = next((l for l in text.splitlines() if l.startswith(mode + " ")), text.strip()[-120:])
            base[mode] = (wall, cpu)
            print(f"| baseline {mode} (process) | | | | | {fmt(wall)} ({fmt(cpu)}) | | `{line}` | |", flush=True)
    print()
    ours_ms = canon["multiple-shooting"]
    if "ms" in base and "error" not in ours_ms:
        print(f"ratio baseline ms / ours ms (process, CPU): {base['ms'][1] / max(ours_ms['total_cpu'], 1e-9):.1f}x; "
              f"P1 CLI CPU {p1_cpu:.2f} s vs baseline {base['ms'][1]:.2f} s: {base['ms'][1] / max(p1_cpu, 1e-9):.1f}x\n")

    # scaling series: the P2 path (single shooting, L-BFGS, width 4) and exact multiple shooting (width 2)
    ns = (250, 500) if args.quick else (250, 500, 1000, 2000)
    Ns = (5, 10) if args.quick else (5, 10, 20)
    for method, hessian, width in (("single-shooting", "lbfgs", 4), ("multiple-shooting", "exact", 2)):
        print(f"## Scaling series: {method}, {hessian} Hessian, width {width}, {args.series_iters} IPOPT iterations "
              f"per point, tol 1e-6\n")
        print("| n | N | n·N | variables | build s | ms/iter (cpu) | cpu µs/iter per n·N | peak RSS MB |\n"
              "|---|---|---|---|---|---|---|---|")
        for N in Ns:
            for n in ns:
                r = run_worker("ipopt", dict(n=n, N=N, width=width, tol=1e-6, method=method, hessian=hessian,
                                             max_iter=args.series_iters), args.point_timeout)
                if "error" in r:
                    print(f"| {n} | {N} | {n * N} | | {r['error']} | | | |", flush=True)
                    continue
                print(f"| {n} | {N} | {n * N} | {r['n_variables']} | {fmt(r['build_s'])} "
                      f"| {fmt(r['per_iter_ms'], '{:.1f}')} ({fmt(r['per_iter_cpu_ms'], '{:.1f}')}) "
                      f"| {fmt(1000 * r['per_iter_cpu_ms'] / (n * N), '{:.2f}')} | {fmt(r['rss_mb'], '{:.0f}')} |", flush=True)
        print()

    if args.p2:
        print(f"## P2: n=2000, N=20, width 4, tol 1e-6 ({args.p2_method}, {args.p2_hessian} Hessian; target ≤ 60 s, ≤ 2 GiB)\n")
        print(HEADER)
        from ocp_resnet.cli._common import parse_ipopt

        r = run_worker("ipopt", dict(n=2000, N=20, width=4, tol=1e-6, method=args.p2_method, hessian=args.p2_hessian,
                                     ipopt=parse_ipopt(args.p2_ipopt)),
                       max(args.point_timeout, 900))
        print(ipopt_row(f"P2 {args.p2_method} {args.p2_hessian}", r), "\n", flush=True)

    if not args.no_torch:
        print("## Torch Adam (full batch, float64, 1 thread) to IPOPT's objective + 1e-3, canonical problem\n")
        target = ours_ms.get("objective", float("nan")) + 1e-3
        r = run_worker("adam", dict(**CANON, lr=args.adam_lr, target=target, time_limit=args.adam_time),
                       args.adam_time + 120)
        if "error" in r:
            print(f"torch adam: {r['error']}\n")
        else:
            ratio = r["wall_s"] / max(ours_ms.get("total_s", float("nan")), 1e-9)
            print(f"target J ≤ {target:.6f}: {'reached' if r['reached'] else 'NOT reached'} after {r['steps']} steps, "
                  f"{r['wall_s']:.2f} s wall ({r['cpu_s']:.2f} s CPU), last J {r['objective']:.6f}, best J {r['best']:.6f}; "
                  f"ratio torch time / IPOPT ms end-to-end (wall): {ratio:.1f}x\n", flush=True)
        step = HERE / "torch_step.py"
        if step.exists() and not args.quick:
            print("## P3: torch stage-cost step overhead (benchmarks/torch_step.py)\n")
            wall, cpu, text = run_timed([sys.executable, str(step)], args.point_timeout)
            print("```\n" + text.strip()[-3000:] + "\n```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
