"""Costates (adjoints) and the discrete stage Hamiltonian of a trained ResNet.

Per sample i and layer k = 0..N (γ_N = 1), the costate is the gradient of the tail cost::

    p_k^i = ∂/∂x_k^i  Σ_{j=k}^{N} γ_j ℓ(ŷ_j^i)          (per sample, not divided by n)

so ``p_N = ∇_x ℓ(H(x_N))`` and, backwards, ``p_k = γ_k ∇_{x_k} ℓ(ŷ_k) + (∂f_k/∂x_k)ᵀ p_{k+1}``
with f_k(x) = S_k(x) + F_k(x) and ŷ_k sent through the later skips (docs/theory.md). The
stage Hamiltonian of block k is ``H_k = (1/n) Σ_i p_{k+1}^iᵀ f_k(x_k^i, w_k) + λ‖w_k‖²`` (the
stage-cost term does not depend on w_k), and the discrete maximum principle says
``∂H_k/∂w_k = 0`` at a KKT point.

**Which weights are w_k.** w_k are the *residual-branch* weights of block k
(``ArchSpec.branch_names(k)``: ``block{k}.W, .b`` or ``.W1, .b1, .W2, .b2``; none for a
``none`` branch). They enter f_k only, so ``∂H_k/∂w_k`` equals ``∂J/∂w_k`` exactly. The stem,
the projections ``block{k}.S`` and the head also enter the stage costs of earlier stages (ŷ_j,
j ≤ k, goes through S_k and H), so they belong to no single stage: they are shared
parameters, whose stationarity is reported as one number, ``shared_gradient_norm`` = ‖∂J/∂θ‖
over θ = (stem, projections, head), assembled from the same costates.

**Multipliers.** IPOPT's Lagrangian (CasADi's convention) is ``f + lam_gᵀ g`` with
``g_k^i = f_k(x_k^i, w) − x_{k+1}^i`` and ``f = (1/n) Σ_i cost^i + λ‖w‖²``. Stationarity in
x_{k+1}^i gives ``lam_g_k^i = (1/n) p_{k+1}^i``, so **p_{k+1}^i = + n · lam_g_k^i** (k = 0..N−1);
p_0 follows from p_1 by one step of the recursion. ``lam_g`` is ordered sample by sample, each
sample's constraints block by block (``transcription/multiple_shooting.py``).

**How the derivatives are taken.** The states come from the numpy forward pass
(:meth:`Problem.states`); the local derivatives ∂f_k/∂x, ∂f_k/∂w and ∇_x ℓ(ŷ_k) are
vector-Jacobian products by torch autograd (float64) of the *same* formulas
(``architecture.block``, ``architecture.stem``, ``objective.sample_cost``) evaluated with the
torch back-end. Why torch rather than CasADi: one batched call per block covers all samples with
no symbolic build, it handles ``relu`` (torch-trained runs; CasADi refuses non-smooth
activations), and checking the multipliers, which come from CasADi's derivatives, against an
independent AD makes that check meaningful.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.errors import ValidationError
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import NUMPY, TORCH

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem

#: Files ``ocp-resnet analyze RUN --costates`` writes.
COSTATE_FILES = ("costates.npz", "costates.json", "costates.png")

CONVENTION = ("p_k^i = d/dx_k^i sum_{j>=k} gamma_j l(yhat_j^i) (per sample, not divided by n); "
              "from multiple-shooting multipliers: p_{k+1}^i = +n * lam_g[sample i, block k]")


def _rms(a: np.ndarray) -> float:
    """RMS over samples (columns) of the column norms ‖a^i‖."""
    return float(np.sqrt(np.mean(np.sum(np.square(a), axis=0)))) if a.size else 0.0


@dataclass
class Costates:
    """Costates of one set of weights (k = 0..N for layer arrays, N entries for blocks).

    ``p[k]`` and ``states[k]`` are ``(d_k, n)``. ``hamiltonian_gradients[k]`` is ∂H_k/∂w_k
    (flat, in the order of ``hamiltonian_weights[k]``). ``gradient`` is ∇J assembled from the
    costates (the spec's flat order). With multipliers: ``multiplier_costates`` (p_0..p_N, p_0
    by one recursion step), ``multiplier_disagreement`` per layer k = 1..N
    (‖P^λ_k − P_k‖_F / ‖P_k‖_F) and its maximum ``multiplier_agreement``.
    """

    p: list[np.ndarray]
    states: list[np.ndarray]
    hamiltonian_gradients: list[np.ndarray]
    hamiltonian_weights: list[list[str]]
    gradient: np.ndarray
    shared_weights: list[str]
    shared_gradient_norm: float
    block_norms: list[float] = field(default_factory=list)
    multiplier_costates: list[np.ndarray] | None = None
    multiplier_disagreement: list[float] | None = None

    @property
    def n_blocks(self) -> int:
        """N, the number of blocks."""
        return len(self.p) - 1

    @property
    def costate_norms(self) -> list[float]:
        """RMS over samples of ‖p_k^i‖, k = 0..N."""
        return [_rms(a) for a in self.p]

    @property
    def state_norms(self) -> list[float]:
        """RMS over samples of ‖x_k^i‖, k = 0..N."""
        return [_rms(a) for a in self.states]

    @property
    def multiplier_costate_norms(self) -> list[float] | None:
        """RMS over samples of ‖n·lam_{k-1}^i‖, k = 0..N (k = 0 by one recursion step), or ``None``."""
        return None if self.multiplier_costates is None else [_rms(a) for a in self.multiplier_costates]

    @property
    def hamiltonian_gradient_norms(self) -> list[float]:
        """‖∂H_k/∂w_k‖, k = 0..N−1 (0 for a block without branch weights)."""
        return [float(np.linalg.norm(g)) for g in self.hamiltonian_gradients]

    @property
    def multiplier_agreement(self) -> float | None:
        """Max over k = 1..N of the relative disagreement of multipliers and recursion."""
        d = self.multiplier_disagreement
        return None if d is None else float(max(d, default=0.0))

    def arrays(self) -> dict[str, np.ndarray]:
        """``{"p0": …, "pN": …}`` (and ``"p0_multipliers"`` … when there are multipliers)."""
        out = {f"p{k}": a for k, a in enumerate(self.p)}
        if self.multiplier_costates is not None:
            out.update({f"p{k}_multipliers": a for k, a in enumerate(self.multiplier_costates)})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Norms and summary numbers as a JSON-ready dict (``costates.json``)."""
        d: dict[str, Any] = {
            "convention": CONVENTION,
            "n_samples": int(self.p[0].shape[1]),
            "costate_norms": self.costate_norms,
            "state_norms": self.state_norms,
            "block_norms": list(self.block_norms),
            "hamiltonian_gradient_norms": self.hamiltonian_gradient_norms,
            "hamiltonian_weights": self.hamiltonian_weights,
            "shared_gradient_norm": self.shared_gradient_norm,
            "shared_weights": self.shared_weights,
            "gradient_norm": float(np.linalg.norm(self.gradient)),
        }
        if self.multiplier_disagreement is not None:
            d["multiplier_agreement"] = {
                "max_relative_disagreement": self.multiplier_agreement,
                "per_layer": {str(k + 1): v for k, v in enumerate(self.multiplier_disagreement)},
                "mapping": "p_{k+1}^i = +n * lam_g[sample i, block k]; relative: |P_lam - P|_F / |P|_F per layer",
            }
        return d

    def format(self) -> str:
        """A per-layer table: state and costate norms, ∂H_k/∂w_k, multiplier disagreement."""
        mult = self.multiplier_disagreement
        head = f"{'k':>3} {'RMS|x_k|':>10} {'RMS|p_k|':>10} {'|w_k|':>10} {'|dH_k/dw_k|':>12}"
        if mult is not None:
            head += f" {'mult. rel. diff':>15}"
        lines = [head]
        xn, pn, hn = self.state_norms, self.costate_norms, self.hamiltonian_gradient_norms
        for k in range(self.n_blocks + 1):
            row = f"{k:>3} {xn[k]:>10.3e} {pn[k]:>10.3e}"
            if k < self.n_blocks:
                bn = f"{self.block_norms[k]:>10.3e}" if self.block_norms else f"{'':>10}"
                row += f" {bn} {hn[k]:>12.3e}"
            else:
                row += f" {'':>10} {'':>12}"
            if mult is not None:
                row += f" {mult[k - 1]:>15.2e}" if k >= 1 else f" {'':>15}"
            lines.append(row)
        lines.append(f"shared weights (stem, projections, head): |dJ/dtheta| = {self.shared_gradient_norm:.3e}")
        if mult is not None:
            lines.append(f"multipliers vs recursion: max relative disagreement {self.multiplier_agreement:.3e} "
                         "(p_{k+1} = n * lam_g)")
        return "\n".join(lines)


