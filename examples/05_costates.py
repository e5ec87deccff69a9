"""Example 5: costates and the stage Hamiltonian of a solved ResNet.

The default problem of ``ocp-resnet solve`` (two spirals n = 200, 10 single tanh blocks of width 2,
MSE stage costs γ = 0.1, λ = 1e-3), solved by multiple shooting to KKT tolerance 1e-10. Then

* the costates p_0..p_N by the backward recursion, and IPOPT's multipliers of the dynamics
  mapped to costates (p_{k+1} = n · lam_g): their relative disagreement;
* the stage-Hamiltonian gradients ‖∂H_k/∂w_k‖ (zero at a KKT point, by the discrete maximum
  principle) and, for contrast, at the initial random weights;
* on the vanished tail the blocks are (almost) the identity, so the recursion reduces to
  p_k ≈ p_{k+1} + γ p_N, i.e. p_k ≈ (1 + γ (N − k)) p_N: checked numerically;
* costates.png (state and costate norms per layer, block norms), costates.npz and costates.json.

    python examples/05_costates.py [--out DIR]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ocp_resnet import IpoptOptions, Problem, load_dataset, solve
from ocp_resnet.analysis import analyze, costates, write_costates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/example05", help="where to write costates.png/.npz/.json")
    args = ap.parse_args()
    t0 = time.perf_counter()

    problem = Problem.build(load_dataset("spirals", n_samples=200), blocks=10, width=2,
                            loss="mse", gamma=0.1, weight_decay=1e-3)
    sol = solve(problem, method="multiple-shooting", options=IpoptOptions(tol=1e-10, print_level=0))
    print(f"solve: {sol.status.value}, objective {sol.objective:.10f}, grad norm {sol.grad_norm:.2e}, "
          f"{sol.iterations} iterations")

    cs = costates(problem, sol.weights, multipliers=sol)
    print(cs.format())
    rnd = costates(problem, problem.spec.init_params("random", seed=0))
    print(f"max |dH_k/dw_k|: {max(cs.hamiltonian_gradient_norms):.2e} at the solution, "
          f"{max(rnd.hamiltonian_gradient_norms):.2e} at the initial random weights")

    # The idle tail: p_k ≈ (1 + γ (N − k)) p_N on the blocks that have vanished.
    N, gamma = problem.spec.n_blocks, 0.1
    start = analyze(problem, sol.weights).recommended_depth
    dev = [np.linalg.norm(cs.p[k] - (1 + gamma * (N - k)) * cs.p[N]) / np.linalg.norm(cs.p[k])
           for k in range(start, N + 1)]
    print(f"vanished tail k = {start}..{N}: max_k |p_k - (1 + γ(N-k)) p_N| / |p_k| = {max(dev):.2e}")

    for path in write_costates(cs, Path(args.out), overwrite=True):
        print(f"wrote {path}")
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
