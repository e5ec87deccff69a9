"""Analysis of solved networks: which blocks vanish, pruning, sweeps and the sub-network bound.

* :mod:`.blocks` — relative block norms, vanished blocks, recommended depth (:func:`analyze`);
* :mod:`.prune` — physical removal of vanished blocks (:func:`prune_network`, :func:`prune_run`);
* :mod:`.sweep` — γ × depth × seed grids writing ``sweep.csv`` (:func:`run_sweep`);
* :mod:`.bound` — J_N* ≤ J_M* + Σ_{k=M}^{N-1} γ_k L_M over a sweep (:func:`check_bound`);
* :mod:`.costates` — costates p_k, stage-Hamiltonian gradients, multipliers as costates (:func:`costates`).
* :mod:`.gamma_path` — warm-started γ paths (:func:`~.gamma_path.path`, :func:`run_path`);
* :mod:`.restarts` — best of several initial weights (:func:`solve_restarts`);
* :mod:`.collapse` — is a run no better than the best linear classifier (:func:`linear_loss`).
* :mod:`.conv` / :mod:`.conv_sweep` — the same for conv ResNet-v2 runs (:func:`analyze_conv_run`,
  :func:`prune_conv_run`, :func:`run_conv_sweep`).
"""
from __future__ import annotations

from ocp_resnet.analysis.blocks import DEFAULT_TOL, BlockAnalysis, analyze, analyze_run, tail_to_head_ratio
from ocp_resnet.analysis.bound import BoundReport, check_bound, pad_weights, padded_bound
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
from ocp_resnet.analysis.costates import Costates, costates, costates_of_run, write_costates
from ocp_resnet.analysis.gamma_path import run_path
from ocp_resnet.analysis.prune import PrunedNetwork, PruneReport, prune_network, prune_problem, prune_run
from ocp_resnet.analysis.restarts import RestartRecord, solve_restarts
from ocp_resnet.analysis.sweep import grid_problem, read_csv, run_sweep, summarize

__all__ = [
    "DEFAULT_TOL", "BlockAnalysis", "analyze", "analyze_run", "tail_to_head_ratio",
    "Costates", "costates", "costates_of_run", "write_costates",
    "BoundReport", "check_bound", "pad_weights", "padded_bound",
    "PrunedNetwork", "PruneReport", "prune_network", "prune_problem", "prune_run",
    "grid_problem", "read_csv", "run_sweep", "summarize",
    "collapse_record", "is_collapsed", "linear_loss", "run_path", "RestartRecord", "solve_restarts",
    "ConvBlockAnalysis", "ConvPruneReport", "analyze_conv", "analyze_conv_run", "prune_conv_network", "prune_conv_run",
    "read_conv_csv", "run_conv_sweep",
]
