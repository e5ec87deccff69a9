"""ocp_resnet: residual networks trained as optimal control problems (arXiv 2506.21453).

Public API::

    from ocp_resnet import load_dataset, Problem, IpoptSolver, IpoptOptions
    problem = Problem.build(load_dataset("spirals"), blocks=10, width=2, loss="mse", gamma=1.0)
    sol = IpoptSolver("multiple-shooting", IpoptOptions(tol=1e-8)).solve(problem)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ocp_resnet._lazy import lazy_attributes
from ocp_resnet.version import __version__

if TYPE_CHECKING:
    from ocp_resnet.analysis.gamma_path import path
    from ocp_resnet.data import Dataset, load_dataset
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.estimator import OCPResNetClassifier
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

# The public names are imported on first use (PEP 562), so that ``import ocp_resnet`` (which every
# ``ocp-resnet`` command runs first) loads no module the command does not need: the analysis
# package alone is a tenth of ``ocp-resnet solve``'s start-up. scikit-learn loads only with the estimator.
#: public name -> the module it is imported from
_EXPORTS: dict[str, str] = {
    "path": "ocp_resnet.analysis.gamma_path",
    **dict.fromkeys(("Dataset", "load_dataset"), "ocp_resnet.data"),
    "ValidationError": "ocp_resnet.errors",
    "OCPResNetClassifier": "ocp_resnet.estimator",
    **dict.fromkeys(("ArchSpec", "BlockSpec", "Evaluation", "ObjectiveSpec", "Problem", "evaluate", "metrics_record"),
                    "ocp_resnet.model"),
    **dict.fromkeys(("IpoptOptions", "IpoptSolver", "IterInfo", "Solution", "SolveError", "Solver", "TorchSolver",
                     "make_solver", "solve"), "ocp_resnet.solvers"),
    "Status": "ocp_resnet.status",
}
#: sub-packages and modules that ``import ocp_resnet`` made attributes when it imported them all
_SUBMODULES = frozenset(("analysis", "data", "errors", "model", "solvers", "status"))


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _EXPORTS, _SUBMODULES)


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
