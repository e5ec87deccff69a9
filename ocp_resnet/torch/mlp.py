"""The MLP ResNet as a torch ``nn.Module``: the exact twin of the CasADi model.

Every formula (stem, branches, skips, head, intermediate outputs ŷ_k, losses) is the one in
:mod:`ocp_resnet.model.architecture` / :mod:`ocp_resnet.model.objective`, evaluated with the torch back-end
:data:`ocp_resnet.model._ops.TORCH`. Parameters carry the spec's names: ``state_dict`` keys are
exactly the names in ``solution.npz`` (``stem.W``, ``block3.W1``, ``block3.S``, ``head.b`` …),
because each ``stem``/``block{k}``/``head`` is a sub-module holding its parameters.

Layout: the public methods take inputs as rows ``(n, p)`` (torch's convention) and hand
them to the formulas as columns ``(p, n)`` (the spec's convention).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ocp_resnet.errors import ValidationError
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import TORCH
from ocp_resnet.model.architecture import ArchSpec
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.torch.loss import stacked_stage_cost


class ResNetMLP(nn.Module):
    """MLP ResNet built from an :class:`~ocp_resnet.model.architecture.ArchSpec`.

    Parameters
    ----------
    spec:
        The architecture (the same object the CasADi transcriptions use).
    init:
        ``"random"`` / ``"zeros"`` (``spec.init_params``, so torch and IPOPT start from the
        same seeded weights) or a mapping name → array.
    seed, dtype, device:
        Seed of ``"random"``; torch dtype and device of the parameters.
    """

    def __init__(
        self,
        spec: ArchSpec,
        init: str | Mapping[str, Any] = "random",
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(spec, ArchSpec):
            raise ValidationError(f"ResNetMLP needs an ArchSpec, got {type(spec).__name__}")
        self.spec = spec
        values = spec.init_params(init, seed) if isinstance(init, str) else spec.unflatten(spec.flatten(init))
        groups: dict[str, dict[str, nn.Parameter]] = {}
        for name in spec.param_shapes():
            mod, leaf = name.split(".", 1)
            t = torch.as_tensor(np.asarray(values[name], dtype=np.float64), dtype=dtype, device=device)
            groups.setdefault(mod, {})[leaf] = nn.Parameter(t.clone())
        for mod, ps in groups.items():
            holder = nn.Module()  # keeps the spec's order (ParameterDict would sort the keys)
            for leaf, param in ps.items():
                holder.register_parameter(leaf, param)
            self.add_module(mod, holder)

    # ------------------------------------------------------------------ construction / weights
    @classmethod
    def from_spec(cls, spec: ArchSpec, **kw: Any) -> ResNetMLP:
        """Same as the constructor (keyword options as there)."""
        return cls(spec, **kw)

    def params(self) -> dict[str, torch.Tensor]:
        """Parameters by the spec's names, in the spec's (flat-vector) order."""
        return {name: self.get_parameter(name) for name in self.spec.param_shapes()}

    def flat_params(self) -> torch.Tensor:
        """All parameters as one vector in the spec's row-major flat order."""
        ps = [p.reshape(-1) for p in self.params().values()]
        if not ps:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return torch.cat(ps)

    def load_weights(self, weights: Mapping[str, Any]) -> ResNetMLP:
        """Copy named numpy weights (e.g. a ``solution.npz``) into the module; checked by name and shape."""
        values = self.spec.unflatten(self.spec.flatten(weights))
        with torch.no_grad():
            for name, p in self.params().items():
                p.copy_(torch.as_tensor(values[name], dtype=p.dtype, device=p.device))
        return self

    def weights(self) -> dict[str, np.ndarray]:
        """Named float64 numpy weights: what ``solution.npz`` stores, identical across back-ends."""
        return {name: p.detach().to("cpu", torch.float64).numpy().copy() for name, p in self.params().items()}

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters (float64 without any)."""
        p = next(self.parameters(), None)
        return torch.float64 if p is None else p.dtype

    @property
    def device(self) -> torch.device:
        """The device of the parameters (cpu without any)."""
        p = next(self.parameters(), None)
        return torch.device("cpu") if p is None else p.device

    # ------------------------------------------------------------------ forward
    def _cols(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.spec.input_dim:
            raise ValidationError(
                f"inputs must have shape (n, {self.spec.input_dim}), got {tuple(x.shape)}"
            )
        return x.to(self.dtype).T

    def trajectory(self, x: torch.Tensor) -> list[torch.Tensor]:
        """States x_0..x_N as columns, each ``(d_k, n)``, for inputs ``x`` of shape (n, p)."""
        return arch.trajectory(self.spec, self.params(), self._cols(x), TORCH)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ŷ_0..ŷ_N, each ``(outputs, n)`` (columns are samples)."""
        p = self.params()
        return arch.stage_outputs(self.spec, p, arch.trajectory(self.spec, p, self._cols(x), TORCH), TORCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final logits ŷ_N, shape (n, outputs)."""
        p = self.params()
        xs = arch.trajectory(self.spec, p, self._cols(x), TORCH)
        return arch.head(self.spec, p, xs[-1], TORCH).T

    def cost(
        self, x: torch.Tensor, t: torch.Tensor, objective: ObjectiveSpec, all_stages: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample stage cost Σ_k γ_k ℓ(ŷ_k) as a (1, n) row, and the final logits (outputs, n).

        ``t``: target columns (outputs, n) as from ``ObjectiveSpec.targets``. Stages with γ_k = 0 are not
        built (``all_stages`` builds them anyway); the others are computed stacked, in one pass
        (:meth:`_stacked_stage_logits`), and their losses in one call
        (:func:`~ocp_resnet.torch.loss.stacked_stage_cost`). ``params`` replaces the module's own
        parameters (e.g. views of one flat vector, for second derivatives in the weights).
        """
        p = self.params() if params is None else params
        spec = self.spec
        xs = arch.trajectory(spec, p, self._cols(x), TORCH)
        gammas = objective.stage_weights(spec.n_blocks)
        ks = [k for k in range(spec.n_blocks) if gammas[k] != 0.0 or all_stages]
        final = arch.head(spec, p, xs[-1], TORCH)
        Z = self._stacked_stage_logits(p, xs, ks) if ks else None
        const = objective.target_entropy(spec.n_outputs if objective.loss != "bce" else 2)
        return stacked_stage_cost(objective, final, Z, [gammas[k] for k in ks], t, const), final

    def _stacked_stage_logits(self, p: Mapping[str, Any], xs: list, ks: list[int]) -> torch.Tensor:
        """ŷ_k for the stages ``ks`` (< N), stacked (outputs, K, n).

        docs/theory.md sends x_k through every later skip and the head. Done for all stages at
        once: walking forward, the pending states are stacked side by side and each projection
        skip ``architecture.skip`` is applied once to the stack; identity stretches cost
        nothing; one ``architecture.head`` call at the end. Same values as
        ``architecture.stage_outputs``, with K-fold fewer, larger operations.
        """
        spec, n = self.spec, xs[0].shape[1]
        want, pending = set(ks), []
        for k in range(spec.n_blocks):
            if k in want:
                pending.append(xs[k])
            if pending and spec.has_projection(k):
                Z = torch.cat(pending, dim=1) if len(pending) > 1 else pending[0]
                pending = [arch.skip(spec, k, p, Z, TORCH)]
        Z = torch.cat(pending, dim=1) if len(pending) > 1 else pending[0]
        out = arch.head(spec, p, Z, TORCH)  # (outputs, K·n), stages in increasing k
        return out.view(out.shape[0], len(ks), n)

    def regularization(self, objective: ObjectiveSpec) -> torch.Tensor:
        """λ Σ ||w||² over the flat weights (objective.regularization)."""
        return objective_mod.regularization(objective, self.flat_params(), TORCH)

    def extra_repr(self) -> str:
        """Widths, branches and activation in the module's repr."""
        return f"widths={self.spec.widths}, branch={[b.branch for b in self.spec.blocks]}, act={self.spec.activation}"
