"""Example 1: solve a small stage-cost ResNet training problem to KKT tolerance 1e-8.

Two spirals, 10 single tanh blocks of width 2, MSE stage costs (γ = 0.1), λ = 1e-3. Solves with
both transcriptions, checks they agree, prints the per-block table and writes a turnpike figure.

    python examples/01_high_accuracy_solve.py [--out DIR]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ocp_resnet import IpoptOptions, IpoptSolver, Problem, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="outputs/example01", help="where to write the figure")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    problem = Problem.build(load_dataset("spirals", n_samples=200), blocks=10, width=2,
                            loss="mse", gamma=0.1, weight_decay=1e-3)
    sols = {m: IpoptSolver(m, IpoptOptions(tol=1e-8)).solve(problem) for m in ("multiple-shooting", "single-shooting")}
    print(f"{'method':<18} {'status':<9} {'objective':>14} {'grad norm':>10} {'iters':>6} {'build s':>8} {'solve s':>8}")
    for m, s in sols.items():
        print(f"{m:<18} {s.status.value:<9} {s.objective:>14.10f} {s.grad_norm:>10.2e} {s.iterations:>6} "
              f"{s.build_time_s:>8.2f} {s.solve_time_s:>8.2f}")
    a, b = sols.values()
    print(f"objective difference between transcriptions: {abs(a.objective - b.objective):.2e} "
          "(non-convex: equal when both find the same local optimum)")

    best = min(sols.values(), key=lambda s: s.objective)
    ev = best.evaluation
    rel = np.array(ev.block_norms) / max(ev.block_norms)
    print("\n  k   |w_k|/max   stage loss  stage acc")
    for k in range(problem.spec.n_blocks + 1):
        r = f"{rel[k]:10.2e}" if k < len(rel) else " " * 10
        print(f"{k:>3} {r}  {ev.stage_losses[k]:11.4e}  {ev.stage_accuracy[k]:8.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for m, s in sols.items():
        ax[0].semilogy(range(problem.spec.n_blocks), s.evaluation.block_norms, "o-", label=m)
        ax[1].semilogy(range(problem.spec.n_blocks + 1), s.evaluation.stage_losses, "o-", label=m)
    ax[0].set(xlabel="block k", ylabel="‖w_k‖", title="block weight norms")
    ax[1].set(xlabel="stage k", ylabel="stage loss ℓ(ŷ_k)", title="stage losses")
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(out / "turnpike.png", dpi=120)
    print(f"\nfigure: {out / 'turnpike.png'}")


if __name__ == "__main__":
    main()
