"""Analysis of solved networks: which blocks vanish, pruning, sweeps and the sub-network bound.

* :mod:`.blocks` — relative block norms, vanished blocks, recommended depth (:func:`analyze`);
* :mod:`.prune` — physical removal of vanished blocks (:func:`prune_network`, :func:`prune_run`);
* :mod:`.sweep` — γ × depth × seed grids writing ``sweep.csv`` (:func:`run_sweep`);
* :mod:`.bound` — J_N* ≤ J_M* + Σ_{k=M}^{N-1} γ_k L_M over a sweep (:func:`check_bound`);
* :mod:`.costates` — costates p_k, stage-Hamiltonian gradients, multipliers as costates (:func:`costates`).
* :mod:`.gamma_path` — warm-started γ paths (:func:`~.gamma_path.path`, :func:`run_path`);
* :mod:`.restarts` — best of several initial weights (:func:`solve_restarts`);
* :mod:`.collapse` — is a run no better than the best linear classifier (:func:`linear_loss`).
* :mod:`.certificate` — second-order certificate: smallest Hessian eigenvalues at a solution (:func:`certify`).
* :mod:`.conv` / :mod:`.conv_sweep` — the same for conv ResNet-v2 runs (:func:`analyze_conv_run`,
  :func:`prune_conv_run`, :func:`run_conv_sweep`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ocp_resnet._lazy import lazy_attributes

# Imported now, not on first use: ``costates`` names both a submodule and its function, and
# importing the submodule (``from ocp_resnet.analysis.costates import ...``) rebinds the package's
# ``costates`` to it unless the function was bound afterwards, as this import does.
from ocp_resnet.analysis.costates import Costates, costates, costates_of_run, write_costates

if TYPE_CHECKING:
    from ocp_resnet.analysis.blocks import DEFAULT_TOL, BlockAnalysis, analyze, analyze_run, tail_to_head_ratio
    from ocp_resnet.analysis.bound import BoundReport, check_bound, pad_weights, padded_bound
    from ocp_resnet.analysis.certificate import Certificate, certify
    from ocp_resnet.analysis.collapse import collapse_record, is_collapsed, linear_loss
    from ocp_resnet.analysis.conv import (
        ConvBlockAnalysis,
        ConvPruneReport,
        analyze_conv,
        analyze_conv_run,
        prune_conv_network,
        prune_conv_run,
    )
    from ocp_resnet.analysis.conv_sweep import read_conv_csv, run_conv_sweep
    from ocp_resnet.analysis.gamma_path import run_path
    from ocp_resnet.analysis.prune import PrunedNetwork, PruneReport, prune_network, prune_problem, prune_run
    from ocp_resnet.analysis.restarts import RestartRecord, solve_restarts
    from ocp_resnet.analysis.sweep import grid_problem, read_csv, run_sweep, summarize

# The rest is imported on first use (PEP 562): ``ocp-resnet solve`` needs the modules behind its
# solve (restarts, retry, collapse, blocks, certificate), not those of sweeps, pruning or conv nets.
#: public name -> its module
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("DEFAULT_TOL", "BlockAnalysis", "analyze", "analyze_run", "tail_to_head_ratio"),
                    "ocp_resnet.analysis.blocks"),
    **dict.fromkeys(("BoundReport", "check_bound", "pad_weights", "padded_bound"), "ocp_resnet.analysis.bound"),
    **dict.fromkeys(("Certificate", "certify"), "ocp_resnet.analysis.certificate"),
    **dict.fromkeys(("collapse_record", "is_collapsed", "linear_loss"), "ocp_resnet.analysis.collapse"),
    **dict.fromkeys(("ConvBlockAnalysis", "ConvPruneReport", "analyze_conv", "analyze_conv_run", "prune_conv_network",
                     "prune_conv_run"), "ocp_resnet.analysis.conv"),
    **dict.fromkeys(("read_conv_csv", "run_conv_sweep"), "ocp_resnet.analysis.conv_sweep"),
    "run_path": "ocp_resnet.analysis.gamma_path",
    **dict.fromkeys(("PrunedNetwork", "PruneReport", "prune_network", "prune_problem", "prune_run"),
                    "ocp_resnet.analysis.prune"),
    **dict.fromkeys(("RestartRecord", "solve_restarts"), "ocp_resnet.analysis.restarts"),
    **dict.fromkeys(("grid_problem", "read_csv", "run_sweep", "summarize"), "ocp_resnet.analysis.sweep"),
}
#: submodules that were attributes of the package when it imported them all
_SUBMODULES = frozenset(("blocks", "bound", "certificate", "collapse", "conv", "conv_sweep", "gamma_path", "prune",
                         "restarts", "sweep"))


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _EXPORTS, _SUBMODULES)


__all__ = [
    "DEFAULT_TOL", "BlockAnalysis", "analyze", "analyze_run", "tail_to_head_ratio", "Certificate", "certify",
    "Costates", "costates", "costates_of_run", "write_costates",
    "BoundReport", "check_bound", "pad_weights", "padded_bound",
    "PrunedNetwork", "PruneReport", "prune_network", "prune_problem", "prune_run",
    "grid_problem", "read_csv", "run_sweep", "summarize",
    "collapse_record", "is_collapsed", "linear_loss", "run_path", "RestartRecord", "solve_restarts",
    "ConvBlockAnalysis", "ConvPruneReport", "analyze_conv", "analyze_conv_run", "prune_conv_network", "prune_conv_run",
    "read_conv_csv", "run_conv_sweep",
]
