"""Cost of one exact-Newton iteration's derivatives and of the certificate, in-process (CPU seconds).

    OMP_NUM_THREADS=1 python benchmarks/newton_derivatives.py --dataset moons --n-samples 283 \\
        --noise 0.05 --blocks 10 --width 4 --loss ce --gamma 2.0 --weight-decay 1e-5 --seed 0
    OMP_NUM_THREADS=1 python benchmarks/newton_derivatives.py --calls 20 --no-solve <flags>   # derivatives only
    OMP_NUM_THREADS=1 python benchmarks/newton_derivatives.py --calls 5 --no-solve --chunks 1,2,4 --threads 1,2 \
        --dataset spirals --n-samples 2000 --blocks 20 --width 4                            # chunks and threads
    OMP_NUM_THREADS=1 python benchmarks/newton_derivatives.py --calls 20 --no-solve --threads 1,2 --forced <flags>
                                                            # one piece: the metric in the worker process

Takes the problem flags of ``ocp-resnet solve`` (``--init-seed`` too). Solves with
:func:`ocp_resnet.solvers.newton.newton_solve` (tol 1e-8, the defaults of ``--method newton``)
and prints one JSON line: iterations, J, status, the build time of the stage functions, the
median CPU milliseconds of a ``_derivatives`` call during the solve, whether the stage functions
ran compiled at the end (see ``_StageFunctions._jit_setup``), and the CPU seconds of
:func:`ocp_resnet.analysis.certificate.certify` at the solution. ``--calls K`` also times K
calls at the initial weights, with and without the metric, for each ``--chunks`` × ``--threads``
pair (default: the automatic choice of :class:`ocp_resnet.solvers.newton._Derivatives`), in wall
and CPU milliseconds (best of three rounds). CPU seconds of the C compiler (a child process) are
reported separately.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocp_resnet.analysis.certificate import certify  # noqa: E402
from ocp_resnet.cli import _common as c  # noqa: E402
from ocp_resnet.cli import build_parser  # noqa: E402
from ocp_resnet.solvers import initial_weights, newton  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=0, help="also time this many calls at the initial weights")
    ap.add_argument("--no-solve", action="store_true", help="only the timed calls")
    ap.add_argument("--chunks", default="auto", help="comma-separated chunk counts for --calls (default: automatic)")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts for --calls (default 1)")
    ap.add_argument("--forced", action="store_true",
                    help="with more than one thread, take the parallel way on every call (chunk threads, or "
                         "the metric's worker process, whatever the problem's size) instead of the timed choice")
    ours, rest = ap.parse_known_args()
    args = build_parser().parse_args(["solve", *rest])
    problem = c.problem_from_args(args)
    w0 = initial_weights(problem, "random", c.init_seed(args))
    out: dict = {"p": problem.spec.n_params, "n": problem.n_samples}
    if ours.calls:
        if ours.forced:  # the worker process below its size threshold too, from the first call
            newton.SPLIT_MIN_SIZE, newton.SPLIT_AFTER = 0, 0
        _, xs = newton._objective(problem, w0)
        chunk_list = [None] if ours.chunks == "auto" else [int(v) for v in ours.chunks.split(",")]
        sweeps = [newton._Derivatives(problem, chunks=c_, threads=int(t)) for c_ in chunk_list
                  for t in ours.threads.split(",")]
        best: dict[str, list[float]] = {}
        for sweep in sweeps:
            if ours.forced and sweep.threads > 1:
                sweep._threaded = lambda: True  # type: ignore[method-assign]
            sweep(w0, xs)  # warm: buffers, compiled functions of the chunks, the worker process
        for _ in range(3):
            for sweep in sweeps:
                for metric in (True, False):
                    t, wall = time.process_time(), time.perf_counter()
                    for _ in range(ours.calls):
                        sweep(w0, xs, metric)
                    key = f"chunks{sweep.chunks}_threads{sweep.threads}{'' if metric else '_no_metric'}"
                    ms = [1e3 * (time.perf_counter() - wall) / ours.calls, 1e3 * (time.process_time() - t) / ours.calls]
                    best[key] = min(best.get(key, ms), ms)
        out["ms_per_call_wall_cpu"] = {k: [round(v, 2) for v in ms] for k, ms in best.items()}
    if not ours.no_solve:
        calls: list[float] = []
        made: list[newton._StageFunctions] = []
        derivatives, init = newton._Derivatives.__call__, newton._StageFunctions.__init__

        def timed(*a, **k):  # type: ignore[no-untyped-def]
            t = time.process_time()
            r = derivatives(*a, **k)
            calls.append(time.process_time() - t)
            return r

        def record(self, *a):  # type: ignore[no-untyped-def]
            init(self, *a)
            made.append(self)

        newton._Derivatives.__call__, newton._StageFunctions.__init__ = timed, record  # type: ignore[method-assign]
        r0, t0 = os.times(), time.process_time()
        sol = newton.newton_solve(problem, w0, newton.NewtonOptions(tol=1e-8, max_iter=3000, print_level=0))
        t1, r1 = time.process_time(), os.times()
        newton._Derivatives.__call__, newton._StageFunctions.__init__ = derivatives, init  # type: ignore[method-assign]
        tc = time.process_time()
        cert = certify(problem, sol.w)
        tc = time.process_time() - tc
        out.update(iterations=sol.iterations, objective=repr(sol.objective), status=sol.status.value,
                   build_s=round(sol.build_time_s, 3), solve_cpu_s=round(t1 - t0, 3),
                   compiler_cpu_s=round(r1.children_user + r1.children_system - r0.children_user - r0.children_system, 3),
                   derivatives_ms=round(1e3 * float(np.median(calls)), 2), derivatives_calls=len(calls),
                   derivatives_s=round(sum(calls), 3), compiled=made[0].jit if made else None,
                   certificate_s=round(tc, 3), certificate=cert.describe())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
