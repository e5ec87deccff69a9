"""Transcriptions of a :class:`~ocp_resnet.model.problem.Problem` into an NLP (one file each;
docs/theory.md, "Transcriptions").

* ``single-shooting``: the weights are the only variables; states are simulated.
* ``multiple-shooting``: the states x_k^i are variables too, tied by x_{k+1}^i = f_k(x_k^i, w).

Both produce the same :class:`NLP` interface, so the solver does not care which was chosen.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ocp_resnet.solvers.ipopt.transcription._common import NLP
from ocp_resnet.solvers.ipopt.transcription.multiple_shooting import multiple_shooting
from ocp_resnet.solvers.ipopt.transcription.single_shooting import objective_and_gradient, single_shooting

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers.base import Method

METHODS = {"single-shooting": single_shooting, "multiple-shooting": multiple_shooting}


def transcribe(problem: Problem, method: Method = "multiple-shooting", jit: bool = False, threads: int = 1) -> NLP:
    """Build the NLP of ``problem`` with the named transcription (``jit``: compile the
    per-sample functions with the C compiler, see :func:`._common.compiled`; ``threads``:
    evaluate the samples in that many threads)."""
    from ocp_resnet.errors import check_choice

    check_choice("method", method, METHODS)
    return METHODS[method](problem, jit=jit, threads=threads)


__all__ = ["NLP", "METHODS", "transcribe", "single_shooting", "multiple_shooting", "objective_and_gradient"]
