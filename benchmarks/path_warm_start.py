"""Warm starts along a γ path: IPOPT iterations cold vs warm (primal + multipliers) vs warm
(primal only), and the objectives of the upward and downward path (docs/vanishing.md "γ path").

    python benchmarks/path_warm_start.py

Problems: the CLI default architecture (N = 10 single tanh blocks, width 2, n = 200, λ = 1e-3,
tol 1e-8, init seed 0).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import ocp_resnet.analysis.gamma_path as P  # noqa: E402
from ocp_resnet import Problem, load_dataset, path  # noqa: E402
from ocp_resnet.analysis.blocks import analyze  # noqa: E402

UP = [0, 0.03, 0.1, 0.3, 1]
CASES = [("spirals", "mse"), ("spirals", "sce"), ("moons", "mse"), ("moons", "sce"), ("circles", "mse"),
         ("xor", "mse")]


def main() -> None:
    default = dict(P.WARM_START_IPOPT)
    print("| problem | loss | cold | warm: primal + multipliers | warm: primal only |")
    print("|---|---|---:|---:|---:|")
    totals = [0, 0, 0]
    for name, loss in CASES:
        p = Problem.build(load_dataset(name), blocks=10, width=2, loss=loss, gamma=0.1, weight_decay=1e-3)
        its = []
        for opts, warm in ((default, False), (default, True), ({}, True)):
            P.WARM_START_IPOPT = opts
            its.append([s.iterations for s in path(p, UP, warm_start=warm)])
        P.WARM_START_IPOPT = default
        for j in range(3):
            totals[j] += sum(its[j])
        print(f"| {name} | {loss} | " + " | ".join(f"{sum(i)} ({', '.join(map(str, i))})" for i in its) + " |",
              flush=True)
    print(f"| total | | {totals[0]} | {totals[1]} | {totals[2]} |\n")
    print("| problem | loss | γ | up: J | up: vanished | down: J | down: vanished |")
    print("|---|---|---:|---:|---|---:|---|")
    for name, loss in CASES:
        p = Problem.build(load_dataset(name), blocks=10, width=2, loss=loss, gamma=0.1, weight_decay=1e-3)
        up = dict(zip(UP, path(p, UP)))
        down = dict(zip(UP[::-1], path(p, UP[::-1])))
        for g in UP:
            a, b = up[g], down[g]
            print(f"| {name} | {loss} | {g:g} | {a.objective:.5f} | {analyze(p, a.w).vanished or '–'} | "
                  f"{b.objective:.5f} | {analyze(p, b.w).vanished or '–'} |", flush=True)


if __name__ == "__main__":
    main()
