"""Solvers: one contract (:class:`Solver`), its implementations, and the factory.

* :class:`IpoptSolver` — IPOPT on a multiple- or single-shooting transcription (CasADi);
* :class:`NewtonSolver` — exact trust-region Newton on the condensed objective (``method="newton"``);
* :class:`NewtonCGSolver` — Hessian-free trust-region Newton–CG (``method="newton-cg"``);
* :class:`TorchSolver` — torch training of the same objective (float64 MLP);
* :func:`make_solver` — a solver from plain values (CLI flags, a recorded ``solver`` dict);
* :class:`Solution` — what every solver returns, with a :class:`~ocp_resnet.status.Status`.

``solve(problem, method=..., options=...)`` is IPOPT's function form, kept for scripts::

    sol = IpoptSolver("multiple-shooting", IpoptOptions(tol=1e-8)).solve(problem)
"""
from __future__ import annotations

from ocp_resnet.solvers.base import Backend, Hessian, Init, Log, Method, Solver
from ocp_resnet.solvers.factory import make_solver, solver_from_record
from ocp_resnet.solvers.init import initial_weights
from ocp_resnet.solvers.ipopt import HESSIANS, METHODS, IpoptOptions, IpoptSolver, abandoned_workers, solve
from ocp_resnet.solvers.iteration import IterInfo
from ocp_resnet.solvers.newton import NewtonOptions, NewtonSolver
from ocp_resnet.solvers.newton_cg import NewtonCGOptions, NewtonCGSolver
from ocp_resnet.solvers.solution import Solution, SolveError
from ocp_resnet.solvers.trainer import TorchSolver

__all__ = [
    "HESSIANS", "METHODS", "Backend", "Hessian", "Init", "IpoptOptions", "IpoptSolver", "IterInfo", "Log", "Method",
    "NewtonCGOptions", "NewtonCGSolver", "NewtonOptions", "NewtonSolver",
    "Solution", "SolveError", "Solver", "TorchSolver", "abandoned_workers", "initial_weights", "make_solver", "solve",
    "solver_from_record",
]
