"""Example 2: which blocks vanish? γ = 0 against γ > 0, several seeds, then pruning.

Two spirals (n = 100), N = 8 single tanh blocks of width 2, λ = 1e-3, IPOPT (multiple
shooting, tol 1e-8). For each loss (MSE, soft cross-entropy), γ ∈ {0, 0.1, 1} and three seeds it
solves the problem, counts the vanished blocks (relative norm ≤ 1e-3) and the tail-to-head
norm ratio, prints mean and spread, then prunes the best γ = 0.1 MSE solution and re-solves it.
A small version of the study in docs/vanishing.md (under a minute of CPU time).

    python examples/02_which_blocks_vanish.py [--out DIR] [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ocp_resnet import IpoptOptions, load_dataset, solve
from ocp_resnet.analysis import analyze, prune_problem, summarize
from ocp_resnet.analysis.sweep import format_summary
from ocp_resnet.model.problem import Problem

GAMMAS = (0.0, 0.1, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/example02", help="where to write the figures")
    ap.add_argument("--seeds", default="0,1,2", help="initial-weight seeds (default 0,1,2)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_dataset("spirals", n_samples=100)
    t0 = time.perf_counter()

    rows, best = [], {}
    for loss in ("mse", "sce"):
        for gamma in GAMMAS:
            problem = Problem.build(data, blocks=8, width=2, loss=loss, gamma=gamma, weight_decay=1e-3)
            for seed in seeds:
                sol = solve(problem, options=IpoptOptions(tol=1e-8), seed=seed)
                an = analyze(problem, sol.weights)
                rows.append({"loss": loss, "gamma": gamma, "blocks": 8, "seed": seed, "status": sol.status.value,
                             "objective": sol.objective, "final_loss": an.final_loss,
                             "train_accuracy": an.stage_accuracy[-1], "n_vanished": an.n_vanished,
                             "tail_to_head": an.tail_to_head})
                key = (loss, gamma)
                if sol.success and (key not in best or sol.objective < best[key][1].objective):
                    best[key] = (problem, sol, an)
    for loss in ("mse", "sce"):
        print(f"\nloss {loss}: tail-to-head ratio and vanished blocks (of 8) over seeds {seeds}")
        print(format_summary(summarize([r for r in rows if r["loss"] == loss])))

    # figures: turnpikes of the best MSE solutions, their norm profiles, and decision regions
    from ocp_resnet.plotting import plot_decision_regions, plot_norm_profiles, plot_turnpike

    plot_norm_profiles({f"{loss}, γ = {g:g}": best[(loss, g)][2].block_norms for loss in ("mse", "sce")
                        for g in GAMMAS if (loss, g) in best}, out / "norm_profiles.png",
                       title="relative block norms of the best solution per loss and γ")
    for gamma in GAMMAS:
        if ("mse", gamma) in best:
            problem, sol, an = best[("mse", gamma)]
            plot_turnpike(an, out / f"turnpike_mse_gamma{gamma:g}.png",
                          title=f"MSE, γ = {gamma:g}: {an.n_vanished} of 8 blocks vanished")
            plot_decision_regions(problem, sol.weights, out / f"decision_regions_mse_gamma{gamma:g}.png")

    # prune the best γ = 0.1 MSE solution and re-solve the smaller problem from the pruned weights
    if ("mse", 0.1) in best:
        problem, sol, an = best[("mse", 0.1)]
        pruned, net = prune_problem(problem, sol.weights, an.vanished)
        change = np.max(np.abs(problem.stage_outputs(sol.weights)[-1] - pruned.stage_outputs(net.weights)[-1]))
        re = solve(pruned, options=IpoptOptions(tol=1e-8), init=net.weights)
        print(f"\nprune (MSE, γ = 0.1): {problem.spec.n_blocks} → {pruned.spec.n_blocks} blocks, "
              f"max output change {change:.2e}, accuracy {sol.evaluation.stage_accuracy[-1]:.3f} → "
              f"{pruned.evaluate(net.weights).stage_accuracy[-1]:.3f}; re-solved: {re.status.value}, "
              f"{re.iterations} iterations, final loss {sol.evaluation.final_loss:.6g} → {re.evaluation.final_loss:.6g}")
    print(f"\nfigures in {out}/  (total {time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
