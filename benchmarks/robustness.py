"""Robustness suite of ``ocp-resnet solve``: does every small solve converge, and how fast?

    python benchmarks/robustness.py                      # the full suite with the defaults
    python benchmarks/robustness.py --quick              # seeds 0-1, bce only (+ the extra problems)
    python benchmarks/robustness.py --label old --ipopt recalc_y=no   # a candidate configuration
    python benchmarks/robustness.py --jobs 2             # two solves at a time (times are then loaded)

Cases: the canonical flags (two spirals n=200, N=10 single tanh blocks, width 2, λ=1e-4, tol
1e-8) × γ ∈ {0.0909, 0.09, 1/11, 0.1, 0.12, 0.3, 1} × seeds 0-4 × losses bce/mse/sce, plus the
default problem (a bare ``ocp-resnet solve``) and moons/circles. Each case is one whole
``ocp-resnet solve`` process (start-up included) with a wall-clock cap (``--cap``, a solve past
it counts as not converged). Per group the table gives the converged count, the iterations and
the whole-process wall time (median, worst) and CPU time (median, worst): on a shared machine
the CPU time is the steadier number. ``--json FILE`` keeps every case. The package is
byte-compiled first, as for the census and the yardsticks (``census.prepare_bytecode``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import census  # noqa: E402  (the sibling script: the package's byte-code, as the census and yardsticks prepare it)

GAMMAS = ("0.0909", "0.09", "0.0909090909", "0.1", "0.12", "0.3", "1")
CANONICAL = ["--dataset", "spirals", "--n-samples", "200", "--blocks", "10", "--width", "2", "--branch", "single",
             "--activation", "tanh", "--step", "1", "--weight-decay", "1e-4", "--tol", "1e-8"]
EXTRA = {
    "default": [],
    "moons": ["--dataset", "moons", "--n-samples", "200"],
    "circles": ["--dataset", "circles", "--n-samples", "200"],
}


def cases(quick: bool) -> list[tuple[str, list[str]]]:
    out = []
    losses = ("bce",) if quick else ("bce", "mse", "sce")
    seeds = range(2) if quick else range(5)
    for loss in losses:
        for g in GAMMAS:
            for s in seeds:
                out.append((f"canonical {loss}", CANONICAL + ["--loss", loss, "--gamma", g, "--seed", str(s)]))
    for name, flags in EXTRA.items():
        for s in seeds:
            out.append((name, flags + ["--seed", str(s)]))
    return out


def run_case(group: str, flags: list[str], extra: list[str], cap: float, tmp: str) -> dict:
    out = tempfile.mkdtemp(dir=tmp)
    cmd = [sys.executable, "-c", "from ocp_resnet.cli import entry; entry()", "solve", *flags, *extra,
           "--quiet", "--overwrite", "--out", out]
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cap)
        code, text = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired:
        code, text = None, ""
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = {}
    try:
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    return {
        "group": group, "flags": flags, "exit": code, "status": metrics.get("status", "timeout" if code is None else "?"),
        "iterations": metrics.get("iterations"), "objective": metrics.get("objective"),
        "grad_norm": metrics.get("grad_norm"), "method": metrics.get("method"), "wall_s": wall,
        # with --jobs > 1 the children overlap, so this CPU figure is only exact for --jobs 1
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "tail": text.strip().splitlines()[-3:] if text else [],
    }


def summarise(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    groups["all"] = rows
    head = (f"{'group':<16} {'converged':>10} {'iters med':>9} {'worst':>6} {'wall med':>9} {'worst':>7} "
            f"{'cpu med':>8} {'worst':>7}")
    lines = [head, "-" * len(head)]
    for name, rs in groups.items():
        ok = [r for r in rs if r["status"] == "success"]
        its = [r["iterations"] for r in rs if r["iterations"] is not None]
        walls = [r["wall_s"] for r in rs]
        cpus = [r["cpu_s"] for r in rs]
        lines.append(
            f"{name:<16} {len(ok):>4}/{len(rs):<5} {statistics.median(its) if its else float('nan'):>9.0f} "
            f"{max(its) if its else 0:>6} {statistics.median(walls):>8.2f}s {max(walls):>6.1f}s "
            f"{statistics.median(cpus):>7.2f}s {max(cpus):>6.1f}s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="seeds 0-1, bce only")
    ap.add_argument("--ipopt", action="append", default=[], metavar="NAME=VALUE", help="IPOPT option for every solve")
    ap.add_argument("--flag", action="append", default=[],
                    help="another solve flag for every case, e.g. --flag=--method=single-shooting")
    ap.add_argument("--cap", type=float, default=120.0, help="wall-clock cap per solve in seconds (default 120)")
    ap.add_argument("--jobs", type=int, default=1, help="solves at a time (default 1: undisturbed timings)")
    ap.add_argument("--label", default="defaults")
    ap.add_argument("--json", default=None, help="write every case to this file")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    extra = [f for item in a.ipopt for f in ("--ipopt", item)] + [f for item in a.flag for f in item.split("=", 1)]
    todo = cases(a.quick)
    bytecode = census.prepare_bytecode(fresh=False)
    print(f"robustness suite ({a.label}): {len(todo)} solves, extra flags {extra or 'none'}; byte-code {bytecode}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, a.jobs)) as pool:
        futures = [pool.submit(run_case, g, f, extra, a.cap, tmp) for g, f in todo]
        rows = []
        for fut in futures:
            r = fut.result()
            rows.append(r)
            print(f"  {r['group']:<14} {' '.join(r['flags'][-4:]):<28} {r['status']:<12} it {r['iterations']!s:>4} "
                  f"J {r['objective'] if r['objective'] is not None else float('nan'):.8f} "
                  f"wall {r['wall_s']:.2f}s cpu {r['cpu_s']:.2f}s", flush=True)
    print()
    print(summarise(rows))
    if a.json:
        Path(a.json).write_text(json.dumps({"label": a.label, "extra": extra, "bytecode": bytecode, "rows": rows}, indent=1))
    return 0 if all(r["status"] == "success" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
