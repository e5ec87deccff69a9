"""The solver contract: every way of minimising J(w) is an object with one ``solve`` method.

A :class:`Solver` turns a :class:`~ocp_resnet.model.problem.Problem` and initial weights into a
:class:`~ocp_resnet.solvers.solution.Solution` whose :class:`~ocp_resnet.status.Status` says how it
ended. Restarts, γ paths, sweeps, prune re-solves, the comparison and the scikit-learn estimator
take a solver object and never decide themselves how to solve (the problem, the transcription
and the solver are independent choices, as in rockit). :func:`ocp_resnet.solvers.make_solver`
builds one from plain values (the CLI's flags, a run's recorded ``solver`` dict).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

import numpy as np

from ocp_resnet.solvers.solution import Solution

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem

#: IPOPT transcriptions, exact Newton or Hessian-free Newton–CG; ``"auto"`` picks one from the problem's size
#: (:mod:`.ipopt.sizing`).
Method = Literal["auto", "multiple-shooting", "single-shooting", "newton", "newton-cg"]
#: IPOPT's Hessian: exact, limited-memory BFGS, or chosen from the size.
Hessian = Literal["auto", "exact", "lbfgs"]
#: Where the derivatives come from: CasADi (IPOPT and the Newton path) or torch autograd.
Backend = Literal["casadi", "torch"]
#: Initial weights: ``"random"`` (seeded), ``"zeros"``, a flat array, a name → array mapping, a
#: :class:`~ocp_resnet.solvers.solution.Solution`, or the path of a run directory / solution.npz.
Init: TypeAlias = str | os.PathLike[str] | np.ndarray | Mapping[str, Any] | Solution
#: A line logger (``print``, a progress bar's ``write``, a list's ``append``).
Log = Callable[[str], None]


@runtime_checkable
class Solver(Protocol):
    """Anything that solves a problem from initial weights.

    ``seed`` seeds the random initial weights (``init="random"``) and, for stochastic solvers,
    everything else random in the solve, so one (solver, problem, init, seed) gives one answer.
    ``log`` receives the solver's progress lines; ``None`` keeps it quiet.
    """

    @property
    def backend(self) -> Backend:
        """Where the derivatives come from (recorded in ``metrics.json``)."""
        ...

    @property
    def name(self) -> str:
        """A short name for logs and tables, e.g. ``ipopt/multiple-shooting`` or ``torch/adam``."""
        ...

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """Minimise the problem's objective from ``init``; a failed solve returns its last iterate."""
        ...

    def record(self) -> dict[str, Any]:
        """The solver as plain data (``config.json``'s ``solver``); :func:`make_solver` reads it back."""
        ...
