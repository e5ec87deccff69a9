"""Collapse detection: is a solution no better than the best *linear* classifier?

A non-convex training problem has a near-linear local optimum: every residual block small,
the network nearly the identity followed by the linear head. Its trailing blocks look
"vanished" by the relative-norm criterion, but they vanished because the whole network gave
up, not because the task was solved early. A run is **collapsed** when its final loss is no
lower than the loss of the best linear classifier on the inputs (same loss, same data):

    collapsed  ⇔  L_N ≥ (1 − rtol) · L_lin,    L_lin = min_{W, b} (1/n) Σ_i ℓ(W u_i + b, y_i)

(one-sided on purpose: a collapsed network keeps tiny non-zero blocks, so its final loss can
sit a few 1e-6 *above* L_lin, e.g. 0.1852776 vs 0.1852769 on two spirals with MSE.)
L_lin is computed once per data set and loss (exact Newton on the zero-block problem; it is
convex) and cached. For ``mse``/``sce`` the linear fit is unregularised (both have a finite
minimiser); ``ce``/``bce`` keep the problem's weight decay, which they need for one.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.errors import check_float
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.model.architecture import ArchSpec
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers.solution import Solution

#: Default relative tolerance of the collapse test.
COLLAPSE_RTOL = 1e-6

_CACHE: dict[tuple, float] = {}


def _key(problem: Problem, weight_decay: float) -> tuple:
    d = problem.data
    h = hashlib.sha1(np.ascontiguousarray(d.X, dtype=float).tobytes())
    h.update(np.ascontiguousarray(d.y, dtype=np.int64).tobytes())
    obj = problem.objective
    return (h.hexdigest(), int(d.n_classes), obj.loss, float(obj.label_smoothing), float(weight_decay))


def linear_problem(problem: Problem) -> Any:
    """The zero-block problem with the head directly on the inputs: a linear classifier."""
    from dataclasses import replace

    from ocp_resnet.model.architecture import ArchSpec
    from ocp_resnet.model.problem import Problem

    obj = problem.objective
    lam = obj.weight_decay if obj.loss in ("ce", "bce") else 0.0
    spec = ArchSpec.uniform(problem.data.n_features, problem.spec.n_outputs, 0, problem.data.n_features)
    return Problem(spec, replace(obj, gamma=0.0, weight_decay=lam), problem.data)


def linear_loss(problem: Problem) -> float:
    """L_lin: the final loss of the best linear classifier on ``problem``'s data (cached)."""
    from ocp_resnet.solvers.newton import NewtonOptions, newton_solve

    lin = linear_problem(problem)
    key = _key(problem, lin.objective.weight_decay)
    if key not in _CACHE:
        # exact Newton from zero weights: a few iterations of this convex problem (an IPOPT solve of
        # it cost ~2.5x as long, mostly setting up the NLP: a few percent of a whole small solve)
        sol = newton_solve(lin, np.zeros(lin.spec.n_params), NewtonOptions(tol=1e-10, max_iter=500, print_level=0))
        _CACHE[key] = float(sol.evaluation.final_loss)
    return _CACHE[key]


def is_collapsed(final_loss: float, linear: float, rtol: float = COLLAPSE_RTOL) -> bool:
    """Whether a final loss is no better than the linear classifier's (see the module docstring)."""
    rtol = check_float("collapse rtol", rtol, 0.0)
    return bool(np.isfinite(final_loss) and final_loss >= (1.0 - rtol) * linear)


def solution_collapse_record(problem: Problem, sol: Solution, rtol: float = COLLAPSE_RTOL) -> dict[str, Any]:
    """:func:`collapse_record` of a Solution; ``None`` fields for an interrupted one: it is no
    optimum, and the reference is an IPOPT solve of its own, which an interrupted command must
    not wait for (an abandoned IPOPT thread may still be finishing its iteration)."""
    if sol.status == Status.INTERRUPTED:
        return {"collapsed": None, "linear_loss": None}
    return collapse_record(problem, sol.evaluation.final_loss, rtol)


def narrow_head(spec: ArchSpec, n_classes: int) -> str | None:
    """Why the network cannot beat a linear classifier whatever its weights, or ``None``.

    With one output per class, the head's C outputs are an affine function of the last state, so
    their rank is at most the narrowest state's width w. A linear classifier on the d inputs has
    rank min(C − 1, d), all that C classes need; a network with w < min(C − 1, d) has less at its
    head than that classifier and seldom ends better than it (collapsed), from any start. The
    text names the fix.
    """
    ranks = head_ranks(spec, n_classes)
    if ranks is None:
        return None
    w, need = ranks
    return (f"{w} states cannot separate {n_classes} classes linearly at the head (its outputs have rank <= {w}, "
            f"a linear classifier on the {spec.input_dim} inputs has rank {need}): the network seldom ends better "
            f"than that classifier; use width >= {need}")


def head_ranks(spec: ArchSpec, n_classes: int) -> tuple[int, int] | None:
    """(narrowest state width w, the rank min(C − 1, d) of a linear classifier) when w is the
    smaller and the head has one output per class (:func:`narrow_head`), else ``None``."""
    if spec.n_outputs < 2:  # bce: one output, any width separates two classes
        return None
    w, need = min(spec.widths), min(n_classes - 1, spec.input_dim)
    return (w, need) if w < need else None


def collapse_record(problem: Problem, final_loss: float, rtol: float = COLLAPSE_RTOL) -> dict[str, Any]:
    """``{"collapsed", "linear_loss"}`` for ``metrics.json`` and the analysis."""
    lin = linear_loss(problem)
    return {"collapsed": is_collapsed(final_loss, lin, rtol), "linear_loss": lin}
