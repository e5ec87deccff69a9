"""Hessian-free Newton–CG against its alternatives on the large problems, in process (CPU seconds).

    OMP_NUM_THREADS=1 python benchmarks/newton_cg.py P2 newton-cg                  # the solver as shipped
    OMP_NUM_THREADS=1 python benchmarks/newton_cg.py P2 newton-cg --metric states  # diagonal states metric
    OMP_NUM_THREADS=1 python benchmarks/newton_cg.py P2 newton --max-time 1500     # exact Newton
    OMP_NUM_THREADS=1 python benchmarks/newton_cg.py digits scipy-trust-ncg        # scipy's trust-ncg, torch HVPs
    OMP_NUM_THREADS=1 python benchmarks/newton_cg.py digits scipy-lbfgs            # L-BFGS-B on torch gradients

Problems: ``P2`` and ``digits`` are the yardsticks' (benchmarks/yardsticks.py: the CLI defaults
mse, γ 1, λ 1e-4, tanh, seed 0), ``p41``/``p42`` the width-6 census problems
(benchmarks/results/census-auto.jsonl). Every run starts from the same seeded weights as
``ocp-resnet solve`` and stops at ‖∇J‖_∞ ≤ 1e-6 (census problems: 1e-8) or at ``--max-time``
wall seconds; one line per run: iterations, CPU s, J, ‖∇J‖_∞.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from ocp_resnet.model.evaluation import objective_and_gradient
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.init import initial_weights
from ocp_resnet.training import DataSource

PROBLEMS = {
    "P2": (dict(name="spirals", n_samples=2000), dict(blocks=20, width=4), 0, 1e-6),
    "digits": (dict(name="digits"), dict(blocks=2, width=64), 0, 1e-6),
    "p41": (dict(name="xor", n_samples=249, noise=0.1, seed=4), dict(blocks=7, width=6, gamma=0.2, weight_decay=1e-5),
            74, 1e-8),
    "p42": (dict(name="moons", n_samples=210, noise=0.05, seed=8), dict(blocks=9, width=6, gamma=2.0,
                                                                       weight_decay=1e-5), 57, 1e-8),
}


def build(name: str) -> tuple[Problem, np.ndarray, float]:
    data, arch, init_seed, tol = PROBLEMS[name]
    data = dict(data)
    ds = DataSource(data.pop("name"), **data).load()
    prob = Problem.build(ds, **{"loss": "mse", "gamma": 1.0, "weight_decay": 1e-4, **arch})
    return prob, initial_weights(prob, "random", init_seed), tol


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("problem", choices=sorted(PROBLEMS))
    ap.add_argument("solver", choices=("newton-cg", "newton", "scipy-trust-ncg", "scipy-lbfgs"))
    ap.add_argument("--metric", default="euclidean", help="newton-cg's trust-region metric (default euclidean)")
    ap.add_argument("--forcing", type=float, default=0.1, help="newton-cg's CG forcing term (default 0.1)")
    ap.add_argument("--max-time", type=float, default=600.0, help="wall-clock limit in seconds (default 600)")
    ap.add_argument("--verbose", action="store_true", help="newton/newton-cg: print every iteration's line")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    prob, w0, tol = build(a.problem)
    t0 = time.process_time()
    log = print if a.verbose else None
    extra = ""
    if a.solver == "newton-cg":
        from ocp_resnet.solvers.newton_cg import NewtonCGOptions, newton_cg_solve

        sol = newton_cg_solve(prob, w0, NewtonCGOptions(tol=tol, max_time_s=a.max_time, metric=a.metric,
                                                        forcing=a.forcing), log=log)
        w, it, status = sol.w, sol.iterations, sol.status.value
        extra = f"hvps {sol.stats['hvps']} rejected {sol.stats['rejected']}"
    elif a.solver == "newton":
        from ocp_resnet.solvers.newton import NewtonOptions, newton_solve

        sol = newton_solve(prob, w0, NewtonOptions(tol=tol, max_time_s=a.max_time), log=log)
        w, it, status = sol.w, sol.iterations, sol.status.value
    else:
        import scipy.optimize

        from ocp_resnet.torch.gradient import FlatObjective

        f = FlatObjective(prob)
        start = time.perf_counter()

        def stop(res: object) -> None:
            x = getattr(res, "x", res)
            if np.abs(f.gradient(np.asarray(x))).max() <= tol or time.perf_counter() - start > a.max_time:
                raise StopIteration

        if a.solver == "scipy-trust-ncg":
            r = scipy.optimize.minimize(f.value, w0, jac=f.gradient, hessp=f.hvp, method="trust-ncg", callback=stop,
                                        options={"gtol": tol, "maxiter": 10**6})
        else:
            r = scipy.optimize.minimize(lambda x: (f.value(x), f.gradient(x)), w0, jac=True, method="L-BFGS-B",
                                        callback=stop, options={"gtol": tol, "ftol": 0.0, "maxiter": 10**6,
                                                                "maxfun": 10**7, "maxcor": 30})
        w, it, status = r.x, r.nit, str(r.message)
        extra = f"hvps {f.evaluations['hvps']} gradients {f.evaluations['gradients']}"
    cpu = time.process_time() - t0
    J, g = objective_and_gradient(prob, w)
    print(f"{a.problem} {a.solver} {a.metric if a.solver == 'newton-cg' else ''}: {status}, {it} iterations, "
          f"CPU {cpu:.1f} s, J {J:.10f}, |grad|inf {np.abs(g).max():.2e} {extra}")


if __name__ == "__main__":
    main()
