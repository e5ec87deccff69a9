"""Size-aware choice of transcription and Hessian, made before anything is built.

``--method auto`` / ``--hessian auto`` (the defaults) estimate, from the sample count n, the
blocks, the widths and the weight count alone, what one IPOPT iteration of each path costs in
memory and time, and take the first path that fits:

1. multiple shooting + exact Hessian: the most robust path and the one that finds the better
   optima on the small problems (docs/performance.md); its cost is the sparse KKT
   factorisation, whose arrowhead structure (per-sample blocks of ``s`` states bordered by the
   ``m`` weights) fills each sample's block against all weights: about ``n·s·(s+m)`` factor
   entries and ``n·s·(s+m)²`` flops per factorisation;
2. single shooting + exact Hessian: a dense ``m×m`` Hessian, cheap to factorise, expensive to
   evaluate (about ``m`` gradients per sample);
3. single shooting + L-BFGS (history 30): a few gradients per iteration, memory linear in n.

A problem none of them can do within the machine's memory (or whose per-sample expression
alone is too large to build) is refused at once with a message naming what would work.
The constants were measured on a 2-core machine (docs/performance.md, "Choosing the path").
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ocp_resnet.errors import ValidationError

if TYPE_CHECKING:
    from ocp_resnet.model.architecture import ArchSpec
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers.base import Hessian, Method

#: Effective rates measured on the reference machine (docs/performance.md): MUMPS on the
#: arrowhead KKT, and CasADi's SX virtual machine on the per-sample functions.
FACTOR_FLOPS_PER_S = 4e9
EVAL_OPS_PER_S = 1e9
#: IPOPT refactorises ~2.7 times per iteration on these non-convex problems (inertia correction).
FACTORISATIONS_PER_ITER = 3.0
#: A path whose estimated iteration takes longer than this is passed over for the next one.
MAX_ITERATION_S = 1.0
#: Exact Newton is taken up to this estimated iteration: on the two-spirals yardstick (n = 2000,
#: 20 blocks of width 4, 1.4 s per iteration before the second-order adjoints) it converged in
#: 258 iterations / 369 CPU s, while Newton–CG had not after 457 iterations / 275 s (J 0.517
#: against 0.467) and IPOPT's L-BFGS stopped at its 3000 iterations (docs/performance.md).
NEWTON_MAX_ITERATION_S = 5.0
#: Largest per-sample expression (elementary operations) that is built symbolically at all.
MAX_SAMPLE_OPS = 2_000_000
LBFGS_HISTORY = 30
#: The Newton path (:mod:`ocp_resnet.solvers.newton`): one iteration's derivatives (the
#: backward second-order-adjoint sweep) cost about n·d·|w_k|·p flops per stage, i.e.
#: n·N·w·(w² + w + (w + 1)·C)·p for single branches with stage costs, at NEWTON_RATE (one thread),
#: plus the trust-region subproblem: below 100 weights a p×p generalised eigendecomposition
#: (NEWTON_EIG_S·p³), from 100 on Moré–Sorensen's Cholesky factorisations (NEWTON_MS_S·p³, ~8
#: an iteration), and a fixed NEWTON_OVERHEAD_S. Fitted on the shipped sweep (CPU, one thread):
#: the two-spirals yardstick P2 (n = 2000, 20 blocks of width 4, p = 410: 0.29 s a sweep in two
#: chunks, 0.37 s an iteration, 0.21 s of wall time on two cores), the width-6 census problems
#: p41 and p42 (34 and 37 ms an iteration) and the smallest census problems (0.01–0.03 s). The
#: first estimate of the Newton path (n·N·(w + C)·p² at 1.5e9 flop/s, before the second-order
#: adjoints) overestimated the larger problems tenfold and sent the width-6 census problems to
#: IPOPT, which timed out on both where exact Newton solved one of them (docs/performance.md).
NEWTON_RATE = 6.5e9
NEWTON_EIG_S = 2.5e-9
NEWTON_MS_S = 1.3e-10
NEWTON_OVERHEAD_S = 0.015
#: The Hessian-free Newton–CG path (:mod:`ocp_resnet.solvers.newton_cg`): one Hessian-vector
#: product costs about HVP_BLOCK_S per block (torch's per-operation overhead on small tensors)
#: plus HVP_OP_S per sample operation, and an iteration about CG_PER_ITER products. Fitted on
#: the two yardsticks (two spirals n = 2000 with 20 blocks of width 4: 6.5 ms per product;
#: digits with 2 blocks of width 64: ~10 ms).
HVP_BLOCK_S = 3e-4
HVP_OP_S = 1.3e-10
CG_PER_ITER = 20
#: Above this many weights ``method="auto"`` refuses (where exact Newton does not fit) rather than
#: starting a solve that does not end in reasonable time: on the digits yardstick (2 blocks of
#: width 64, 8970 weights, n = 1797) Newton–CG, scipy's trust-ncg and L-BFGS on torch gradients
#: were all unconverged after 20–80 CPU seconds, and IPOPT's L-BFGS timed out at 300 s
#: (docs/performance.md); the two-spirals yardstick (410 weights) is solved. An explicit method
#: still runs.
NEWTON_CG_MAX_WEIGHTS = 5000


@dataclass(frozen=True)
class Estimate:
    """Estimated cost of one IPOPT iteration of a path."""

    method: Method
    hessian: Hessian
    memory_bytes: float
    iteration_s: float

    def describe(self) -> str:
        """Memory and time per iteration in words, e.g. ``~4.18 MB, ~0.024 s/iteration``."""
        return f"~{_size(self.memory_bytes)}, ~{_seconds(self.iteration_s)}/iteration"


@dataclass(frozen=True)
class Plan:
    """The chosen path, the estimates behind the choice and the one line that says why."""

    method: Method
    hessian: Hessian
    estimates: tuple[Estimate, ...]
    reason: str
    ipopt: dict[str, Any]
    jit: bool = False


def sample_ops(spec: ArchSpec) -> int:
    """Elementary operations of one sample's forward pass plus its stage outputs."""
    widths = spec.widths
    shapes = spec.param_shapes()
    skips = sum(2 * d_out * d_in for name, (d_out, d_in) in ((k, v) for k, v in shapes.items() if k.endswith(".S")))
    ops = 4 * spec.n_params + 8 * sum(widths)
    # every stage output goes through the head and (at worst) all later projection skips
    ops += (spec.n_blocks + 1) * (2 * widths[-1] * spec.n_outputs + 10 * spec.n_outputs + skips)
    return int(ops)


