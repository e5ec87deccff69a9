"""Example 3: what does an exact solver find that SGD does not, and at what cost?

Runs IPOPT (multiple and single shooting) and torch Adam / SGD / L-BFGS from the same float64
weights on the default stage-cost problem (two spirals, 10 tanh blocks, width 2, MSE, γ = 0.1,
λ = 1e-3), then polishes the Adam solution with IPOPT. Prints the table and writes
compare.json, compare.csv, objective_gap.png and profiles.png.

    python examples/03_solver_vs_sgd.py [--epochs 1500] [--out DIR]

The same comparison from the shell: ``ocp-resnet compare --epochs 1500 --out DIR``.
"""
from __future__ import annotations

import argparse

from ocp_resnet import Problem, load_dataset
from ocp_resnet.compare import FIGURES, compare, format_summary, to_csv
from ocp_resnet.runs import write_directory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1500, help="full-batch steps of each torch optimizer")
    ap.add_argument("--out", default="outputs/example03", help="directory to write (replaced if it exists)")
    args = ap.parse_args()

    problem = Problem.build(load_dataset("spirals", n_samples=200), blocks=10, width=2,
                            loss="mse", gamma=0.1, weight_decay=1e-3)
    cmp = compare(problem, epochs=args.epochs, log=print)
    print()
    print(format_summary(cmp))
    ms, adam = cmp.results["ipopt-ms"], cmp.results["adam"]
    print(f"\nAdam after {adam.iterations} steps is {adam.final_objective - cmp.best_objective:.3e} above the best "
          f"objective; IPOPT (multiple shooting) needed {ms.iterations} iterations and {ms.wall_time_s:.2f} s.")
    print(f"function-space distance adam vs ipopt-ms: {cmp.distances['adam']['ipopt-ms']:.3e} (RMS of ŷ_N)")
    write_directory(args.out, {
        "compare.json": cmp.to_dict(),
        "compare.csv": to_csv(cmp),
        **{name: (lambda path, f=f: f(cmp, path)) for name, f in FIGURES.items()},
    }, overwrite=True)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
