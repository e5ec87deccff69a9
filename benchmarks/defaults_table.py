"""Evidence table for the defaults (loss, γ, λ, restart policy) of ``ocp-resnet solve`` / ``path`` /
``sweep`` / ``train`` and :class:`ocp_resnet.OCPResNetClassifier` (docs/defaults.md).

    OMP_NUM_THREADS=1 python benchmarks/defaults_table.py              # the grid, resumable
    OMP_NUM_THREADS=1 python benchmarks/defaults_table.py --summary    # the markdown tables only
    OMP_NUM_THREADS=1 python benchmarks/defaults_table.py --method auto \
        --out benchmarks/results/defaults_table-auto.jsonl                # the same grid on the path auto takes

Every problem is split once into train / held-out (stratified, seeded) and standardised with
scikit-learn's ``StandardScaler`` fitted on the training part, as a user would. Every solve
mirrors ``OCPResNetClassifier.fit``: ``Problem.build`` with the library's default architecture
(10 single tanh blocks, pad stem, width = number of features) and ``solve(problem,
method=METHOD, seed=s)`` with the default ``IpoptOptions`` (tol 1e-8, 3000 iterations);
``--method`` is ``multiple-shooting`` by default (how the published table was measured) or
``auto`` (the exact Newton path the estimator takes now). One JSON line per (problem, loss, γ, λ, init seed) goes to
``benchmarks/results/defaults_table.jsonl``; a re-run skips the lines already there.
Reference lines (``kind: "reference"``) hold ``MLPClassifier(random_state=0)`` and
``LogisticRegression()`` with their defaults on the same splits.

Restart policies are evaluated offline: "single" = init seed 0's result; "retry" =
the first non-collapsed of seeds 0, 1, 2 (collapsed only when all three are).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

#: name -> (generator, noise); every problem has N_SAMPLES points before the split
PROBLEMS: dict[str, tuple[str, float]] = {
    "spirals-0": ("spirals", 0.0), "spirals-0.05": ("spirals", 0.05),
    "moons-0.1": ("moons", 0.1), "moons-0.2": ("moons", 0.2),
    "circles-0.1": ("circles", 0.1), "circles-0.2": ("circles", 0.2),
    "xor-0": ("xor", 0.0),
    "blobs3": ("blobs3", 0.0), "blobs4": ("blobs4", 0.0),
    "digits-pca4": ("digits", 0.0),
}
N_SAMPLES = 300  # 200 train / 100 held-out
TEST_FRACTION = 1 / 3
DIGITS_DIM = 4  # PCA components: width 4 (the estimator's width = number of features)
LOSSES = ("mse", "sce")
GAMMAS = (0.0, 0.1, 1.0)
LAMBDAS = (1e-4, 1e-3)
SEEDS = (0, 1, 2)
OUT = Path(__file__).resolve().parent / "results" / "defaults_table.jsonl"
PRUNE_SLACK = 0.005  # "unchanged held-out accuracy": pruned ≥ full − 0.005


def make_split(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) of a problem: stratified seeded split, standardised on train."""
    from sklearn.datasets import load_digits, make_blobs
    from sklearn.decomposition import PCA
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from ocp_resnet import load_dataset

    gen, noise = PROBLEMS[name]
    pca = False
    if gen in ("spirals", "moons", "circles", "xor"):
        ds = load_dataset(gen, n_samples=N_SAMPLES, noise=noise, seed=seed)
        X, y = ds.X, ds.y
    elif gen.startswith("blobs"):
        # overlapping clusters (std 2.5 in a ±10 box) so that no class is trivially separable
        X, y = make_blobs(n_samples=N_SAMPLES, centers=int(gen[-1]), cluster_std=2.5, random_state=seed)
    elif gen == "digits":
        d = load_digits()
        X, _, y, _ = train_test_split(d.data, d.target, train_size=N_SAMPLES, stratify=d.target, random_state=seed)
        pca = True
    else:
        raise ValueError(f"unknown problem {name}")
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=TEST_FRACTION, stratify=y, random_state=seed)
    if pca:  # fitted on the training part only, as in a Pipeline
        p = PCA(n_components=DIGITS_DIM, random_state=seed).fit(Xtr)
        Xtr, Xte = p.transform(Xtr), p.transform(Xte)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), np.asarray(ytr, int), sc.transform(Xte), np.asarray(yte, int)


