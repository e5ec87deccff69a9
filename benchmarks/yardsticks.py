"""The three speed yardsticks of ``ocp-resnet solve``, each timed as one whole process.

    OMP_NUM_THREADS=1 python benchmarks/yardsticks.py --only P1 --label baseline   # the canonical problem
    python benchmarks/yardsticks.py --label baseline                                # P1, P2 and digits
    python benchmarks/yardsticks.py --label newton --extra "--method newton"        # a variant
    python benchmarks/yardsticks.py --summary baseline newton                       # markdown table
    OMP_NUM_THREADS=1 python benchmarks/yardsticks.py --only P1 --repeats 5 --label r8 \
        --baseline PATH/naive_opti_resnet.py        # P1 interleaved with a reference script, and their ratio

* ``P1``: docs/performance.md's canonical flags (two spirals n = 200, N = 10, width 2, bce,
  γ = 1/11, λ = 1e-4, tol 1e-8), 120 s cap.
* ``P2``: ``--dataset spirals --n-samples 2000 --blocks 20 --width 4 --tol 1e-6`` (the rest at
  the defaults), 600 s cap.
* ``digits``: ``--dataset digits --blocks 2 --width 64 --tol 1e-6``, 300 s cap.

The package is byte-compiled first, as an install leaves it (``--fresh-bytecode``: removed
instead; ``census.prepare_bytecode``). Wall, CPU and peak RSS are the child's own (``os.wait4``, the same runner as
benchmarks/census.py); a process past its cap is interrupted, then killed, with its group (status ``timeout``;
iterations and J of the interrupted run where it wrote them).
``--baseline SCRIPT`` runs a reference implementation of P1 (called as ``SCRIPT 200 10 2 ms``, the
argument convention of benchmarks/run.py's ``--baseline``; such a script is not part of the
repository) as a whole process before each P1 run, so both see the same phase of a machine whose
speed drifts; the summary gives the ratio of the median wall times.
Unlike benchmarks/run.py (which times P2 through the API with bce and γ = 1/21), these are the
plain CLI commands with their defaults, so a change of a default shows up here. One JSON line per
run is appended to ``benchmarks/results/yardsticks-<label>.jsonl``; ``--repeats K`` runs each K
times (the summary shows the fastest and the median). Nothing here skips finished runs: each
call adds measurements.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import census  # noqa: E402  (the sibling script: process runner and run-directory reader)

P1 = ["--dataset", "spirals", "--n-samples", "200", "--blocks", "10", "--width", "2", "--loss", "bce",
      "--gamma", "0.0909090909", "--weight-decay", "1e-4", "--tol", "1e-8"]
YARDSTICKS: dict[str, tuple[list[str], float]] = {
    "P1": (P1, 120.0),
    "P2": (["--dataset", "spirals", "--n-samples", "2000", "--blocks", "20", "--width", "4", "--tol", "1e-6"], 600.0),
    "digits": (["--dataset", "digits", "--blocks", "2", "--width", "64", "--tol", "1e-6"], 300.0),
}


def run_yardstick(name: str, extra: list[str], label: str, cap: float | None = None) -> dict[str, Any]:
    flags, default_cap = YARDSTICKS[name]
    run, proc, load = census.solve_once(flags, extra, cap or default_cap)
    return {"name": name, "label": label, "flags": flags, "extra": extra, **run, "exit": proc["exit"],
            "wall_s": proc["wall_s"], "cpu_s": proc["cpu_s"], "peak_rss_mb": proc["peak_rss_mb"], "load1": load,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "tail": proc["output"].strip().splitlines()[-3:] if run["status"].startswith("error") else []}


#: the name of a reference script's records in a yardsticks file (``--baseline``)
BASELINE = "P1-baseline"


def run_baseline(script: Path, label: str) -> dict[str, Any]:
    """One whole process of a reference script for P1 (``SCRIPT 200 10 2 ms``): its wall and CPU
    seconds and its last line of output (the script's own summary)."""
    load = os.getloadavg()[0]
    proc = census.run_process([sys.executable, str(script), "200", "10", "2", "ms"], 600.0, census.child_env())
    lines = proc["output"].strip().splitlines()
    return {"name": BASELINE, "label": label, "script": str(script), "exit": proc["exit"],
            "status": "ok" if proc["exit"] == 0 else f"error (exit {proc['exit']})", "wall_s": proc["wall_s"],
            "cpu_s": proc["cpu_s"], "peak_rss_mb": proc["peak_rss_mb"], "load1": load,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "tail": lines[-2:]}


def results_path(label: str, results: Path = census.RESULTS) -> Path:
    return census.results_path(label, results).with_name(f"yardsticks-{label}.jsonl")


def summary(labels: list[str], results: Path = census.RESULTS) -> str:
    lines = ["| yardstick | label | runs | status | iterations | J | wall s best / median | CPU s best / median "
             "| peak RSS MB | path |", "|" + "---|" * 10]
    for name in YARDSTICKS:
        for lab in labels:
            rows = [r for r in census.load_records(results_path(lab, results)) if r["name"] == name]
            if not rows:
                continue
            walls, cpus = [r["wall_s"] for r in rows], [r["cpu_s"] for r in rows]
            last = rows[-1]
            J = last.get("objective")
            lines.append(
                f"| {name} | {lab} | {len(rows)} | {', '.join(sorted({r['status'] for r in rows}))} "
                f"| {last.get('iterations')} | {'–' if J is None else f'{J:.10f}'} "
                f"| {min(walls):.2f} / {statistics.median(walls):.2f} | {min(cpus):.2f} / {statistics.median(cpus):.2f} "
                f"| {max(r['peak_rss_mb'] for r in rows):.0f} | {census.path_name(last)} |")
    for lab in labels:
        rows = census.load_records(results_path(lab, results))
        base = [r["wall_s"] for r in rows if r["name"] == BASELINE and r["status"] == "ok"]
        ours = [r["wall_s"] for r in rows if r["name"] == "P1" and r.get("converged")]
        if base and ours:
            lines.append(f"\n{lab}: reference script {len(base)} runs, wall median {statistics.median(base):.2f} s "
                         f"({min(base):.2f}–{max(base):.2f}); P1 median {statistics.median(ours):.2f} s: "
                         f"**{statistics.median(base) / statistics.median(ours):.1f}×**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="baseline", help="names the variant and its results file (default baseline)")
    ap.add_argument("--extra", default="", help='solve flags appended to every run, e.g. --extra "--method newton"')
    ap.add_argument("--only", default=",".join(YARDSTICKS), help="comma-separated yardsticks (default P1,P2,digits)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each yardstick (default 1)")
    ap.add_argument("--cap", type=float, default=None, help="wall-clock cap in seconds instead of each one's own")
    ap.add_argument("--summary", nargs="+", metavar="LABEL", help="print the markdown table of these labels")
    ap.add_argument("--results", type=Path, default=census.RESULTS, help="folder of the JSONL files")
    ap.add_argument("--baseline", type=Path, default=None, metavar="SCRIPT",
                    help="a reference implementation of P1 run before each P1 run (SCRIPT 200 10 2 ms)")
    ap.add_argument("--fresh-bytecode", action="store_true",
                    help="remove the package's byte-code first instead of compiling it (census.prepare_bytecode)")
    a = ap.parse_args(argv)
    if a.summary:
        print(summary(a.summary, a.results))
        return 0
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in YARDSTICKS]
    if unknown:
        ap.error(f"--only: unknown yardstick(s) {', '.join(unknown)}; choose from {', '.join(YARDSTICKS)}")
    extra = shlex.split(a.extra)
    path = results_path(a.label, a.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    bytecode = census.prepare_bytecode(a.fresh_bytecode)
    print(f"yardsticks ({a.label}): {', '.join(names)} × {a.repeats}; extra flags {extra or 'none'}; "
          f"byte-code {bytecode}; load {os.getloadavg()[0]:.2f}", flush=True)
    if a.baseline is not None and not a.baseline.is_file():
        ap.error(f"--baseline: no such file {a.baseline}")
    for name in names:
        for _ in range(a.repeats):
            if name == "P1" and a.baseline is not None:
                b = run_baseline(a.baseline, a.label)
                with path.open("a") as fh:
                    fh.write(json.dumps(b) + "\n")
                print(f"  {BASELINE} {b['status']:<14} wall {b['wall_s']:.2f}s cpu {b['cpu_s']:.2f}s "
                      f"({' / '.join(b['tail'])})", flush=True)
            r = {**run_yardstick(name, extra, a.label, a.cap), "bytecode": bytecode}
            with path.open("a") as fh:
                fh.write(json.dumps(r) + "\n")
            print(f"  {name:<7} {r['status']:<14} it {r['iterations']!s:>5} J {r['objective']} wall {r['wall_s']:.2f}s "
                  f"cpu {r['cpu_s']:.2f}s rss {r['peak_rss_mb']:.0f} MB {census.path_name(r)} (load {r['load1']:.2f})",
                  flush=True)
    print(f"done; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
