"""Cost of the second-order certificate (:func:`ocp_resnet.analysis.certificate.certify`) at a solution.

Run:  python benchmarks/certificate.py RUN_DIR [--backend casadi|torch] [--method dense|lanczos]

RUN_DIR is a run directory of ``ocp-resnet solve`` (its config gives the problem, its
solution.npz the weights). Prints the CPU seconds of importing torch (torch back-end only), of
the first certificate in the process (building the Hessian function included) and of a second
one, and the certificate itself.
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--backend", default="casadi", choices=("casadi", "torch"))
    ap.add_argument("--method", default="dense", choices=("dense", "lanczos"))
    args = ap.parse_args()

    from ocp_resnet.runs import Run

    run = Run(args.run_dir)
    problem = run.problem()
    w = run.flat_weights(problem)
    c0 = time.process_time()
    if args.backend == "torch":
        import torch  # noqa: F401  (its import is part of the torch back-end's cost)
    c1 = time.process_time()
    from ocp_resnet.analysis.certificate import certify

    cert = certify(problem, w, backend=args.backend, method=args.method)
    c2 = time.process_time()
    certify(problem, w, backend=args.backend, method=args.method)
    c3 = time.process_time()
    print(f"p={w.size} {args.backend} {args.method}: import {c1 - c0:.2f} s, first {c2 - c1:.2f} s, "
          f"again {c3 - c2:.3f} s CPU | {cert.describe()}")


if __name__ == "__main__":
    main()
