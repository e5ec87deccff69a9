"""The sub-network bound (docs/theory.md): a deeper network can never be worse than a shallower one.

The M-block optimum padded with N − M zero residual branches is feasible for the N-block
problem. Its stages k ≥ M all see the M-block final output, so its objective is

    J_M* + Σ_{k=M}^{N-1} γ_k · L_M        (L_M: the M-block final loss; same λ‖w‖²)

and J_N* can be no larger. A solved N-block run above this value is a non-global local
optimum (or an unconverged solve). This holds when zero weights give F_k ≡ 0 (tanh and
smooth-ReLU single branches, every basic branch; not softplus single branches).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError
from ocp_resnet.status import Status

OK_STATUSES = (Status.SUCCESS.value, Status.ACCEPTABLE.value)


@dataclass
class BoundCheck:
    """One comparison of a deep run (N) with the best shallow run (M) of the same γ."""

    gamma: float
    N: int
    seed: int
    M: int
    M_seed: int
    J_N: float
    J_M: float
    L_M: float
    bound: float
    excess: float  # J_N − bound (> allowance: violation)
    violated: bool


@dataclass
class BoundReport:
    """All comparisons of a sweep and the violations among them."""

    checks: list[BoundCheck]
    rtol: float
    atol: float

    @property
    def violations(self) -> list[BoundCheck]:
        """The checks whose deep objective exceeds the bound."""
        return [c for c in self.checks if c.violated]

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per check (the rows of ``bound.csv``)."""
        return [asdict(c) for c in self.checks]

    def format(self, limit: int = 20) -> str:
        """The violations as text (at most ``limit`` rows)."""
        v = self.violations
        lines = [
            f"bound J_N <= J_M* + sum_(k=M..N-1) gamma_k L_M: {len(self.checks)} comparisons, "
            f"{len(v)} violations (allowance rtol {self.rtol:g}, atol {self.atol:g})"
        ]
        if v:
            lines.append(f"{'gamma':>7} {'N':>3} {'seed':>4} {'M':>3} {'J_N':>12} {'bound':>12} {'excess':>10}")
            for c in sorted(v, key=lambda c: -c.excess)[:limit]:
                lines.append(
                    f"{c.gamma:>7g} {c.N:>3} {c.seed:>4} {c.M:>3} {c.J_N:>12.6g} {c.bound:>12.6g} {c.excess:>10.3e}"
                )
            if len(v) > limit:
                lines.append(f"... and {len(v) - limit} more (see bound.csv)")
            lines.append("violations are deep solutions that are not globally optimal (or did not converge)")
        return "\n".join(lines)


def padded_bound(J_M: float, L_M: float, gammas: Sequence[float], M: int, N: int) -> float:
    """J_M + Σ_{k=M}^{N-1} γ_k L_M for stage weights ``gammas`` (γ_0..γ_{N-1})."""
    if not 0 <= M <= N or len(gammas) < N:
        raise ValidationError(f"need 0 <= M <= N and N stage weights, got M={M}, N={N}, {len(gammas)} weights")
    return float(J_M + sum(gammas[M:N]) * L_M)


def pad_weights(spec_M: Any, weights: Mapping[str, Any], spec_N: Any) -> dict[str, np.ndarray]:
    """The M-block weights padded with zero residual branches to the N-block spec.

    The deep spec must extend the shallow one with identity-skip blocks at the end.
    """
    if spec_N.n_blocks < spec_M.n_blocks or spec_N.widths[: spec_M.n_blocks + 1] != spec_M.widths or len(
        set(spec_N.widths[spec_M.n_blocks:])
    ) != 1:
        raise ValidationError("the deep spec must extend the shallow one with identity-skip blocks at the end")
    out = {}
    for name, shape in spec_N.param_shapes().items():
        out[name] = np.asarray(weights[name], float).copy() if name in weights else np.zeros(shape)
    return out


def check_bound(rows: Iterable[Mapping[str, Any]], rtol: float = 1e-6, atol: float = 1e-9) -> BoundReport:
    """Compare every run with the padded best shallower run of the same γ (sweep rows).

    ``rows`` need ``gamma, blocks, seed, objective, final_loss, status``. Shallow references
    are the best successful run per (γ, M) over seeds; every deep run (any status) is checked
    against every M < N.
    """
    table = [dict(r) for r in rows]
    for r in table:
        for column in ("gamma", "blocks", "seed", "objective", "final_loss", "status"):
            if column not in r:
                raise ValidationError(f"sweep row lacks {column!r}: pass rows of sweep.csv")
    best: dict[tuple[float, int], dict[str, Any]] = {}
    for r in table:
        if str(r["status"]) not in OK_STATUSES or not np.isfinite(float(r["objective"])):
            continue
        key = (float(r["gamma"]), int(r["blocks"]))
        if key not in best or float(r["objective"]) < float(best[key]["objective"]):
            best[key] = r
    checks = []
    for r in table:
        g, N = float(r["gamma"]), int(r["blocks"])
        J_N = float(r["objective"])
        for (g2, M), ref in sorted(best.items()):
            if g2 != g or M >= N:
                continue
            J_M, L_M = float(ref["objective"]), float(ref["final_loss"])
            bound = padded_bound(J_M, L_M, [g] * N, M, N)
            excess = J_N - bound if np.isfinite(J_N) else float("inf")
            checks.append(BoundCheck(g, N, int(r["seed"]), M, int(ref["seed"]), J_N, J_M, L_M, bound, excess,
                                     bool(excess > rtol * abs(bound) + atol)))
    return BoundReport(checks, rtol, atol)
