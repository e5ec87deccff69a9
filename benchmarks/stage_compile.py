"""Compile seconds of the Newton path's stage libraries, and the fit the compile decision uses.

    OMP_NUM_THREADS=1 python benchmarks/stage_compile.py                 # the census's structures
    OMP_NUM_THREADS=1 python benchmarks/stage_compile.py --limit 10      # the first 10 of them

For each distinct structure of the census problems (width, blocks, loss, whether γ = 0; the data
and γ do not change the code), every stage library (a shape's stage function, its metric's and
their loops over ``BLOCK`` samples: ``newton._compile``) is compiled into an empty cache and timed
(wall seconds of the whole compile: code generation, gcc -O2, loading). Then
``t = a + b·instructions^c`` is fitted by least squares (c on a grid) and compared with
``newton.STAGE_COMPILE_FIT``, which ``_StageFunctions`` uses to decide when compiling pays (a
rent-or-buy rule: compile once the interpreted stage functions have cost as much as the compile
would). One JSON line per library goes to ``benchmarks/results/stage-compile.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import census  # noqa: E402  (the sibling script: the drawn problems)

os.environ["OCP_RESNET_CACHE"] = tempfile.mkdtemp(prefix="stage-compile-")  # every library compiled anew

from ocp_resnet.cli import _common as c  # noqa: E402
from ocp_resnet.cli import build_parser  # noqa: E402
from ocp_resnet.solvers import newton  # noqa: E402


def structures(limit: int | None) -> list[list[str]]:
    """Solve flags of one census problem per distinct structure (in drawing order)."""
    seen: set[tuple] = set()
    out = []
    for prob in census.draw_problems():
        f = prob["flags"]
        key = (f["width"], f["blocks"], f["loss"], f["gamma"] == 0.0)
        if key not in seen:
            seen.add(key)
            out.append(census.flag_list(f))
    return out[:limit]


def fit(points: list[tuple[int, float]]) -> tuple[float, float, float, float]:
    """(a, b, c, rms) of t = a + b·n^c, least squares in a and b, c on a grid."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points])
    best = None
    for c_ in np.linspace(0.9, 1.6, 71):
        A = np.vstack([np.ones_like(x), x**c_]).T
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        r = float(np.sum((A @ coef - y) ** 2))
        if best is None or r < best[3]:
            best = (float(coef[0]), float(coef[1]), float(c_), r)
    assert best is not None
    return best[0], best[1], best[2], float(np.sqrt(best[3] / len(x)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first K structures")
    ap.add_argument("--results", type=Path, default=census.RESULTS, help="folder of the JSONL file")
    a = ap.parse_args(argv)
    points = []
    path = a.results / "stage-compile.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    for flags in structures(a.limit):
        problem = c.problem_from_args(build_parser().parse_args(["solve", *flags]))
        fns = newton._StageFunctions(problem)
        for group in fns.groups:
            if all(m.compiled for m in group):
                continue  # (a shape another structure already compiled)
            n = sum(int(m.base.n_instructions()) for m in group)
            t = time.perf_counter()
            newton._compile(group)
            seconds = time.perf_counter() - t
            points.append((n, seconds))
            rec = {"flags": flags, "functions": [m.base.name() for m in group], "instructions": n,
                   "seconds": round(seconds, 3), "estimate": round(newton.stage_compile_seconds(n), 3)}
            with path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
            print(f"{n:>7} instructions  {seconds:6.2f} s  (estimate {rec['estimate']:.2f} s)  {' '.join(flags)}",
                  flush=True)
    if len(points) >= 3:
        a_, b_, c_, rms = fit(points)
        print(f"fit: t = {a_:.3g} + {b_:.3g}·n^{c_:.2f} (rms {rms:.3f} s); in use: {newton.STAGE_COMPILE_FIT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
