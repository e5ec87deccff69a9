"""IPOPT through CasADi: transcriptions (:mod:`.transcription`), the size-aware choice of path
(:mod:`.sizing`), the typed options (:mod:`.options`) and the solver (:mod:`.solver`)."""
from __future__ import annotations

from ocp_resnet.solvers.ipopt.options import HESSIANS, METHODS, IpoptOptions
from ocp_resnet.solvers.ipopt.solver import IpoptSolver, abandoned_workers, solve

__all__ = ["HESSIANS", "METHODS", "IpoptOptions", "IpoptSolver", "abandoned_workers", "solve"]