def _datasets(name: str) -> tuple[Any, Any]:
    from ocp_resnet.data import Dataset

    Xtr, ytr, Xte, yte = make_split(name)
    c = int(max(ytr.max(), yte.max()) + 1)
    return Dataset(Xtr, ytr, c, f"{name} train"), Dataset(Xte, yte, c, f"{name} held-out")


def solve_row(name: str, loss: str, gamma: float, lam: float, seed: int, method: str = "multiple-shooting"
              ) -> dict[str, Any]:
    """One cold solve, as ``OCPResNetClassifier(loss=, gamma=, weight_decay=, random_state=seed).fit``."""
    from ocp_resnet import Problem, solve
    from ocp_resnet.analysis.blocks import analyze
    from ocp_resnet.analysis.collapse import collapse_record
    from ocp_resnet.analysis.prune import prune_problem

    train, test = _datasets(name)
    problem = Problem.build(train, width=train.n_features, loss=loss, gamma=gamma, weight_decay=lam)
    t0 = time.perf_counter()
    if method == "multiple-shooting":
        sol = solve(problem, method=method, seed=seed, interruptible=False)
    else:  # as the estimator and the CLI: the solver object, which hands auto over to Newton
        from ocp_resnet.solvers import make_solver

        sol = make_solver(method=method).solve(problem, "random", seed)
    time_s = time.perf_counter() - t0
    an = analyze(problem, sol.w, evaluation=sol.evaluation)
    col = collapse_record(problem, sol.evaluation.final_loss)
    held = Problem(problem.spec, problem.objective, test)
    test_acc = held.evaluate(sol.w).stage_accuracy[-1]
    pruned_acc = test_acc
    if an.vanished:
        pp, net = prune_problem(held, sol.w, an.vanished)
        pruned_acc = pp.evaluate(net.weights).stage_accuracy[-1]
    return {
        "kind": "solve", "problem": name, "loss": loss, "gamma": gamma, "weight_decay": lam, "init_seed": seed,
        "n_train": train.n_samples, "n_test": test.n_samples, "width": train.n_features,
        "status": sol.status.value, "collapsed": bool(col["collapsed"]), "linear_loss": col["linear_loss"],
        "objective": float(sol.objective), "final_loss": float(sol.evaluation.final_loss),
        "train_accuracy": float(sol.evaluation.stage_accuracy[-1]), "test_accuracy": float(test_acc),
        "vanished": list(an.vanished), "n_vanished": an.n_vanished, "pruned_blocks": problem.spec.n_blocks - an.n_vanished,
        "pruned_test_accuracy": float(pruned_acc), "iterations": int(sol.iterations), "time_s": time_s,
        "method": sol.method,
    }


def reference_rows(name: str) -> list[dict[str, Any]]:
    """MLPClassifier(random_state=0) and LogisticRegression() with their defaults on the same split."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    Xtr, ytr, Xte, yte = make_split(name)
    rows = []
    for label, est in (("MLPClassifier", MLPClassifier(random_state=0)), ("LogisticRegression", LogisticRegression())):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # MLP's default 200 epochs; recorded as is
            est.fit(Xtr, ytr)
        rows.append({"kind": "reference", "problem": name, "model": label, "train_accuracy": float(est.score(Xtr, ytr)),
                     "test_accuracy": float(est.score(Xte, yte)), "time_s": time.perf_counter() - t0})
    return rows


# ------------------------------------------------------------------------------------ summary
def load(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none if it does not exist), the first of any duplicate key."""
    if not path.exists():
        return []
    seen: dict[tuple, dict] = {}
    with open(path) as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                seen.setdefault(_key(r), r)
    return list(seen.values())


def _cells(rows: list[dict]) -> dict[tuple, dict[str, dict[int, dict]]]:
    """(loss, γ, λ) -> problem -> init seed -> row."""
    out: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in rows:
        if r["kind"] == "solve":
            out.setdefault((r["loss"], r["gamma"], r["weight_decay"]), {}).setdefault(r["problem"], {})[r["init_seed"]] = r
    return out


def policy_pick(seeds: dict[int, dict], policy: str) -> tuple[dict | None, int]:
    """(returned row, solves it cost) of a restart policy; None while the needed seeds are missing."""
    if policy == "single":
        return seeds.get(0), 1
    for i, s in enumerate(SEEDS):  # retry on collapse: first non-collapsed of 0, 1, 2
        if s not in seeds:
            return None, i
        if not seeds[s]["collapsed"] or s == SEEDS[-1]:
            return seeds[s], i + 1
    return None, 0