# --------------------------------------------------------------------------- computation
def _torch_params(params: Mapping[str, np.ndarray]) -> dict[str, Any]:
    import torch

    return {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=torch.float64, requires_grad=True)
            for k, v in params.items()}


def _vjp(outputs: Any, grad_outputs: Any, x: Any, P: Mapping[str, Any]) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """(∂out/∂x)ᵀ v per sample (None without ``x``), and Σ_i (∂out/∂θ)ᵀ v for every parameter θ (zeros if unused)."""
    import torch

    names = list(P)
    inputs = ([x] if x is not None else []) + [P[k] for k in names]
    grads = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, allow_unused=True)
    gx = None
    if x is not None:
        gx = grads[0].detach().numpy() if grads[0] is not None else np.zeros(tuple(x.shape))
        grads = grads[1:]
    gp = {k: (g.detach().numpy() if g is not None else np.zeros(tuple(P[k].shape))) for k, g in zip(names, grads)}
    return gx, gp


def _step(spec: arch.ArchSpec, k: int, P: Mapping[str, Any], x: np.ndarray, p_next: np.ndarray,
          direct: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """p_k = direct_k + (∂f_k/∂x_k)ᵀ p_{k+1}, and Σ_i (∂f_k/∂θ)ᵀ p_{k+1}^i for every θ."""
    import torch

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    fk = arch.block(spec, k, P, xt, TORCH)
    gx, gp = _vjp(fk, torch.as_tensor(p_next, dtype=torch.float64), xt, P)
    assert gx is not None  # x was given
    return direct + gx, gp


def _multiplier_layers(problem: Problem, lam_g: np.ndarray) -> list[np.ndarray]:
    """n · lam_g split into P_1..P_N, each (d_k, n)."""
    widths = problem.spec.widths
    n, ns = problem.n_samples, sum(widths[1:])
    lam_g = np.asarray(lam_g, dtype=float).ravel()
    if lam_g.size != n * ns:
        raise ValidationError(
            f"lam_g has {lam_g.size} entries, the multiple-shooting NLP of this problem has {n * ns} "
            f"(n = {n} samples x {ns} states): the multipliers belong to another problem"
        )
    L = lam_g.reshape(n, ns)  # sample by sample, each sample's constraints block by block
    out, off = [], 0
    for d in widths[1:]:
        out.append(n * L[:, off:off + d].T)
        off += d
    return out


def _read_multipliers(problem: Problem, w_flat: np.ndarray, multipliers: Any) -> np.ndarray:
    """lam_g of a Solution, a ``Run.multipliers()`` dict or a bare array, checked against ``w``."""
    if isinstance(multipliers, Mapping):
        method, lam_g, x = multipliers.get("method"), multipliers.get("lam_g"), multipliers.get("x")
    elif hasattr(multipliers, "lam_g"):
        method, lam_g, x = getattr(multipliers, "method", None), multipliers.lam_g, getattr(multipliers, "x", None)
    else:
        method, lam_g, x = None, multipliers, None
    if method is not None and str(method) != "multiple-shooting":
        raise ValidationError(
            f"multipliers of a {method} solve are not costates (only multiple shooting has the dynamics as "
            "constraints): solve with method='multiple-shooting', or call costates() without multipliers"
        )
    if lam_g is None:
        raise ValidationError("these multipliers have no lam_g: pass Solution, Run(path).multipliers() or an array")
    if x is not None:
        xw = np.asarray(x, dtype=float).ravel()[-w_flat.size:] if w_flat.size else np.zeros(0)
        if xw.shape != w_flat.shape or not np.allclose(xw, w_flat, rtol=1e-10, atol=1e-12):
            raise ValidationError("the multipliers belong to other weights than w: pass the weights of the same solve")
    return np.asarray(lam_g, dtype=float)


def costates(problem: Problem, w: np.ndarray | Mapping[str, Any], multipliers: Any = None) -> Costates:
    """Costates p_0..p_N of ``problem`` at weights ``w`` by the backward recursion.

    ``multipliers``: a multiple-shooting :class:`~ocp_resnet.solvers.solution.Solution`, the dict of
    ``Run(path).multipliers()``, or a bare ``lam_g`` array; then the multipliers are mapped to
    costates (p_{k+1} = n · lam_g) and compared with the recursion. See the module docstring for
    the definitions and which weights w_k are.
    """
    import torch

    spec, obj = problem.spec, problem.objective
    N, n, lam = spec.n_blocks, problem.n_samples, obj.weight_decay
    params = problem.params(w)
    w_flat = spec.flatten(params)
    lam_g = _read_multipliers(problem, w_flat, multipliers) if multipliers is not None else None
    xs = arch.trajectory(spec, params, problem.U, NUMPY)  # the states, by the numpy formulas
    P = _torch_params(params)
    grad = {k: np.zeros(v.shape) for k, v in params.items()}  # Σ_i of every term of n·J's gradient

    # Direct stage-cost gradients γ_k ∇_{x_k} ℓ(ŷ_k) for every k at once: ŷ_k depends on x_k only.
    xt = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    cost = objective_mod.sample_cost(spec, obj, P, xt, torch.as_tensor(problem.T, dtype=torch.float64), TORCH)
    direct = [np.zeros_like(x) for x in xs]
    if torch.is_tensor(cost):  # with every γ = 0 but the last there is still ℓ(ŷ_N)
        names = list(P)
        gs = torch.autograd.grad(cost.sum(), xt + [P[k] for k in names], allow_unused=True)
        direct = [g.detach().numpy() if g is not None else np.zeros_like(x) for g, x in zip(gs[: N + 1], xs)]
        for name, g_theta in zip(names, gs[N + 1:]):
            if g_theta is not None:
                grad[name] += g_theta.detach().numpy()

    p: list[np.ndarray] = [np.zeros(0)] * (N + 1)
    p[N] = direct[N]
    dyn: list[dict[str, np.ndarray]] = [{}] * N
    for k in range(N - 1, -1, -1):
        p[k], dyn[k] = _step(spec, k, P, xs[k], p[k + 1], direct[k])
        for name, g in dyn[k].items():
            grad[name] += g
    if spec.stem == "linear":  # x_0 = E(u; θ): Σ_i (∂E/∂θ)ᵀ p_0^i
        x0 = arch.stem(spec, P, torch.as_tensor(problem.U, dtype=torch.float64), TORCH)
        _, gp = _vjp(x0, torch.as_tensor(p[0]), None, P)
        for name, g in gp.items():
            grad[name] += g

    full = {k: grad[k] / n + 2.0 * lam * params[k] for k in params}
    gradient = spec.flatten(full)
    ham_names = [spec.branch_names(k) for k in range(N)]
    ham = [np.concatenate([(dyn[k][m] / n + 2.0 * lam * params[m]).ravel() for m in names]) if names else np.zeros(0)
           for k, names in enumerate(ham_names)]
    branch = {m for names in ham_names for m in names}
    shared = [m for m in params if m not in branch]
    shared_norm = float(np.sqrt(sum(np.sum(np.square(full[m])) for m in shared)))
    block_norms = [float(np.sqrt(sum(np.sum(np.square(params[m])) for m in names))) for names in ham_names]

    result = Costates(p=p, states=xs, hamiltonian_gradients=ham, hamiltonian_weights=ham_names, gradient=gradient,
                      shared_weights=shared, shared_gradient_norm=shared_norm, block_norms=block_norms)
    if lam_g is not None and N > 0:
        pl = _multiplier_layers(problem, lam_g)
        p0 = _step(spec, 0, P, xs[0], pl[0], direct[0])[0]
        result.multiplier_costates = [p0] + pl
        result.multiplier_disagreement = [
            float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(float).tiny)) for a, b in zip(pl, p[1:])
        ]
    return result


