"""The vanishing study with restarts: which default (loss, γ, λ) of ``ocp-resnet solve`` shows
the stage-cost effect on most problems without costing accuracy (docs/vanishing.md).

    python benchmarks/vanishing_study.py --out runs/study            # the full grid, resumable
    python benchmarks/vanishing_study.py --out runs/study --summary  # the tables only

Every solve is a cold ``solve(problem, seed=s)`` (what a bare ``ocp-resnet solve --init-seed s``
does) on the CLI's default architecture (N = 10 single tanh blocks, width 2, n = 200, tol 1e-8).
One row per (problem, loss, λ, γ, init seed) is appended to ``study.csv``; a re-run skips the rows
already there. "Restarts" = the best objective of the seeds of a cell. Test accuracy is measured
on a fresh draw of the same generator (data seed 1000), both of the full network and of the
network truncated at the recommended depth (the pruned one).
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

PROBLEMS = [  # (dataset, noise)
    ("spirals", 0.0), ("spirals", 0.05), ("moons", 0.1), ("moons", 0.2),
    ("circles", 0.05), ("circles", 0.1), ("xor", 0.0),
]
LOSSES = ("mse", "sce")
GAMMAS = (0.0, 0.03, 0.1, 0.3, 1.0)
LAMBDAS = (1e-3, 1e-4)
SEEDS = (0, 1, 2, 3)
COLUMNS = ("dataset", "noise", "loss", "weight_decay", "gamma", "init_seed", "status", "objective", "final_loss",
           "train_accuracy", "test_accuracy", "n_vanished", "vanished", "recommended_depth", "pruned_test_accuracy",
           "collapsed", "linear_loss", "iterations", "time_s")


def solve_row(dataset: str, noise: float, loss: str, lam: float, gamma: float, seed: int) -> dict:
    from ocp_resnet import Problem, load_dataset, solve
    from ocp_resnet.analysis.blocks import analyze
    from ocp_resnet.analysis.collapse import collapse_record

    ds = load_dataset(dataset, n_samples=200, noise=noise, seed=0)
    test = load_dataset(dataset, n_samples=200, noise=noise, seed=1000)
    problem = Problem.build(ds, blocks=10, width=2, loss=loss, gamma=gamma, weight_decay=lam)
    t0 = time.perf_counter()
    sol = solve(problem, seed=seed, interruptible=False)
    an = analyze(problem, sol.w)
    tev = Problem(problem.spec, problem.objective, test).evaluate(sol.w)
    col = collapse_record(problem, sol.evaluation.final_loss)
    return {
        "dataset": dataset, "noise": noise, "loss": loss, "weight_decay": lam, "gamma": gamma, "init_seed": seed,
        "status": sol.status.value, "objective": sol.objective, "final_loss": sol.evaluation.final_loss,
        "train_accuracy": sol.evaluation.stage_accuracy[-1], "test_accuracy": tev.stage_accuracy[-1],
        "n_vanished": an.n_vanished, "vanished": ";".join(map(str, an.vanished)),
        "recommended_depth": an.recommended_depth,
        "pruned_test_accuracy": tev.stage_accuracy[an.recommended_depth],
        "collapsed": col["collapsed"], "linear_loss": col["linear_loss"], "iterations": sol.iterations,
        "time_s": time.perf_counter() - t0,
    }


def _load(path: Path) -> list[dict]:
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            for k in ("noise", "weight_decay", "gamma", "objective", "final_loss", "train_accuracy", "test_accuracy",
                      "pruned_test_accuracy", "linear_loss"):
                r[k] = float(r[k])
            for k in ("init_seed", "n_vanished", "recommended_depth", "iterations"):
                r[k] = int(r[k])
            r["collapsed"] = r["collapsed"] == "True"
            rows.append(r)
    return rows


def summary(rows: list[dict]) -> str:
    """Two markdown tables: per (loss, λ, γ) over all problems and seeds (single solves), and the
    same with restarts (per problem the best objective of its seeds)."""
    import numpy as np

    cells: dict[tuple, list] = {}
    for r in rows:
        cells.setdefault((r["loss"], r["weight_decay"], r["gamma"]), []).append(r)
    head = ("| loss | λ | γ | problems | single solves: runs | vanished ≥1, not collapsed | collapsed | "
            "train acc | test acc | restarts (best of seeds): vanished ≥1, not collapsed | collapsed | "
            "mean vanished | train acc | test acc | pruned test acc |")
    out = [head, "|" + "|".join(["---"] * 2 + ["---:"] * 14) + "|"]
    for (loss, lam, g), rs in sorted(cells.items()):
        probs: dict[tuple, list] = {}
        for r in rs:
            probs.setdefault((r["dataset"], r["noise"]), []).append(r)
        best = [min(v, key=lambda r: (r["status"] not in ("success", "acceptable"), r["objective"]))
                for v in probs.values()]
        good = lambda xs: sum(1 for r in xs if r["n_vanished"] > 0 and not r["collapsed"])  # noqa: E731
        col = lambda xs: sum(1 for r in xs if r["collapsed"])  # noqa: E731
        m = lambda xs, k: float(np.mean([r[k] for r in xs]))  # noqa: E731
        out.append(f"| {loss} | {lam:g} | {g:g} | {len(probs)} | {len(rs)} | {good(rs)} | {col(rs)} | "
                   f"{m(rs, 'train_accuracy'):.3f} | {m(rs, 'test_accuracy'):.3f} | {good(best)} of {len(best)} | "
                   f"{col(best)} | {m(best, 'n_vanished'):.1f} | {m(best, 'train_accuracy'):.3f} | "
                   f"{m(best, 'test_accuracy'):.3f} | {m(best, 'pruned_test_accuracy'):.3f} |")
    return "\n".join(out)


def bare(rows: list[dict], seed: int = 0) -> str:
    """What one plain solve with init seed ``seed`` shows, per (loss, λ, γ) over the problems."""
    import numpy as np

    cells: dict[tuple, list] = {}
    for r in rows:
        if r["init_seed"] == seed:
            cells.setdefault((r["loss"], r["weight_decay"], r["gamma"]), []).append(r)
    out = ["| loss | λ | γ | problems | vanished ≥ 1, not collapsed | collapsed | test acc mean |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for (loss, lam, g), rs in sorted(cells.items()):
        good = sum(1 for r in rs if r["n_vanished"] > 0 and not r["collapsed"])
        out.append(f"| {loss} | {lam:g} | {g:g} | {len(rs)} | {good} | {sum(r['collapsed'] for r in rs)} | "
                   f"{float(np.mean([r['test_accuracy'] for r in rs])):.3f} |")
    return "\n".join(out)


def per_problem(rows: list[dict], loss: str, lam: float) -> str:
    """Restart winners per problem and γ: vanished blocks (c = collapsed) and test accuracy."""
    gammas = sorted({r["gamma"] for r in rows})
    probs = sorted({(r["dataset"], r["noise"]) for r in rows})
    out = ["| problem | " + " | ".join(f"γ = {g:g}" for g in gammas) + " |", "|---|" + "---|" * len(gammas)]
    for d, nz in probs:
        cells = []
        for g in gammas:
            key = (d, nz, loss, lam, g)
            rs = [r for r in rows if (r["dataset"], r["noise"], r["loss"], r["weight_decay"], r["gamma"]) == key]
            if not rs:
                cells.append("")
                continue
            b = min(rs, key=lambda r: (r["status"] not in ("success", "acceptable"), r["objective"]))
            van = b["vanished"].replace(";", ",") or "–"
            cells.append(f"{van}{' (c)' if b['collapsed'] else ''} / {b['test_accuracy']:.2f}")
        out.append(f"| {d} {nz:g} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _key(r: dict) -> tuple:
    return (r["dataset"], float(r["noise"]), r["loss"], float(r["weight_decay"]), float(r["gamma"]), int(r["init_seed"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--summary", action="store_true", help="only print the summary tables of study.csv")
    ap.add_argument("--losses", default=",".join(LOSSES), help="subset of the grid's losses (comma list)")
    ap.add_argument("--lambdas", default=",".join(map(str, LAMBDAS)), help="subset of the grid's λ values")
    ap.add_argument("--gammas", default=",".join(map(str, GAMMAS)), help="subset of the grid's γ values")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "study.csv"
    done = set()
    if path.exists():
        with open(path, newline="") as fh:
            done = {_key(r) for r in csv.DictReader(fh)}
    if args.summary:
        rows = _load(path)
        print(summary(rows))
        print("\nOne plain solve (init seed 0) per problem:\n")
        print(bare(rows))
        for loss in sorted({r["loss"] for r in rows}):
            for lam in sorted({r["weight_decay"] for r in rows}):
                print(f"\n{loss}, λ = {lam:g}: restart winner's vanished blocks / test accuracy\n")
                print(per_problem(rows, loss, lam))
        return
    if not args.summary:
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                wr.writeheader()
            for lam in [float(v) for v in args.lambdas.split(",")]:
                for loss in args.losses.split(","):
                    for gamma in [float(v) for v in args.gammas.split(",")]:
                        for dataset, noise in PROBLEMS:
                            for seed in SEEDS:
                                if (dataset, noise, loss, lam, gamma, seed) in done:
                                    continue
                                row = solve_row(dataset, noise, loss, lam, gamma, seed)
                                wr.writerow(row)
                                fh.flush()
                                print(f"{dataset} {noise} {loss} lam {lam:g} gamma {gamma:g} seed {seed}: "
                                      f"{row['status']} J {row['objective']:.6g} acc {row['train_accuracy']:.3f}/"
                                      f"{row['test_accuracy']:.3f} vanished {row['n_vanished']} "
                                      f"collapsed {row['collapsed']} {row['time_s']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
