"""Example 4: which stages vanish along a γ path — warm starts, collapse check, held-out data.

Two moons (n = 200, noise 0.1, a quarter held out), N = 10 single tanh blocks of width 2, MSE,
λ = 1e-3. Solves the γ path 1, 0.3, 0.1, 0.03, 0 (from strong stage costs down to ordinary training), each point
warm-started from the previous one, and the same points cold, to compare IPOPT iterations.
Prints the path table and each point's one-line verdict, writes path.png and one run directory
per point, then prunes the vanished blocks of the first point and checks the held-out accuracy
of the pruned network. The CLI equivalent of the path is

    ocp-resnet path --dataset moons --gammas 1,0.3,0.1,0.03,0 --val-fraction 0.25 --out DIR

    python examples/04_gamma_path.py [--out DIR]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ocp_resnet import Problem, load_dataset, path
from ocp_resnet.analysis import analyze, prune_run
from ocp_resnet.analysis.blocks import verdict
from ocp_resnet.analysis.collapse import collapse_record
from ocp_resnet.analysis.gamma_path import run_path
from ocp_resnet.cli.path import format_rows
from ocp_resnet.data.validation import split
from ocp_resnet.model.evaluation import validation_metrics

GAMMAS = [1.0, 0.3, 0.1, 0.03, 0.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/example04", help="where to write path.csv, path.png and the runs")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)

    train, val = split(load_dataset("moons", n_samples=200), 0.25, seed=0)
    problem = Problem.build(train, blocks=10, width=2, loss="mse", gamma=GAMMAS[0], weight_decay=1e-3)

    rows = run_path(problem, GAMMAS, out, val=val, log=print)
    print()
    print(format_rows(rows))
    print()
    for row in rows:
        from ocp_resnet.runs import Run

        run = Run(row["run_dir"])
        p = run.problem()
        an = analyze(p, run.weights)
        print(f"gamma {row['gamma']:g}: {verdict(an, **collapse_record(p, an.final_loss))}")

    cold = path(problem, GAMMAS, warm_start=False)
    warm_iters = sum(int(r["iterations"]) for r in rows)
    cold_iters = sum(s.iterations for s in cold)
    print(f"\nIPOPT iterations over the path: warm-started {warm_iters}, cold {cold_iters}")
    print("objectives warm vs cold: " + ", ".join(
        f"γ {g:g}: {r['objective']:.5f} / {s.objective:.5f}" for g, r, s in zip(GAMMAS, rows, cold)))

    first = rows[0]
    if first["n_vanished"] and not first["collapsed"]:
        report, pruned, w = prune_run(first["run_dir"], out=out / "pruned")
        vm = validation_metrics(pruned, w, val)
        print(f"\npruned the γ = {first['gamma']:g} point: {report.blocks_before} -> {report.blocks_after} blocks, "
              f"held-out accuracy {first['val_accuracy']:.3f} -> {vm['val_accuracy']:.3f}, largest output change "
              f"{report.max_output_change:.1e}")
    print(f"\nfigure: {out / 'path.png'}")


if __name__ == "__main__":
    main()
