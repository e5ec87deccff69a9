"""J(w) and ∇J(w) of an MLP problem by torch autograd in float64: the torch twin of the CasADi
gradient, used by :func:`ocp_resnet.model.evaluation.evaluate` with ``backend="torch"``.

It imports only the model and the torch modules built from it, so the model's evaluation can
call it without an import cycle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import TORCH
from ocp_resnet.torch.loss import StageCostLoss
from ocp_resnet.torch.mlp import ResNetMLP

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem


def objective_and_gradient(problem: Problem, w: Any, device: Any = None) -> tuple[float, np.ndarray]:
    """J(w) and ∇J(w) of an MLP :class:`~ocp_resnet.model.problem.Problem` by torch autograd, float64.

    The torch twin of :func:`ocp_resnet.solvers.ipopt.transcription.objective_and_gradient` (same flat order).
    """
    model = ResNetMLP(problem.spec, init=problem.params(w), dtype=torch.float64, device=device)
    X = torch.as_tensor(problem.U.T, dtype=torch.float64, device=device)
    T = torch.as_tensor(problem.T, dtype=torch.float64, device=device)
    J, _ = StageCostLoss(problem.objective, problem.data.n_classes)(model, X, T.T)
    model.zero_grad()
    J.backward()
    g = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1)
                   for p in model.params().values()])
    return float(J.detach().cpu()), g.detach().cpu().numpy().astype(np.float64)


class FlatObjective:
    """J(w), ∇J(w) and exact Hessian-vector products ∇²J(w)·v of an MLP problem, torch float64,
    with w one flat vector (the spec's order).

    :meth:`gradient` keeps autograd's graph of ∇J at its point, so each :meth:`hvp` there is one
    more backward pass through it (double backward: about 1.3 gradients, measured on the
    two-spirals problem of n = 2000, 20 blocks of width 4), and no p × p matrix is ever formed.
    The stage costs go through the model's stacked evaluation (:meth:`ResNetMLP.cost`).
    """

    def __init__(self, problem: Problem, device: Any = None) -> None:
        self.problem = problem
        self.model = ResNetMLP(problem.spec, init="zeros", dtype=torch.float64, device=device)
        self.X = torch.as_tensor(np.ascontiguousarray(problem.U.T), dtype=torch.float64, device=device)
        self.T = torch.as_tensor(problem.T, dtype=torch.float64, device=device)
        self.device = device
        self._w: np.ndarray | None = None
        self._wt: torch.Tensor | None = None
        self._g: torch.Tensor | None = None
        self.evaluations = {"values": 0, "gradients": 0, "hvps": 0}

    def _J(self, w: torch.Tensor) -> torch.Tensor:
        obj = self.problem.objective
        P = self.problem.spec.unflatten(w, TORCH)
        cost, _ = self.model.cost(self.X, self.T, obj, params=P)
        return cost.mean() + objective_mod.regularization(obj, w, TORCH)

    def value(self, w: np.ndarray) -> float:
        """J(w) (inf where the simulation overflows)."""
        self.evaluations["values"] += 1
        with torch.no_grad():
            J = float(self._J(torch.as_tensor(w, dtype=torch.float64, device=self.device)))
        return J if np.isfinite(J) else float("inf")

    def gradient(self, w: np.ndarray) -> np.ndarray:
        """∇J(w); the graph stays for :meth:`hvp` at this w (recomputed only when w changes)."""
        if self._w is None or not np.array_equal(w, self._w):
            self.evaluations["gradients"] += 1
            wt = torch.tensor(np.asarray(w, dtype=np.float64), dtype=torch.float64, device=self.device,
                              requires_grad=True)
            self._g = torch.autograd.grad(self._J(wt), wt, create_graph=True)[0]
            self._w, self._wt = np.array(w, dtype=np.float64), wt
        assert self._g is not None
        return self._g.detach().cpu().numpy().astype(np.float64)

    def hvp(self, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        """∇²J(w)·v, exact (double backward through the graph of :meth:`gradient` at w)."""
        self.gradient(w)
        self.evaluations["hvps"] += 1
        assert self._g is not None and self._wt is not None
        vt = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float64, device=self.device)
        return torch.autograd.grad(self._g, self._wt, vt, retain_graph=True)[0].detach().cpu().numpy()

    def states_metric_diagonal(self, w: np.ndarray, probes: int = 8, seed: int = 0) -> np.ndarray:
        """An estimate of diag(M), M = I + (1/n) Σ_k S_kᵀ S_k with S_k = ∂x_k/∂w (the states metric
        of :mod:`ocp_resnet.solvers.newton`): Hutchinson's E[v ⊙ M v] over ``probes`` Rademacher
        vectors v, each M v one forward-mode and one reverse-mode pass through the trajectory."""
        from torch.func import jvp, vjp, vmap

        spec = self.problem.spec
        n = self.problem.n_samples
        U = self.X.T

        def states(wt: torch.Tensor) -> torch.Tensor:
            return torch.cat(arch.trajectory(spec, spec.unflatten(wt, TORCH), U, TORCH), dim=0)

        wt = torch.as_tensor(np.asarray(w, dtype=np.float64), dtype=torch.float64, device=self.device)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        V = (torch.randint(0, 2, (probes, wt.numel()), generator=gen) * 2 - 1).to(torch.float64)
        V = V.to(self.device)
        pull = vjp(states, wt)[1]
        SV = vmap(lambda v: jvp(states, (wt,), (v,))[1])(V)
        StSV = vmap(lambda u: pull(u)[0])(SV)
        return (1.0 + (V * StSV).mean(dim=0) / n).clamp_min(1.0).cpu().numpy()
