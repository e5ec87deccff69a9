"""Which blocks vanish: per-block norms, stage losses, vanished blocks and a recommended depth.

Works on any run directory (CasADi or torch: the weights have the same names) or on a
:class:`~ocp_resnet.model.problem.Problem` and weights. All numbers come from
:func:`ocp_resnet.model.evaluation.evaluate`, so they are computed one way only.

Definitions (N blocks, block norms ``b_k`` = ‖branch weights of block k‖₂, RMS residual
outputs ``r_k`` = sqrt(mean_i ‖F_k(x_k^i)‖²)):

* relative norms ``b_k / max_j b_j`` and ``r_k / max_j r_j``;
* block k has *vanished* when its relative weight norm is ≤ ``tol``. Where zero weights do
  not give F_k ≡ 0 (a ``single`` branch whose σ(0) ≠ 0, e.g. softplus), its relative
  residual output must be ≤ ``tol`` as well;
* the *recommended depth* is the smallest M such that every block k ≥ M has vanished and
  the stage-M loss is within ``max(loss_rtol·|L_N|, loss_atol)`` of the final loss L_N;
* the *tail-to-head ratio* is the mean block norm of the last quarter of blocks
  (``max(1, N // 4)`` blocks) over the mean of the first half (``max(1, N // 2)`` blocks).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.errors import check_float
from ocp_resnet.model import architecture as arch
from ocp_resnet.model._ops import NUMPY
from ocp_resnet.model.evaluation import evaluate

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem

DEFAULT_TOL = 1e-3
DEFAULT_LOSS_RTOL = 1e-2
DEFAULT_LOSS_ATOL = 1e-6


def zero_weights_vanish(spec: arch.ArchSpec, k: int) -> bool:
    """Whether block k's branch is identically zero when its weights are zero."""
    blk = spec.blocks[k]
    if blk.branch != "single":
        return True
    return float(np.asarray(arch.activation(spec.activation, np.zeros(1), NUMPY))[0]) == 0.0


def relative(values: Sequence[float]) -> list[float]:
    """``values / max(values)`` (all zeros when the maximum is zero)."""
    top = max(values) if len(values) else 0.0
    return [float(v / top) if top > 0 else 0.0 for v in values]


