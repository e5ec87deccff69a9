"""Iterations of the exact trust-region Newton path over the census problems, in-process.

    OMP_NUM_THREADS=1 python benchmarks/newton_iterations.py --label default            # all 46 problems
    python benchmarks/newton_iterations.py --label nm5 --opt nonmonotone=5               # a variant (NewtonOptions)
    python benchmarks/newton_iterations.py --label default --only p39,p42 --print-level 1  # iteration logs
    python benchmarks/newton_iterations.py --summary default nm5                         # compare labels

Each census problem (:func:`benchmarks.census.draw_problems`) is built from its flags with the
CLI's own parser and :func:`ocp_resnet.cli._common.problem_from_args`, started from
``initial_weights(problem, "random", init-seed)`` (what ``ocp-resnet solve --method newton``
does, without the collapse retries) and solved by :func:`newton_solve` with ``--opt`` overrides
and a per-problem time cap (``--cap``, ``max_time_s``). CPU seconds are the worker process's own
(build + solve, no interpreter start-up; the metric's worker process, where one is used, is
not in them: compare wall seconds then). One JSON line per problem goes to
``benchmarks/results/newton-iter-<label>.jsonl`` (resumable: ids already there are skipped).
``--summary`` prints iterations, CPU and objective ratios against the first label and against
IPOPT multiple shooting (``census-baseline.jsonl``, where it succeeded).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from census import draw_problems, flag_list, load_records  # noqa: E402

RESULTS = HERE / "results"


def _value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def solve_one(flags: dict[str, Any], opts: dict[str, Any], cap: float, print_level: int,
              split_min_size: int | None = None) -> dict[str, Any]:
    """Build the census problem of ``flags`` as the CLI does and solve it by Newton."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ocp_resnet.cli import build_parser
    from ocp_resnet.cli._common import init_seed, problem_from_args
    from ocp_resnet.solvers import initial_weights, newton
    from ocp_resnet.solvers.newton import NewtonOptions, newton_solve

    if split_min_size is not None:
        newton.SPLIT_MIN_SIZE = split_min_size
    c0, t0 = time.process_time(), time.perf_counter()
    args = build_parser().parse_args(["solve", *flag_list(flags)])
    problem = problem_from_args(args)
    w0 = initial_weights(problem, "random", init_seed(args))
    options = NewtonOptions(**{"max_time_s": cap, "max_iter": 1000, "print_level": print_level, **opts})
    lines: list[str] = []
    sol = newton_solve(problem, w0, options, log=lines.append)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"status": sol.status.value, "iterations": sol.iterations, "objective": sol.objective,
            "grad_norm": sol.evaluation.grad_norm,
            "cpu_s": cpu, "wall_s": wall, "stats": {k: v for k, v in sol.stats.items() if isinstance(v, (int, float, str))},
            "log": lines if print_level else []}


def run(label: str, opts: dict[str, Any], only: list[str] | None, cap: float, jobs: int, print_level: int,
        split_min_size: int | None = None) -> None:
    path = RESULTS / f"newton-iter-{label}.jsonl"
    done = {r["id"] for r in load_records(path)}
    todo = [p for p in draw_problems() if p["id"] not in done and (not only or p["id"][:3] in only)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futs = [(p, pool.submit(solve_one, p["flags"], opts, cap, print_level, split_min_size)) for p in todo]
        for p, fut in futs:
            r = fut.result()
            for line in r.pop("log"):
                print(f"{p['id'][:3]} {line}")
            rec = {"id": p["id"], "label": label, "opts": opts, **r}
            print(f"{p['id'][:3]} {r['status']:>9} it {r['iterations']:>5} H {r['stats'].get('hessians', 0):>5} "
                  f"cpu {r['cpu_s']:7.2f} wall {r['wall_s']:7.2f} J {r['objective']:.8g}", flush=True)
            if not only or print_level == 0:
                with path.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def summary(labels: list[str]) -> str:
    base = {r["id"]: r for r in load_records(RESULTS / "census-baseline.jsonl")}
    rows = {lab: {r["id"]: r for r in load_records(RESULTS / f"newton-iter-{lab}.jsonl")} for lab in labels}
    ref = rows[labels[0]]
    out = [f"{'label':<18} {'n':>3} {'ok':>3} {'it med':>7} {'it max':>7} {'cpu med':>8} {'cpu max':>8} {'cpu sum':>8} "
           f"{'wall sum':>8} "
           f"{'J/J_ref med':>11} {'max':>7} {'J/J_ms med':>10} {'>1.02':>5}"]
    for lab in labels:
        rs = rows[lab]
        its = [r["iterations"] for r in rs.values()]
        cpu = [r["cpu_s"] for r in rs.values()]
        ok = sum(r["status"] == "success" for r in rs.values())
        rref = [r["objective"] / ref[i]["objective"] for i, r in rs.items() if i in ref]
        ms = [r["objective"] / base[i]["objective"] for i, r in rs.items()
              if i in base and base[i]["status"] == "success"]
        wall = sum(r.get("wall_s", math.nan) for r in rs.values())
        out.append(f"{lab:<18} {len(rs):>3} {ok:>3} {_med(its):>7.0f} {max(its, default=0):>7} {_med(cpu):>8.2f} "
                   f"{max(cpu, default=0):>8.2f} {sum(cpu):>8.1f} {wall:>8.1f} {_med(rref):>11.4f} {max(rref, default=0):>7.3f} "
                   f"{_med(ms):>10.4f} {sum(x > 1.02 for x in ms):>5}")
    out.append("")
    out.append("id   " + " ".join(f"{lab[:22]:>30}" for lab in labels))
    for pid in sorted(ref):
        cells = []
        for lab in labels:
            r = rows[lab].get(pid)
            cells.append(f"{'':>36}" if r is None else
                         f"{r['iterations']:>5} {r['cpu_s']:>6.2f} {r.get('wall_s', math.nan):>6.2f} "
                         f"{r['objective']:>11.5g} {r['status'][:4]:>4}")
        out.append(f"{pid[:3]}  " + " ".join(cells))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", help="names the results file newton-iter-<label>.jsonl")
    ap.add_argument("--opt", action="append", default=[], help="NewtonOptions field=value (repeatable)")
    ap.add_argument("--only", help="comma-separated problem numbers, e.g. p39,p42")
    ap.add_argument("--cap", type=float, default=60.0, help="max_time_s per problem (default 60)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--print-level", type=int, default=0, help="1: Newton's iteration log (not saved)")
    ap.add_argument("--summary", nargs="+", metavar="LABEL", help="compare labels (the first is the reference)")
    ap.add_argument("--split-min-size", type=int, default=None,
                    help="newton.SPLIT_MIN_SIZE for these solves (the metric's worker process from this n·d·p)")
    a = ap.parse_args(argv)
    if a.summary:
        print(summary(a.summary))
        return 0
    if not a.label:
        ap.error("--label is required unless --summary")
    opts = {k: _value(v) for k, v in (o.split("=", 1) for o in a.opt)}
    run(a.label, opts, a.only.split(",") if a.only else None, a.cap, a.jobs, a.print_level, a.split_min_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
