"""ocp_resnet: residual networks trained as optimal control problems (arXiv 2506.21453).

Public API::

    from ocp_resnet import load_dataset, Problem, solve, IpoptOptions
    problem = Problem.build(load_dataset("spirals"), blocks=10, width=2, loss="mse", gamma=1.0)
    sol = solve(problem, method="multiple-shooting", options=IpoptOptions(tol=1e-8))
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._iteration import IterInfo
from .analysis.path import path
from .architecture import ArchSpec, BlockSpec
from .data import Dataset, load_dataset
from .errors import ValidationError
from .evaluation import Evaluation, evaluate, metrics_record
from .objective import ObjectiveSpec
from .problem import Problem
from .solution import Solution, SolveError
from .solvers import IpoptOptions, solve
from .status import Status


def __getattr__(name: str):
    # scikit-learn is imported only when the estimator is used
    if name == "OCPResNetClassifier":
        from .estimator import OCPResNetClassifier

        return OCPResNetClassifier
    raise AttributeError(f"module 'ocp_resnet' has no attribute {name!r}")

__all__ = [
    "ArchSpec",
    "BlockSpec",
    "Dataset",
    "Evaluation",
    "IpoptOptions",
    "IterInfo",
    "OCPResNetClassifier",
    "ObjectiveSpec",
    "Problem",
    "Solution",
    "SolveError",
    "Status",
    "ValidationError",
    "evaluate",
    "load_dataset",
    "metrics_record",
    "path",
    "solve",
    "__version__",
]