# --------------------------------------------------------------------------- run directories
def costates_of_run(run: Any) -> Costates:
    """Costates of a run directory (path or :class:`~ocp_resnet.runs.Run`): with the stored
    multipliers of a multiple-shooting solve, by the recursion alone otherwise (single shooting,
    torch MLP runs)."""
    from ocp_resnet.analysis.blocks import run_problem
    from ocp_resnet.runs import Run

    if isinstance(run, (str, os.PathLike)):
        run = Run(run)
    problem, weights = run_problem(run)
    mult = run.multipliers()
    if mult is not None and (mult["method"] != "multiple-shooting" or mult["lam_g"].size == 0):
        mult = None
    return costates(problem, weights, mult)


def check_costates_target(directory: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace existing costate files unless ``overwrite``; call before computing."""
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ValidationError(f"{d} is not a directory: give a directory for the costate files")
    clash = [f for f in COSTATE_FILES if (d / f).exists()]
    if clash and not overwrite:
        raise ValidationError(
            f"{d} already has {', '.join(clash)}: pass overwrite=True to replace them, or another directory=DIR"
        )
    return d


def write_costates(result: Costates, directory: str | os.PathLike, overwrite: bool = False,
                   title: str | None = None) -> list[Path]:
    """Write ``costates.npz`` (p0 … pN), ``costates.json`` and ``costates.png`` into ``directory``.

    The three files are written into a temporary folder first and then moved into place, so a
    failure leaves the directory as it was; existing files are refused unless ``overwrite``.
    """
    from ocp_resnet.files import dump_json
    from ocp_resnet.plotting import plot_costates

    d = check_costates_target(directory, overwrite)
    d.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".costates.tmp-", dir=d))
    try:
        # numpy's stub lets a ** mapping fill savez's allow_pickle (bool) too, so any str-keyed dict fails it
        np.savez(tmp / "costates.npz", **result.arrays())  # type: ignore[arg-type]
        dump_json(tmp / "costates.json", result.to_dict())
        plot_costates(result, tmp / "costates.png", title=title)
        paths = []
        for f in COSTATE_FILES:
            os.replace(tmp / f, d / f)
            paths.append(d / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def tail_cost(problem: Problem, w: np.ndarray | Mapping[str, Any], k: int, x_k: np.ndarray) -> np.ndarray:
    """Σ_{j=k}^{N} γ_j ℓ(ŷ_j^i) per sample (1, n) when the layer-k states are ``x_k`` (numpy).

    The function whose gradient in x_k is p_k: the tests difference it.
    """
    spec, obj = problem.spec, problem.objective
    params = problem.params(w)
    xs: list[Any] = [np.zeros((d, x_k.shape[1])) for d in spec.widths[:k]] + [np.asarray(x_k, dtype=float)]
    for j in range(k, spec.n_blocks):
        xs.append(arch.block(spec, j, params, xs[-1], NUMPY))
    losses = objective_mod.stage_losses_per_sample(spec, obj, params, xs, problem.T, NUMPY)
    gammas = obj.stage_weights(spec.n_blocks)
    return sum(g * l for g, l in zip(gammas[k:], losses[k:]))
