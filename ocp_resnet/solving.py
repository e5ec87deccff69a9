"""The steps of a solve run around :func:`ocp_resnet.solvers.ipopt.solver.solve`: the held-out split, restarts
from several initial weights, the metrics recorded beside the solution's own, and the record of a
warm start. ``ocp-resnet solve``, ``path`` and ``sweep`` call them with their flags' values.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocp_resnet.errors import ValidationError
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers import Solution, Solver

if TYPE_CHECKING:
    from ocp_resnet.solvers.solution import Solution


def split_problem(problem: Problem, val_fraction: float | None, seed: int = 0) -> tuple[Any, Any]:
    """(training problem, validation Dataset or None): hold out ``val_fraction`` of the data
    (stratified, seeded by ``seed``); ``None`` keeps the problem whole."""
    if val_fraction is None:
        return problem, None
    from ocp_resnet.data.validation import split
    from ocp_resnet.model.problem import Problem

    train, val = split(problem.data, val_fraction, seed=seed)
    return Problem(problem.spec, problem.objective, train), val


def solve_with_restarts(problem: Problem, solver: Solver, *, init: Any = "random", seed: int = 0,
                        restarts: int = 1, log: Callable[[str], None] | None = None) -> tuple[Solution, list]:
    """One solve (``restarts`` 1) or the best of ``restarts`` solves from the init seeds
    ``seed``..``seed+restarts-1``; returns (solution, restart records, empty for one solve)."""
    from ocp_resnet.analysis.restarts import solve_best

    k = int(restarts or 1)
    if k == 1:
        return solver.solve(problem, init, seed, log), []
    if str(init) != "random":
        raise ValidationError("restarts > 1 draws random initial weights: use init='random' (the default), "
                              "or restarts=1 to warm-start")
    return solve_best(problem, seed, k, solver, log=log)


def extra_metrics(problem: Problem, sol: Solution, records: list, val: Any, tol: float = 1e-3) -> dict[str, Any]:
    """``vanished``, ``recommended_depth``, ``collapsed``/``linear_loss``, ``restarts`` and ``val_*``."""
    from ocp_resnet.analysis.restarts import solution_metrics

    return solution_metrics(problem, sol, records, val, tol=tol)


def extra_files(val: Any) -> dict[str, Any]:
    """``{"val.npz": writer}`` for a held-out split, else ``{}`` (``extra_files`` of ``write_run``)."""
    if val is None:
        return {}
    from ocp_resnet.data.validation import val_data_file

    return val_data_file(val)


def warm_start_record(problem: Problem, init: Any) -> dict[str, Any]:
    """Objective and gradient norm of the warm-start weights ``init`` (the ``init_*`` fields of metrics.json)."""
    import numpy as np

    from ocp_resnet.model.evaluation import objective_and_gradient
    from ocp_resnet.solvers import initial_weights

    J0, g0 = objective_and_gradient(problem, initial_weights(problem, init))
    return {"init_from": str(init), "init_objective": J0, "init_grad_norm": float(np.linalg.norm(g0))}
