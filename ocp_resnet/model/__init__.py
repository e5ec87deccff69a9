"""The model: the architecture (F_k, S_k, E, H), the objective (ℓ, γ_k, λ, ŷ_k), the array
operations shared by the numpy, CasADi and torch evaluations, the :class:`Problem` and the
:class:`Evaluation` of a set of weights (docs/theory.md, "Symbol index").
"""
from __future__ import annotations

from ocp_resnet.model.architecture import ArchSpec, BlockSpec
from ocp_resnet.model.evaluation import Evaluation, evaluate, metrics_record, objective_and_gradient
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.model.problem import Problem

__all__ = ["ArchSpec", "BlockSpec", "Evaluation", "ObjectiveSpec", "Problem", "evaluate", "metrics_record",
           "objective_and_gradient"]