def estimates(problem: Problem) -> tuple[Estimate, ...]:
    """Memory and time per iteration of the three paths for ``problem``."""
    spec = problem.spec
    n, m = problem.n_samples, spec.n_params
    s = sum(spec.widths[1:])
    ops = sample_ops(spec)
    grad_s = 4 * n * ops / EVAL_OPS_PER_S
    ms_factor = 8.0 * 1.5 * (n * s * (s + m) + m * m)
    ms_time = FACTORISATIONS_PER_ITER * n * s * (s + m) ** 2 / FACTOR_FLOPS_PER_S + 3 * grad_s
    ss_hess = m * grad_s  # about one gradient per weight, per sample
    ss_mem = 8.0 * (3 * m * m + n * m) + 200.0 * m * ops  # dense Hessian + its per-sample expression
    lb_mem = 8.0 * (2 * LBFGS_HISTORY * m + 10 * m + n * (spec.input_dim + spec.n_outputs + 4)) + 100.0 * ops
    return (
        Estimate("multiple-shooting", "exact", ms_factor, ms_time),
        Estimate("single-shooting", "exact", ss_mem, ss_hess + 2 * grad_s),
        Estimate("single-shooting", "lbfgs", lb_mem, 5 * grad_s),
    )


def newton_estimate(problem: Problem) -> Estimate:
    """Memory and time per iteration of the exact Newton path: the second-order adjoints of one
    chunk of samples (two stages' worth, the Hessian's and the metric's), the states, and a few
    dense p×p matrices (∇²J, M, their half sums, the factorisation)."""
    from ocp_resnet.solvers.newton import CHOLESKY_MIN_PARAMS, sweep_chunks

    spec = problem.spec
    n, m, N = problem.n_samples, spec.n_params, spec.n_blocks
    w = max(spec.widths)
    chunk = math.ceil(n / sweep_chunks(problem))
    mem = 8.0 * (2 * 2 * chunk * w * m + n * (N + 1) * w + 8 * m * m)
    C = spec.n_outputs
    flops = n * max(N, 1) * w * (w * w + w + (w + 1) * C) * m
    step = (NEWTON_MS_S if m >= CHOLESKY_MIN_PARAMS else NEWTON_EIG_S) * m**3
    time_s = NEWTON_OVERHEAD_S + flops / NEWTON_RATE + step
    return Estimate("newton", "exact", mem, time_s)