def _effect(r: dict) -> bool:
    """≥ 1 block vanished, not collapsed, held-out accuracy of the pruned network unchanged."""
    return r["n_vanished"] > 0 and not r["collapsed"] and r["pruned_test_accuracy"] >= r["test_accuracy"] - PRUNE_SLACK


def _mlp(rows: list[dict]) -> dict[str, float]:
    return {r["problem"]: r["test_accuracy"] for r in rows if r["kind"] == "reference" and r["model"] == "MLPClassifier"}


def common_problems(rows: list[dict], all_seeds: bool = False) -> list[str]:
    """The problems whose retry-policy result (``all_seeds``: every seed) is there in every cell of
    the grid, so that cells are compared on the same problems while the slow ones fill in."""
    cells = _cells(rows)
    if all_seeds:
        return [p for p in PROBLEMS if cells and all(set(SEEDS) <= set(c.get(p, {})) for c in cells.values())]
    return [p for p in PROBLEMS if cells and all(policy_pick(c.get(p, {}), "retry")[0] is not None for c in cells.values())]


def cell_stats(rows: list[dict], problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Per (loss, γ, λ) × policy: the summary numbers over ``problems`` (default: those complete
    for the policy in that cell)."""
    mlp = _mlp(rows)
    stats = []
    for (loss, g, lam), probs in sorted(_cells(rows).items()):
        if problems is not None:
            probs = {p: v for p, v in probs.items() if p in problems}
        for policy in ("single", "retry"):
            picked = [(p, *policy_pick(s, policy)) for p, s in sorted(probs.items())]
            picked = [(p, r, c) for p, r, c in picked if r is not None]
            if not picked:
                continue
            rs = [r for _, r, _ in picked]
            # collapse rate of returned results over problems × seeds: single = every seed's own
            # solve; retry = the policy started from each seed (a cyclic retry order), counted
            # where the seeds for it are there
            returned = []
            for seeds in probs.values():
                for s0 in SEEDS:
                    if policy == "single":
                        if s0 in seeds:
                            returned.append(seeds[s0]["collapsed"])
                    else:
                        order = [SEEDS[(SEEDS.index(s0) + j) % len(SEEDS)] for j in range(len(SEEDS))]
                        if all(s in seeds for s in order):
                            returned.append(all(seeds[s]["collapsed"] for s in order))
            gaps = [mlp[p] - r["test_accuracy"] for p, r, _ in picked if p in mlp]
            worst = max(gaps) if gaps else float("nan")
            worst_p = picked[int(np.argmax(gaps))][0] if gaps else ""
            stats.append({
                "loss": loss, "gamma": g, "weight_decay": lam, "policy": policy, "problems": len(picked),
                "returned": len(returned), "collapsed": int(sum(returned)),
                "collapsed_problems": sum(r["collapsed"] for r in rs),
                "test_acc": float(np.mean([r["test_accuracy"] for r in rs])),
                "worst_gap": worst, "worst_problem": worst_p,
                "within2": sum(1 for x in gaps if x <= 0.02),
                "effect": sum(_effect(r) for r in rs),
                "effect_all": sum(_effect(r) for v in probs.values() for r in v.values()),
                "solves": sum(len(v) for v in probs.values()),
                "mlp_acc": float(np.mean([mlp[p] for p, _, _ in picked if p in mlp])) if gaps else float("nan"),
                # every solve of the cell (all seeds) for speed: wall time on a shared machine varies with its load
                "median_time": float(np.median([r["time_s"] for v in probs.values() for r in v.values()])),
                "median_iter": float(np.median([r["iterations"] for v in probs.values() for r in v.values()])),
                "mean_solves": float(np.mean([c for _, _, c in picked])),
            })
    return stats


def summary_table(rows: list[dict], problems: list[str] | None = None) -> str:
    """The markdown table per (loss, γ, λ) × restart policy."""
    out = ["| loss | γ | λ | policy | problems | collapsed (returned / problems×seeds) | collapsed problems (seed-0 start) | "
           "held-out acc mean | "
           "worst gap to MLP (problem) | within 2 pts of MLP | vanished ≥ 1, pruned acc unchanged | "
           "same, every solve of the cell | median solve s | median IPOPT iterations | solves per fit |",
           "|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in cell_stats(rows, problems):
        out.append(f"| {s['loss']} | {s['gamma']:g} | {s['weight_decay']:g} | {s['policy']} | {s['problems']} | "
                   f"{s['collapsed']} / {s['returned']} | {s['collapsed_problems']} | {s['test_acc']:.3f} | "
                   f"{s['worst_gap']:+.3f} ({s['worst_problem']}) | {s['within2']} of {s['problems']} | "
                   f"{s['effect']} of {s['problems']} | {s['effect_all']} of {s['solves']} | "
                   f"{s['median_time']:.1f} | {s['median_iter']:.0f} | {s['mean_solves']:.2f} |")
    return "\n".join(out)


def winner(rows: list[dict], problems: list[str]) -> dict[str, Any] | None:
    """The order of docs/defaults.md over the retry-policy cells, on the problems every cell has:
    (a) fewest collapsed results returned (seed-0 start, then every start); (b) accuracy gate:
    mean held-out accuracy within 2 points of MLPClassifier's mean and of the best cell's mean;
    (c) most problems where a block vanished without losing held-out accuracy; then accuracy."""
    cand = [s for s in cell_stats(rows, problems) if s["policy"] == "retry"]
    if not cand:
        return None
    best = max(s["test_acc"] for s in cand)
    gate = lambda s: s["test_acc"] >= max(s["mlp_acc"], best) - 0.02  # noqa: E731
    return min(cand, key=lambda s: (s["collapsed_problems"], s["collapsed"], not gate(s), -s["effect"], -s["test_acc"]))


def per_problem(rows: list[dict], loss: str, gamma: float, lam: float) -> str:
    """Per problem, one cell: every seed and both policies, with the reference accuracies."""
    refs: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["kind"] == "reference":
            refs.setdefault(r["problem"], {})[r["model"]] = r["test_accuracy"]
    probs = _cells(rows).get((loss, gamma, lam), {})
    out = ["| problem | seed 0 / 1 / 2: held-out acc, vanished blocks (c = collapsed) | single: acc | retry: acc | "
           "retry: pruned acc | retry: vanished | MLP | LogReg |",
           "|---|---|---:|---:|---:|---|---:|---:|"]
    for p in PROBLEMS:
        seeds = probs.get(p, {})
        cells = []
        for s in SEEDS:
            r = seeds.get(s)
            if r is None:
                cells.append("…")
                continue
            van = ",".join(map(str, r["vanished"])) or "–"
            cells.append(f"{r['test_accuracy']:.2f} {van}{' (c)' if r['collapsed'] else ''}")
        one, _ = policy_pick(seeds, "single")
        ret, _ = policy_pick(seeds, "retry")
        f = lambda r, k: f"{r[k]:.2f}" if r else "…"  # noqa: E731
        van = (",".join(map(str, ret["vanished"])) or "–") + (" (c)" if ret["collapsed"] else "") if ret else "…"
        ref = refs.get(p, {})
        out.append(f"| {p} | {' / '.join(cells)} | {f(one, 'test_accuracy')} | {f(ret, 'test_accuracy')} | "
                   f"{f(ret, 'pruned_test_accuracy')} | {van} | {ref.get('MLPClassifier', float('nan')):.2f} | "
                   f"{ref.get('LogisticRegression', float('nan')):.2f} |")
    return "\n".join(out)


def reference_table(rows: list[dict]) -> str:
    """Train / held-out accuracy of the two scikit-learn references per problem."""
    out = ["| problem | MLPClassifier train | MLPClassifier held-out | LogisticRegression train | LogisticRegression held-out |",
           "|---|---:|---:|---:|---:|"]
    refs: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["kind"] == "reference":
            refs.setdefault(r["problem"], {})[r["model"]] = r
    for p in PROBLEMS:
        m, lr = refs.get(p, {}).get("MLPClassifier"), refs.get(p, {}).get("LogisticRegression")
        if m and lr:
            out.append(f"| {p} | {m['train_accuracy']:.3f} | {m['test_accuracy']:.3f} | {lr['train_accuracy']:.3f} | "
                       f"{lr['test_accuracy']:.3f} |")
    return "\n".join(out)


def _key(r: dict) -> tuple:
    if r["kind"] == "reference":
        return ("reference", r["problem"], r["model"])
    return ("solve", r["problem"], r["loss"], float(r["gamma"]), float(r["weight_decay"]), int(r["init_seed"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="JSONL file (appended to, resumable)")
    ap.add_argument("--summary", action="store_true", help="only print the markdown tables of --out")
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="subset of the problems (comma list)")
    ap.add_argument("--losses", default=",".join(LOSSES))
    ap.add_argument("--gammas", default=",".join(map(str, GAMMAS)))
    ap.add_argument("--lambdas", default=",".join(map(str, LAMBDAS)))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--method", default="multiple-shooting", choices=("multiple-shooting", "auto", "newton"),
                    help="solver path of every solve (default multiple-shooting, as the published table)")
    ap.add_argument("--claims", type=Path, default=Path("/tmp/defaults_table_claims"),
                    help="folder of per-job claim files, so that parallel workers never run the same solve")
    args = ap.parse_args()
    rows = load(args.out)
    if args.summary:
        sets = {"with all seeds in every cell": common_problems(rows, all_seeds=True),
                "with the retry policy's result in every cell": common_problems(rows)}
        wins = []
        for what, probs in sets.items():
            print(f"Over the {len(probs)} problems {what} ({', '.join(probs)}):\n")
            print(summary_table(rows, probs))
            w = winner(rows, probs)
            if w:
                wins.append((w["loss"], w["gamma"], w["weight_decay"]))
                print(f"\nWinner on these problems (retry policy; order: collapses, mean accuracy within 2 pts of MLP "
                      f"and of the best cell, effect): {w['loss']}, γ = {w['gamma']:g}, λ = {w['weight_decay']:g}\n")
        for cell in dict.fromkeys(wins):
            print(f"\nPer problem, {cell[0]}, γ = {cell[1]:g}, λ = {cell[2]:g}:\n")
            print(per_problem(rows, *cell))
        print("\nReference rows (scikit-learn defaults, same splits):\n")
        print(reference_table(rows))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.claims.mkdir(parents=True, exist_ok=True)
    problems = args.problems.split(",")
    for p in problems:
        if p not in PROBLEMS:
            ap.error(f"unknown problem {p!r}: use {', '.join(PROBLEMS)}")

    def emit(row: dict) -> None:
        with open(args.out, "a") as fh:  # one short append per line: safe with parallel workers
            fh.write(json.dumps(row) + "\n")

    done = {_key(r) for r in rows}
    for p in problems:
        for r in reference_rows(p):
            if _key(r) not in done:
                emit(r)
    jobs = [(p, loss, float(g), float(lam), int(s))
            for s in args.seeds.split(",") for lam in args.lambdas.split(",") for g in args.gammas.split(",")
            for loss in args.losses.split(",") for p in problems]
    while True:  # re-read the results before every job: the order depends on what collapsed
        rows = load(args.out)
        by = {_key(r): r for r in rows}
        job = None
        for cand in sorted(jobs, key=lambda j: _priority(j, by)):
            if ("solve", *cand) in by or not _claim(args.claims, cand):
                continue
            job = cand
            break
        if job is None:
            return
        r = solve_row(*job, method=args.method)
        emit(r)
        print(f"{job[0]} {job[1]} γ {job[2]:g} λ {job[3]:g} seed {job[4]}: {r['status']} J {r['objective']:.6g} acc "
              f"{r['train_accuracy']:.3f}/{r['test_accuracy']:.3f} vanished {r['vanished']} pruned "
              f"{r['pruned_test_accuracy']:.3f} collapsed {r['collapsed']} {r['time_s']:.1f}s", flush=True)


def _priority(job: tuple, by: dict) -> tuple:
    """Seed 0 of every cell first ("single"), then the retries a collapse asks for, then the rest."""
    p, loss, g, lam, s = job
    earlier = [by.get(("solve", p, loss, g, lam, e)) for e in SEEDS[: SEEDS.index(s)]] if s in SEEDS else []
    needed = bool(earlier) and all(r is not None and r["collapsed"] for r in earlier)
    tier = 0 if s == SEEDS[0] else 1 if needed else 2
    return (tier, s, lam, g, loss, list(PROBLEMS).index(p))


def _claim(folder: Path, job: tuple) -> bool:
    """Claim a job for this process (a file holding its pid); a dead owner's claim is taken over."""
    f = folder / ("_".join(map(str, job)) + ".claim")
    try:
        fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(f.read_text() or 0), 0)
            return False  # owner alive
        except (ProcessLookupError, ValueError):
            f.unlink(missing_ok=True)
            return _claim(folder, job)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True

if __name__ == "__main__":
    main()
