"""Census of random small problems: the yardstick of solver speed across the small-problem space.

    OMP_NUM_THREADS=1 python benchmarks/census.py --label baseline          # all problems, defaults
    python benchmarks/census.py --label newton --extra "--method newton"      # a variant (extra solve flags)
    python benchmarks/census.py --label baseline --only p03,p17               # just these problems
    python benchmarks/census.py --label try --limit 2                         # the first two problems
    python benchmarks/census.py --summary baseline                            # markdown table of one label
    python benchmarks/census.py --summary baseline newton                     # two labels + objective ratios
    python benchmarks/census.py --list                                        # the drawn problems

The problems are drawn from a fixed seed (``--seed``, default 0): 40 problems over the datasets
spirals/moons/circles/xor with n 100–300, 4–12 single tanh blocks (the default branch), width 2–4,
losses mse/sce/bce/ce (bce only for two classes, which all four generated sets have),
γ ∈ {0, 0.05, 0.2, 0.5, 1, 2}, λ ∈ {1e-5, 1e-4, 1e-3}, a noise level per dataset and an init
seed, plus 3 width-6 and 3 n = 500 problems (46 in all). Each problem is a dict of
``ocp-resnet solve`` flags with a stable id (``p00``…``p45`` plus a short hash of its flags, so a
changed drawing cannot be mistaken for the old one).

Every problem is one whole ``python -m ocp_resnet solve … --quiet`` process (start-up included,
everything else at the defaults, ``--extra`` appended) with a wall-clock cap (``--cap``, default
120 s; past it the process group gets SIGINT, so the solver stops at its next iteration and
writes its last iterate, and SIGKILL 10 s later; the status is ``timeout``, with the iterations,
objective and path of the interrupted run where it got to write them), writing into a temporary
run directory that is read and deleted. CPU time and peak RSS are the child's own
(``os.wait4``), so they are exact even with ``--jobs`` > 1; wall times are only comparable at
``--jobs 1`` (the default) on a quiet machine. On a shared machine compare CPU times.
The package is byte-compiled first, as an install leaves it (``prepare_bytecode``;
``--fresh-bytecode`` instead removes it, so that every process compiles its modules again, as
where PYTHONDONTWRITEBYTECODE is set); each record says which (``bytecode``).

One JSON line per problem is appended to ``benchmarks/results/census-<label>.jsonl``; a restart
skips the ids already there (resumable: delete lines to redo them).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

DATASETS = ("spirals", "moons", "circles", "xor")
# noise levels per dataset around each generator's default (data.py: spirals 0, moons 0.1, circles 0.05, xor 0)
NOISE = {"spirals": (0.0, 0.05, 0.1), "moons": (0.05, 0.1, 0.2), "circles": (0.02, 0.05, 0.1), "xor": (0.0, 0.05, 0.1)}
N_CLASSES = {"spirals": 2, "moons": 2, "circles": 2, "xor": 2}
LOSSES = ("mse", "sce", "bce", "ce")
GAMMAS = (0.0, 0.05, 0.2, 0.5, 1.0, 2.0)
WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3)
N_RANGE = (100, 300)
BLOCKS_RANGE = (4, 12)
WIDTH_RANGE = (2, 4)
N_RANDOM, N_WIDE, N_LARGE = 40, 3, 3
WIDE_WIDTH, LARGE_N = 6, 500

Problem = dict[str, Any]  # {"id": str, "flags": {flag: value}}


# ----------------------------------------------------------------------------- drawing
def _draw_flags(rng: random.Random) -> dict[str, Any]:
    dataset = rng.choice(DATASETS)
    losses = [loss for loss in LOSSES if loss != "bce" or N_CLASSES[dataset] == 2]
    return {
        "dataset": dataset,
        "n-samples": rng.randint(*N_RANGE),
        "noise": rng.choice(NOISE[dataset]),
        "blocks": rng.randint(*BLOCKS_RANGE),
        "width": rng.randint(*WIDTH_RANGE),
        "loss": rng.choice(losses),
        "gamma": rng.choice(GAMMAS),
        "weight-decay": rng.choice(WEIGHT_DECAYS),
        "seed": rng.randint(0, 9),
        "init-seed": rng.randint(0, 99),
    }


def _problem_id(index: int, flags: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(flags, sort_keys=True).encode()).hexdigest()[:6]
    return f"p{index:02d}-{digest}"


def draw_problems(seed: int = 0) -> list[Problem]:
    """The census problems of ``seed``: 40 random ones, then 3 of width 6 and 3 with n = 500."""
    rng = random.Random(seed)
    all_flags = [_draw_flags(rng) for _ in range(N_RANDOM)]
    for _ in range(N_WIDE):
        all_flags.append({**_draw_flags(rng), "width": WIDE_WIDTH})
    for _ in range(N_LARGE):
        all_flags.append({**_draw_flags(rng), "n-samples": LARGE_N})
    return [{"id": _problem_id(i, f), "flags": f} for i, f in enumerate(all_flags)]


def flag_list(flags: dict[str, Any]) -> list[str]:
    """``{"n-samples": 200}`` → ``["--n-samples", "200"]`` (floats in ``repr`` form: exact round trip)."""
    return [tok for k, v in flags.items() for tok in (f"--{k}", repr(v) if isinstance(v, float) else str(v))]


# ----------------------------------------------------------------------------- running one process
def _stop_group(pid: int, grace: float) -> tuple[int, int, Any]:
    """SIGINT the group of ``pid`` (the solver then stops at its next iteration and writes the run
    directory with the last iterate, status ``interrupted``); SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(pid, sig)  # the whole group: the solver and e.g. a gcc it started
        except ProcessLookupError:
            pass
        t0 = time.perf_counter()
        while wait is None or time.perf_counter() - t0 < wait:
            done, status, usage = os.wait4(pid, 0 if wait is None else os.WNOHANG)
            if done:
                return done, status, usage
            time.sleep(0.05)
    raise AssertionError("unreachable: the SIGKILL wait blocks until the child is reaped")