def newton_cg_estimate(problem: Problem) -> Estimate:
    """Memory and time per iteration of the Hessian-free Newton–CG path: autograd's graph of ∇J
    (a few copies of every state of every sample) and a few dozen weight vectors per CG path."""
    spec = problem.spec
    n, m = problem.n_samples, spec.n_params
    mem = 8.0 * (40 * n * (sum(spec.widths) + (spec.n_blocks + 1) * spec.n_outputs) + 1000 * m)
    hvp = HVP_BLOCK_S * (spec.n_blocks + 1) + HVP_OP_S * n * sample_ops(spec)
    return Estimate("newton-cg", "exact", mem, CG_PER_ITER * hvp)


def memory_limit() -> float:
    """Bytes a solve may use: half the machine's physical memory."""
    try:
        return 0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8e9


def plan(problem: Problem, method: Method = "auto", hessian: Hessian = "auto", jit: Any = "auto",
         newton: bool = False, newton_cg: bool = False) -> Plan:
    """Resolve ``auto`` method/Hessian for ``problem`` (explicit choices are kept as given) and
    whether to compile (``jit``: "auto", True or False; True is refused, and ``reason`` says so,
    when the code would take too long to compile).

    ``newton``: the Newton path may be chosen too. With ``method="auto"`` and an exact (or auto)
    Hessian it is taken first whenever its estimated iteration fits
    :data:`NEWTON_MAX_ITERATION_S` and the memory: on the census of random small problems it
    converged on every problem at a quarter of IPOPT multiple shooting's CPU time, and it was
    the fastest path measured on the width-6 census problems and on the two-spirals yardstick
    (docs/performance.md).

    ``newton_cg`` (with ``newton``): beyond exact Newton's reach (its dense p × p Hessian too
    slow or too large), the Hessian-free Newton–CG path is taken up to
    :data:`NEWTON_CG_MAX_WEIGHTS` weights instead of IPOPT; above that ``method="auto"`` is
    refused with the torch route named (the digits yardstick: no CasADi-back-end path
    converged within minutes).
    """
    spec = problem.spec
    ops = sample_ops(spec)
    ests = estimates(problem)
    if newton and method == "auto" and hessian in ("auto", "exact") and ops <= MAX_SAMPLE_OPS:
        e = newton_estimate(problem)
        if e.iteration_s <= NEWTON_MAX_ITERATION_S and e.memory_bytes <= memory_limit():
            return Plan("newton", "exact", (e, *ests),
                        f"auto: newton, exact trust-region Newton ({e.describe()}): the fastest path measured "
                        "(census of small problems, yardsticks) fits", {}, False)
        c = newton_cg_estimate(problem)
        if newton_cg and spec.n_params > NEWTON_CG_MAX_WEIGHTS:
            raise ValidationError(
                f"method='auto' does not solve this problem on the CasADi back-end: its {spec.n_params:,} weights are "
                f"too many for a second-order solve in reasonable time (exact Newton's dense Hessian would need "
                f"{e.describe()}; Newton-CG and L-BFGS took minutes without converging at this size, "
                "docs/performance.md); train it with PyTorch (ocp_resnet.training, 'ocp-resnet train' with the same "
                "problem flags), or ask for a path explicitly: method='newton-cg', or method='single-shooting' with "
                "hessian='lbfgs'")
        if newton_cg and c.memory_bytes <= memory_limit():
            return Plan("newton-cg", "exact", (c, e, *ests),
                        f"auto: newton-cg, Hessian-free trust-region Newton-CG ({c.describe()}): exact Newton's dense "
                        f"{problem.spec.n_params}x{problem.spec.n_params} Hessian would need {e.describe()}", {}, False)
    if ops > MAX_SAMPLE_OPS:
        raise ValidationError(
            f"this network is too large for the solver: one sample's forward pass has ~{ops:,} operations "
            f"({spec.n_blocks} blocks, widths up to {max(spec.widths)}), more than CasADi can build in reasonable "
            f"time ({MAX_SAMPLE_OPS:,}); use {_smaller(spec, blocks=_blocks_that_fit(spec, ops))}, "
            "or train it with PyTorch (ocp_resnet.training, 'ocp-resnet train')"
        )
    limit = memory_limit()
    candidates = [e for e in ests if (method in ("auto", e.method)) and (hessian in ("auto", e.hessian))]
    if not candidates:  # an explicit combination the table does not list (multiple shooting + L-BFGS)
        use, note = _jit(problem, method, hessian, jit)
        return Plan(method, hessian, ests, _with_note(f"{method} + {hessian} Hessian (as requested)", note), {}, use)
    if method != "auto" and hessian != "auto":
        e = candidates[0]
        use, note = _jit(problem, e.method, e.hessian, jit)
        return Plan(e.method, e.hessian, ests, _with_note(f"{e.method} + {e.hessian} Hessian (as requested; "
                                                          f"{e.describe()})", note), _ipopt(e), use)
    fits = [e for e in candidates if e.memory_bytes <= limit]
    if not fits:
        best = min(candidates, key=lambda e: e.memory_bytes)
        raise ValidationError(
            f"this problem needs ~{_size(best.memory_bytes)} even on the leanest solver path "
            f"({best.method} + {best.hessian}), more than the {_size(limit)} this machine allows: use "
            f"n_samples < {problem.n_samples} or {_smaller(spec)}, or train it with PyTorch (ocp_resnet.training, "
            "'ocp-resnet train')"
        )
    quick = [e for e in fits if e.iteration_s <= MAX_ITERATION_S]
    chosen = quick[0] if quick else min(fits, key=lambda e: e.iteration_s)
    skipped = [e for e in candidates if e is not chosen and candidates.index(e) < candidates.index(chosen)]
    why = "; ".join(
        f"{e.method} + {e.hessian} would need {e.describe()}" for e in skipped
    ) or "the most robust path fits"
    use, note = _jit(problem, chosen.method, chosen.hessian, jit)
    reason = f"auto: {chosen.method} + {chosen.hessian} Hessian ({chosen.describe()}): {why}"
    if use:
        reason += "; per-sample functions compiled with the C compiler"
    return Plan(chosen.method, chosen.hessian, ests, _with_note(reason, note), _ipopt(chosen), use)