def tail_to_head_ratio(block_norms: Sequence[float]) -> float:
    """Mean norm of the last quarter of blocks / mean norm of the first half (nan if N = 0)."""
    n = len(block_norms)
    if n == 0:
        return float("nan")
    b = np.asarray(block_norms, dtype=float)
    tail = float(np.mean(b[n - max(1, n // 4):]))
    head = float(np.mean(b[: max(1, n // 2)]))
    if head == 0.0:
        return 0.0 if tail == 0.0 else float("inf")
    return tail / head


def vanished_blocks(
    spec: arch.ArchSpec, block_norms: Sequence[float], residual_norms: Sequence[float], tol: float = DEFAULT_TOL
) -> list[int]:
    """Indices of the vanished blocks (see the module docstring)."""
    tol = check_float("tol", tol, 0.0)
    rb, rr = relative(block_norms), relative(residual_norms)
    out = []
    for k in range(spec.n_blocks):
        if rb[k] <= tol and (zero_weights_vanish(spec, k) or rr[k] <= tol):
            out.append(k)
    return out


def recommended_depth(
    stage_losses: Sequence[float],
    vanished: Sequence[int],
    loss_rtol: float = DEFAULT_LOSS_RTOL,
    loss_atol: float = DEFAULT_LOSS_ATOL,
) -> int:
    """Smallest M whose blocks M..N-1 have all vanished and whose stage loss is close to L_N."""
    n = len(stage_losses) - 1
    final = float(stage_losses[-1])
    allowed = max(loss_rtol * abs(final), loss_atol)
    van = set(vanished)
    best = n
    for m in range(n, -1, -1):
        if m < n and m not in van:
            break  # block m is needed, so no shallower M qualifies either
        if abs(float(stage_losses[m]) - final) <= allowed:
            best = m
    return best


@dataclass
class BlockAnalysis:
    """The vanishing-block analysis of one set of weights (k = 0..N for stage arrays)."""

    n_blocks: int
    tol: float
    objective: float
    final_loss: float
    stage_losses: list[float]
    stage_accuracy: list[float]
    block_norms: list[float]
    residual_norms: list[float]
    rel_block_norms: list[float]
    rel_residual_norms: list[float]
    vanished: list[int]
    recommended_depth: int
    tail_to_head: float
    branches: list[str]

    @property
    def n_vanished(self) -> int:
        """How many blocks have vanished."""
        return len(self.vanished)

    @property
    def n_active(self) -> int:
        """Blocks that have not vanished."""
        return self.n_blocks - len(self.vanished)

    def to_dict(self) -> dict[str, Any]:
        """The analysis as a JSON-ready dict."""
        d = asdict(self)
        d["n_vanished"] = self.n_vanished
        d["n_active"] = self.n_active
        return d

    def format(self) -> str:
        """A text table and a summary."""
        lines = [
            f"{'k':>3} {'|w_k|':>10} {'rel':>9} {'RMS|F_k|':>10} {'rel':>9} {'stage loss':>12} {'acc':>6}  "
        ]
        van = set(self.vanished)
        for k in range(self.n_blocks + 1):
            sl, sa = self.stage_losses[k], self.stage_accuracy[k]
            if k < self.n_blocks:
                mark = "vanished" if k in van else ""
                if self.branches[k] == "none":
                    mark = "projection only"
                lines.append(
                    f"{k:>3} {self.block_norms[k]:>10.3e} {self.rel_block_norms[k]:>9.2e} "
                    f"{self.residual_norms[k]:>10.3e} {self.rel_residual_norms[k]:>9.2e} {sl:>12.5e} {sa:>6.3f}  {mark}"
                )
            else:
                lines.append(f"{k:>3} {'':>10} {'':>9} {'':>10} {'':>9} {sl:>12.5e} {sa:>6.3f}  (final)")
        lines.append(
            f"vanished blocks (relative norm <= {self.tol:g}): "
            f"{', '.join(map(str, self.vanished)) if self.vanished else 'none'} "
            f"({self.n_vanished} of {self.n_blocks})"
        )
        if self.n_blocks == 0:  # no blocks: no depth to recommend, no tail or head to compare
            lines.append(f"no blocks: a linear model, final loss {self.final_loss:.6g}")
        else:
            lines.append(
                f"recommended depth: {self.recommended_depth} (stage loss {self.stage_losses[self.recommended_depth]:.6g} "
                f"vs final {self.final_loss:.6g}); tail-to-head norm ratio {self.tail_to_head:.3e}"
            )
        return "\n".join(lines)


def analyze(
    problem: Problem,
    weights: np.ndarray | Mapping[str, Any],
    tol: float = DEFAULT_TOL,
    loss_rtol: float = DEFAULT_LOSS_RTOL,
    loss_atol: float = DEFAULT_LOSS_ATOL,
    evaluation: Any = None,
) -> BlockAnalysis:
    """Analyse ``weights`` on ``problem`` (a :class:`~ocp_resnet.model.problem.Problem`).

    ``evaluation``: the :class:`~ocp_resnet.model.evaluation.Evaluation` of these weights when the
    caller has it already (a solution's own), so they are not evaluated a second time.
    """
    tol = check_float("tol", tol, 0.0)
    check_float("loss_rtol", loss_rtol, 0.0)
    check_float("loss_atol", loss_atol, 0.0)
    spec = problem.spec
    ev = evaluate(problem, weights, gradient=False) if evaluation is None else evaluation
    van = vanished_blocks(spec, ev.block_norms, ev.residual_norms, tol)
    return BlockAnalysis(
        n_blocks=spec.n_blocks,
        tol=tol,
        objective=ev.objective,
        final_loss=ev.final_loss,
        stage_losses=list(ev.stage_losses),
        stage_accuracy=list(ev.stage_accuracy),
        block_norms=list(ev.block_norms),
        residual_norms=list(ev.residual_norms),
        rel_block_norms=relative(ev.block_norms),
        rel_residual_norms=relative(ev.residual_norms),
        vanished=van,
        recommended_depth=recommended_depth(ev.stage_losses, van, loss_rtol, loss_atol),
        tail_to_head=tail_to_head_ratio(ev.block_norms),
        branches=[b.branch for b in spec.blocks],
    )


def run_problem(run: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """(problem, weights) of a run directory (path or :class:`~ocp_resnet.runs.Run`); MLP runs only."""
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.runs import Run

    if isinstance(run, (str, os.PathLike)):
        run = Run(run)
    if run.kind != "mlp":
        raise ValidationError(
            f"{run.path} is a conv ResNet-v2 run: the block analysis and pruning support MLP runs "
            "(solved with IPOPT, or an MLP trained with PyTorch)"
        )
    return run.problem(), run.weights


def analyze_run(
    run: Any, tol: float = DEFAULT_TOL, loss_rtol: float = DEFAULT_LOSS_RTOL, loss_atol: float = DEFAULT_LOSS_ATOL
) -> BlockAnalysis:
    """Analyse a run directory (a path or a :class:`~ocp_resnet.runs.Run`) of either back-end."""
    problem, weights = run_problem(run)
    return analyze(problem, weights, tol, loss_rtol, loss_atol)



def _ranges(ks: Sequence[int]) -> str:
    """[7, 8, 9, 2] -> "2, 7–9"."""
    ks = sorted(ks)
    parts, i = [], 0
    while i < len(ks):
        j = i
        while j + 1 < len(ks) and ks[j + 1] == ks[j] + 1:
            j += 1
        parts.append(f"{ks[i]}" if i == j else f"{ks[i]}–{ks[j]}")
        i = j + 1
    return ", ".join(parts)


def verdict(an: BlockAnalysis, collapsed: bool | None = None, linear_loss: float | None = None,
            narrow: str | None = None) -> str:
    """One line a user can act on: which blocks vanished, what depth suffices — or why not.

    ``collapsed`` (see :mod:`.collapse`): the run is no better than the best linear classifier,
    so its small blocks are not evidence of unnecessary depth. ``narrow``
    (:func:`.collapse.narrow_head`): the architecture's reason for that, named instead of restarts.
    """
    n, van = an.n_blocks, an.vanished
    if n == 0:  # nothing can vanish, and a linear model is its own linear classifier
        return "a linear model (blocks=0): no residual blocks to vanish or prune"
    if collapsed:
        what = f"blocks {_ranges(van)} look vanished, but " if van else ""
        lin = f", no better than the best linear classifier's {linear_loss:.6g}" if linear_loss is not None else ""
        fix = narrow if narrow else "try restarts=4 or a γ path (ocp-resnet path)"
        return (f"collapsed: {what}final loss {an.final_loss:.6g}{lin}: the network does no better than a linear "
                f"model, so this is not a depth recommendation; {fix}")
    if not van:
        k = int(np.argmin(an.rel_block_norms)) if n else 0
        smallest = f" (smallest relative norm {an.rel_block_norms[k]:.1e} at block {k})" if n else ""
        return f"no block vanished at tol {an.tol:g}{smallest}: all {n} blocks are in use"
    rel = max(an.rel_block_norms[k] for k in van)
    head = f"block{'s' if len(van) > 1 else ''} {_ranges(van)} vanished (rel ≤ {rel:.1e})"
    m = an.recommended_depth
    if m < n:
        sl, fin = an.stage_losses[m], an.final_loss
        rel_gap = abs(sl - fin) / max(abs(fin), 1e-300)
        cmp = "=" if rel_gap < 5e-7 else "≈"
        tail = f"; depth {m} suffices: stage loss {sl:.6g} {cmp} final {fin:.6g}"
        rest = sorted(set(van) - set(range(m, n)))
        if rest:
            tail += f"; blocks {_ranges(rest)} can be pruned too"
        return head + tail + f" (ocp-resnet prune RUN_DIR removes {len(van)})"
    return head + f"; later blocks are active, so depth stays {n}: ocp-resnet prune RUN_DIR removes the vanished ones"