def run_process(cmd: list[str], cap: float, env: dict[str, str] | None = None, grace: float = 10.0) -> dict[str, Any]:
    """Run ``cmd`` in its own process group with a wall-clock ``cap``; past it, interrupt the group
    (SIGINT) and kill it if it has not ended ``grace`` seconds later.

    Returns exit code (None on timeout), wall s, the child's own CPU s and peak RSS (MB) from
    ``os.wait4`` (exact even when other children run at the same time), and stdout+stderr."""
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
                                start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > cap:
                timed_out = True
                pid, status, usage = _stop_group(proc.pid, grace)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        log.seek(0)
        text = log.read()
    return {"exit": None if timed_out else proc.returncode, "timed_out": timed_out, "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024.0, "output": text}


def solve_command(flags: list[str], extra: list[str], out: str) -> list[str]:
    return [sys.executable, "-m", "ocp_resnet", "solve", *flags, *extra, "--quiet", "--overwrite", "--out", out]


def prepare_bytecode(fresh: bool) -> str:
    """Byte-code of the package for the timed processes: compiled once here (``fresh=False``), as
    ``pip install`` or a first run leaves it, so that no process spends ~0.08 s compiling ~40
    modules (where PYTHONDONTWRITEBYTECODE is set, as on the machine these benchmarks ran on,
    every process would); or, ``fresh``, the package's ``__pycache__`` folders removed, so that
    each process compiles (and, where allowed, writes) its own. Returns which, for the records."""
    import compileall

    package = ROOT / "ocp_resnet"
    if fresh:
        for cache in package.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        return "removed"
    return "compiled" if compileall.compile_dir(str(package), quiet=1) else "compile failed"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_run(out: Path) -> dict[str, Any]:
    """What the run directory says: status, iterations, objective, accuracy and the path taken."""
    metrics, config, stats = (_read_json(out / f) for f in ("metrics.json", "config.json", "stats.json"))
    solver = config.get("solver", {})
    return {
        "status": metrics.get("status"),
        "converged": bool(metrics.get("success", False)),
        "iterations": metrics.get("iterations"),
        "objective": metrics.get("objective"),
        "grad_norm": metrics.get("grad_norm"),
        "train_accuracy": metrics.get("train_accuracy"),
        "collapsed": metrics.get("collapsed"),
        "method": metrics.get("method", solver.get("method")),
        "hessian": solver.get("hessian", stats.get("hessian")),
        "jit": solver.get("jit", stats.get("jit")),
        "divergence_restarts": stats.get("divergence_restarts"),
        "return_status": stats.get("return_status"),
    }


def solve_once(flags: list[str], extra: list[str], cap: float) -> tuple[dict[str, Any], dict[str, Any], float]:
    """One whole ``ocp-resnet solve`` process in a temporary run directory (deleted after reading):
    (what the run directory says, the process record, the load average at the start)."""
    tmp = Path(tempfile.mkdtemp(prefix="census-"))
    try:
        out = tmp / "run"
        load = os.getloadavg()[0]
        proc = run_process(solve_command(flags, extra, str(out)), cap, child_env())
        run = read_run(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if proc["timed_out"]:
        # the interrupted run directory (if written in the grace period) still gives the iterations and J at the cap
        run["status"], run["converged"] = "timeout", False
    elif run["status"] is None:
        run["status"] = f"error (exit {proc['exit']})"
    return run, proc, load


def run_problem(problem: Problem, extra: list[str], cap: float, label: str) -> dict[str, Any]:
    run, proc, load = solve_once(flag_list(problem["flags"]), extra, cap)
    auto = [ln.strip() for ln in proc["output"].splitlines() if ln.strip().startswith("auto:")]
    tail = proc["output"].strip().splitlines()[-3:] if run["status"].startswith("error") else []
    return {"id": problem["id"], "label": label, "flags": problem["flags"], "extra": extra, **run,
            "exit": proc["exit"], "wall_s": proc["wall_s"], "cpu_s": proc["cpu_s"], "peak_rss_mb": proc["peak_rss_mb"],
            "auto": auto[0] if auto else None, "load1": load, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "tail": tail}


# ----------------------------------------------------------------------------- results and summary
def results_path(label: str, results: Path = RESULTS) -> Path:
    if not re.fullmatch(r"[\w.+-]+", label):
        raise SystemExit(f"--label {label!r}: use letters, digits, '.', '+', '-' or '_' (it names a file)")
    return results / f"census-{label}.jsonl"


def load_records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (a torn last line, e.g. from a kill mid-write, is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _fmt(x: float, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def path_name(r: dict[str, Any]) -> str:
    method = {"multiple-shooting": "MS", "single-shooting": "SS"}.get(r.get("method") or "", r.get("method") or "?")
    return f"{method}+{r.get('hessian') or '?'}" + ("+jit" if r.get("jit") else "")


def label_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The numbers of one label's table row."""
    its = [float(r["iterations"]) for r in rows if r.get("iterations") is not None]
    walls = [float(r["wall_s"]) for r in rows]
    cpus = [float(r["cpu_s"]) for r in rows]
    wide4 = [float(r["wall_s"]) for r in rows if r["flags"].get("width") == 4]
    med_wall = statistics.median(walls) if walls else math.nan
    return {
        "count": len(rows),
        "converged": sum(bool(r.get("converged")) for r in rows),
        "collapsed": sum(bool(r.get("collapsed")) for r in rows),
        "timeouts": sum(r.get("status") == "timeout" for r in rows),
        "it_med": statistics.median(its) if its else math.nan, "it_p90": percentile(its, 90),
        "it_max": max(its) if its else math.nan,
        "wall_med": med_wall, "wall_p90": percentile(walls, 90), "wall_max": max(walls) if walls else math.nan,
        "cpu_med": statistics.median(cpus) if cpus else math.nan, "cpu_p90": percentile(cpus, 90),
        "cpu_max": max(cpus) if cpus else math.nan,
        "w4_max_wall": max(wide4) if wide4 else math.nan,
        "w4_ratio": (max(wide4) / med_wall) if wide4 and med_wall > 0 else math.nan,
        "paths": Counter(path_name(r) for r in rows),
    }


def compare(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], worse: float = 0.02) -> dict[str, Any]:
    """Per-problem objective ratios J_b/J_a over the ids both labels have with a finite objective."""
    a = {r["id"]: r for r in rows_a}
    ratios, worse_ids, better_ids = [], [], []
    for r in rows_b:
        ra = a.get(r["id"])
        if ra is None or ra.get("objective") is None or r.get("objective") is None or ra["objective"] <= 0:
            continue
        q = r["objective"] / ra["objective"]
        ratios.append(q)
        if q > 1 + worse:
            worse_ids.append(r["id"])
        elif q < 1 - worse:
            better_ids.append(r["id"])
    cpu = [r["cpu_s"] / a[r["id"]]["cpu_s"] for r in rows_b if r["id"] in a and a[r["id"]]["cpu_s"] > 0]
    return {"common": len(ratios), "ratio_med": statistics.median(ratios) if ratios else math.nan,
            "ratio_max": max(ratios) if ratios else math.nan, "worse": worse_ids, "better": better_ids,
            "cpu_ratio_med": statistics.median(cpu) if cpu else math.nan}


def summary(labels: list[str], results: Path = RESULTS) -> str:
    """Markdown: one row per label; with two labels also the objective comparison b vs a."""
    data = {lab: load_records(results_path(lab, results)) for lab in labels}
    head = ("| label | count | converged | collapsed | timeouts | iterations med / p90 / max | wall s med / p90 / worst "
            "| CPU s med / p90 / worst | width-4 max wall s (× median) | paths chosen |")
    lines = [head, "|" + "---|" * 10]
    for lab, rows in data.items():
        s = label_stats(rows)
        paths = ", ".join(f"{k} {v}" for k, v in s["paths"].most_common())
        lines.append(
            f"| {lab} | {s['count']} | {s['converged']} | {s['collapsed']} | {s['timeouts']} "
            f"| {_fmt(s['it_med'], 0)} / {_fmt(s['it_p90'], 0)} / {_fmt(s['it_max'], 0)} "
            f"| {_fmt(s['wall_med'])} / {_fmt(s['wall_p90'])} / {_fmt(s['wall_max'])} "
            f"| {_fmt(s['cpu_med'])} / {_fmt(s['cpu_p90'])} / {_fmt(s['cpu_max'])} "
            f"| {_fmt(s['w4_max_wall'])} ({_fmt(s['w4_ratio'], 1)}×) | {paths} |")
    lines += ["", "| label | width | count | converged | timeouts | iterations med | CPU s med / worst "
              "| CPU ms per iteration med |", "|" + "---|" * 8]
    for lab, rows in data.items():
        for width in sorted({r["flags"].get("width") for r in rows}, key=str):
            rs = [r for r in rows if r["flags"].get("width") == width]
            its = [r["iterations"] for r in rs if r.get("iterations")]
            cpus = [r["cpu_s"] for r in rs]
            per_it = [1e3 * r["cpu_s"] / r["iterations"] for r in rs if r.get("iterations")]
            lines.append(f"| {lab} | {width} | {len(rs)} | {sum(bool(r.get('converged')) for r in rs)} "
                         f"| {sum(r.get('status') == 'timeout' for r in rs)} "
                         f"| {_fmt(statistics.median(its) if its else math.nan, 0)} "
                         f"| {_fmt(statistics.median(cpus))} / {_fmt(max(cpus))} "
                         f"| {_fmt(statistics.median(per_it) if per_it else math.nan, 0)} |")
    if len(labels) == 2:
        a, b = labels
        c = compare(data[a], data[b])
        lines += ["", f"| {b} vs {a} | problems with J in both | J_b/J_a median | J_b/J_a max | b worse by > 2 % "
                  "| b better by > 2 % | CPU_b/CPU_a median |", "|" + "---|" * 7,
                  f"| | {c['common']} | {_fmt(c['ratio_med'], 4)} | {_fmt(c['ratio_max'], 4)} | {len(c['worse'])} "
                  f"| {len(c['better'])} | {_fmt(c['cpu_ratio_med'], 2)} |"]
        if c["worse"]:
            lines.append(f"\n{b} worse by > 2 %: {', '.join(c['worse'])}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="baseline", help="names the variant and its results file (default baseline)")
    ap.add_argument("--extra", default="", help='solve flags appended to every problem, e.g. --extra "--method newton"')
    ap.add_argument("--seed", type=int, default=0, help="seed of the drawing (default 0)")
    ap.add_argument("--cap", type=float, default=120.0, help="wall-clock cap per solve in seconds (default 120)")
    ap.add_argument("--jobs", type=int, default=1, help="solves at a time (default 1: wall times undisturbed)")
    ap.add_argument("--only", default=None, help="comma-separated ids (or their pNN prefixes) to run")
    ap.add_argument("--limit", type=int, default=None, help="run at most the first K problems")
    ap.add_argument("--summary", nargs="+", metavar="LABEL", help="print the markdown table of one or two labels")
    ap.add_argument("--list", action="store_true", help="print the drawn problems and exit")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSONL files (default benchmarks/results)")
    ap.add_argument("--fresh-bytecode", action="store_true",
                    help="remove the package's byte-code first instead of compiling it (prepare_bytecode)")
    a = ap.parse_args(argv)
    if a.summary:
        if len(a.summary) > 2:
            ap.error("--summary takes one or two labels")
        print(summary(a.summary, a.results))
        return 0
    problems = draw_problems(a.seed)
    if a.list:
        for p in problems:
            print(p["id"], " ".join(flag_list(p["flags"])))
        return 0
    if a.only:
        wanted = [w.strip() for w in a.only.split(",") if w.strip()]
        problems = [p for p in problems if any(p["id"] == w or p["id"].split("-")[0] == w for w in wanted)]
        if not problems:
            ap.error(f"--only {a.only}: no such problem ids (see --list)")
    if a.limit is not None:
        problems = problems[: a.limit]
    extra = shlex.split(a.extra)
    path = results_path(a.label, a.results)
    done = {r["id"] for r in load_records(path)}
    todo = [p for p in problems if p["id"] not in done]
    path.parent.mkdir(parents=True, exist_ok=True)
    bytecode = prepare_bytecode(a.fresh_bytecode)
    print(f"census ({a.label}): {len(todo)} to run, {len(problems) - len(todo)} already in {path}; "
          f"extra flags {extra or 'none'}; byte-code {bytecode}; load {os.getloadavg()[0]:.2f}", flush=True)
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        for r in pool.map(lambda p: run_problem(p, extra, a.cap, a.label), todo):
            r["bytecode"] = bytecode
            with path.open("a") as fh:  # one line per finished problem: a kill loses at most the running ones
                fh.write(json.dumps(r) + "\n")
            print(f"  {r['id']:<10} {' '.join(flag_list(r['flags'])):<150} {r['status']:<14} it {r['iterations']!s:>5} "
                  f"J {_fmt(r['objective'], 6) if r['objective'] is not None else '–':>9} wall {r['wall_s']:6.2f}s "
                  f"cpu {r['cpu_s']:6.2f}s {path_name(r)}", flush=True)
    print(f"done; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