def _with_note(reason: str, note: str | None) -> str:
    return reason if note is None else f"{reason}; {note}"


def _blocks_that_fit(spec: ArchSpec, ops: int) -> int:
    """About how many blocks keep a sample's operations within MAX_SAMPLE_OPS (blocks cost alike)."""
    from dataclasses import replace

    base = sample_ops(replace(spec, blocks=()))
    return int((MAX_SAMPLE_OPS - base) / max((ops - base) / spec.n_blocks, 1.0))


def _smaller(spec: ArchSpec, blocks: int | None = None) -> str:
    """``blocks <= B`` (``blocks < N`` without an estimate B), and ``width < W`` where a narrower state exists."""
    fewer = f"blocks <= {max(blocks, 1)}" if blocks is not None else f"blocks < {spec.n_blocks}"
    w = max(spec.widths)
    return f"{fewer} or width < {w}" if w > 2 else fewer


def time_budget(problem: Problem, max_iter: int, method: Method = "auto",
                hessian: Hessian = "auto", newton: bool = False, newton_cg: bool = False) -> tuple[float, str] | None:
    """(seconds, one line): what ``max_iter`` iterations of the path :func:`plan` takes may cost by
    the estimated time per iteration, said before a long solve (or its warm-started resumption)
    starts. ``None`` when the estimates do not cover the requested path. ``newton``/``newton_cg``
    as in :func:`plan` (what ``method="auto"`` may delegate to)."""
    p = plan(problem, method, hessian, newton=newton, newton_cg=newton_cg)
    est = next((e for e in p.estimates if (e.method, e.hessian) == (p.method, p.hessian)), None)
    if est is None:
        return None
    total = est.iteration_s * max_iter
    path = p.method if p.method in ("newton", "newton-cg") else f"{p.method} + {p.hessian} Hessian"
    bound = "max_iter" if p.method in ("newton", "newton-cg") else \
        "max_iter or IPOPT's wall-clock limit ipopt={'max_wall_time': SECONDS}"
    return total, (f"expected ~{_seconds(est.iteration_s)}/iteration ({path}, the sizing estimate): the iteration "
                   f"limit max_iter={max_iter} may take ~{_duration(total)}; bound the run with {bound}")


