"""ocp_resnet: residual networks trained as optimal control problems (arXiv 2506.21453).

Public API::

    from ocp_resnet import load_dataset, Problem, IpoptSolver, IpoptOptions
    problem = Problem.build(load_dataset("spirals"), blocks=10, width=2, loss="mse", gamma=1.0)
    sol = IpoptSolver("multiple-shooting", IpoptOptions(tol=1e-8)).solve(problem)
"""
from __future__ import annotations

from typing import Any

from ocp_resnet.analysis.gamma_path import path
from ocp_resnet.data import Dataset, load_dataset
from ocp_resnet.errors import ValidationError
from ocp_resnet.model import ArchSpec, BlockSpec, Evaluation, ObjectiveSpec, Problem, evaluate, metrics_record
from ocp_resnet.solvers import (
    IpoptOptions,
    IpoptSolver,
    IterInfo,
    Solution,
    SolveError,
    Solver,
    TorchSolver,
    make_solver,
    solve,
)
from ocp_resnet.status import Status
from ocp_resnet.version import __version__


def __getattr__(name: str) -> Any:
    # scikit-learn is imported only when the estimator is used
    if name == "OCPResNetClassifier":
        from ocp_resnet.estimator import OCPResNetClassifier

        return OCPResNetClassifier
    raise AttributeError(f"module 'ocp_resnet' has no attribute {name!r}")

__all__ = [
    "ArchSpec",
    "BlockSpec",
    "Dataset",
    "Evaluation",
    "IpoptOptions",
    "IpoptSolver",
    "IterInfo",
    "OCPResNetClassifier",
    "ObjectiveSpec",
    "Problem",
    "Solution",
    "SolveError",
    "Solver",
    "Status",
    "TorchSolver",
    "ValidationError",
    "evaluate",
    "load_dataset",
    "make_solver",
    "metrics_record",
    "path",
    "solve",
    "__version__",
]