def _duration(t: float) -> str:
    if t < 120:
        return _seconds(t)
    return f"{t / 60:.2g} min" if t < 7200 else f"{t / 3600:.2g} h"


def _jit(problem: Problem, method: str, hessian: str, requested: Any = "auto") -> tuple[bool, str | None]:
    """(compile?, why not when asked). ``auto`` compiles the per-sample functions where evaluations
    dominate: the L-BFGS path (thousands of cheap iterations, each a few objective/gradient
    evaluations over all samples), when a C compiler is there. On the exact-Hessian paths the
    factorisation dominates and the compile would not pay back (docs/performance.md). Code whose
    compile is estimated to take more than
    :data:`~ocp_resnet.solvers.ipopt.transcription._common.MAX_COMPILE_S` is never compiled."""
    from ocp_resnet.solvers.ipopt.transcription import _common

    wanted = requested is True or (requested == "auto" and hessian == "lbfgs")
    if not wanted or _common.c_compiler() is None:
        return False, None
    n = compile_instructions(problem, method, hessian)
    t = _common.compile_seconds(n)
    if t > _common.MAX_COMPILE_S:
        return False, (f"per-sample functions interpreted: ~{n:,} instructions would take ~{t:.0f} s to compile "
                       f"(more than {_common.MAX_COMPILE_S:.0f} s)")
    return True, None


def _ipopt(e: Estimate) -> dict[str, Any]:
    return {"limited_memory_max_history": LBFGS_HISTORY} if e.hessian == "lbfgs" else {}


def _size(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def _seconds(t: float) -> str:
    return f"{t:.2g} s" if t >= 0.01 else f"{t * 1e3:.2g} ms"



def compile_instructions(problem: Problem, method: str, hessian: str) -> int:
    """Estimated SX instructions of the largest per-sample function the JIT would compile, from the
    structure alone: value and gradient take a few forward passes; the exact Hessian of single
    shooting is dense in the ``m`` weights (≈ 0.6·m forward passes), that of multiple shooting
    local to one block (≈ 1.5 + 1.2·width forward passes). Measured on the problems of
    :data:`~ocp_resnet.solvers.ipopt.transcription._common.COMPILE_S_COEFF` within a factor 1.5."""
    spec = problem.spec
    ops = sample_ops(spec)
    value = 4.5 * ops
    if hessian != "exact":
        return int(value)
    if method == "single-shooting":
        return int(max(value, 0.6 * spec.n_params * ops))
    return int(max(value, (1.5 + 1.2 * max(spec.widths)) * ops))
