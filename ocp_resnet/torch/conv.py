"""A convolutional ResNet-v2 (pre-activation) with the stage-cost outputs of docs/theory.md.

Structure (He et al., "Identity Mappings in Deep Residual Networks")::

    x_0     = E(u)                          3x3 conv stem
    x_{k+1} = S_k(x_k) + F_k(x_k)           F_k(x) = conv3x3(σ(norm(conv3x3_s(σ(norm(x))))))
    S_k     = identity, or a 1x1 convolution with stride s (first block of a stage that
              changes the width or the resolution); applied to x_k itself, so S_k is linear
    H(x)    = linear(global_avg_pool(σ(norm(x))))

Blocks are numbered k = 0..N-1 across stages, as in the MLP, and parameters carry names like
``block3.conv1.weight`` and ``block3.S.weight``.

Intermediate outputs ŷ_k = H(S_{N-1}(… S_k(x_k))) are computed in the same forward pass:
walking back from the last block, the chain of skips is accumulated as *one* 1x1 convolution
(a 1x1 conv with stride s is "subsample by s, then mix channels", so S_j ∘ S_k is the 1x1 conv
with matrix M_j M_k and stride s_j s_k). Identity stretches cost nothing, each projection
matrix is multiplied in once, and every stage costs one cheap 1x1 conv at the final
resolution plus the head. Stages with γ_k = 0 are skipped entirely.

Batch norm in the head: in training mode the ŷ_k of truncated stages are normalised with their
own batch statistics but do not update the running statistics (those follow the full
network's final features); in eval mode every stage uses the running statistics, so ŷ_k is
exactly the eval-mode output of the network with branches k.. switched off.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ocp_resnet.errors import ValidationError, check_choice, check_int
from ocp_resnet.model import architecture as arch
from ocp_resnet.model import objective as objective_mod
from ocp_resnet.model._ops import TORCH
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.torch.loss import stacked_stage_cost

NORMS = ("batch", "group", "none")


@dataclass(frozen=True)
class ConvSpec:
    """Conv ResNet-v2 spec: image shape, stage widths and blocks per stage, activation, norm.

    Stage 0 keeps the resolution; every later stage halves it (stride 2) in its first block.
    ``branchless`` lists blocks k without a residual branch (F_k ≡ 0, x_{k+1} = S_k(x_k)): what
    pruning leaves of a vanished projection block (a vanished identity block is dropped instead).
    """

    in_channels: int
    image_size: tuple[int, int]
    n_outputs: int
    channels: tuple[int, ...] = (16, 32, 64)
    stage_blocks: tuple[int, ...] = (1, 1, 1)
    activation: str = "relu"
    norm: str = "batch"
    kind: str = "conv"
    branchless: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_int("in_channels", self.in_channels, 1)
        check_int("n_outputs", self.n_outputs, 1)
        size = tuple(int(check_int("image size", s, 1)) for s in self.image_size)
        if len(size) != 2:
            raise ValidationError(f"image_size must be (height, width), got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)
        ch = tuple(check_int("channels", c, 1) for c in self.channels)
        nb = tuple(check_int("stage blocks", b, 0) for b in self.stage_blocks)
        if not ch:
            raise ValidationError("a conv net needs at least one stage: give channels, e.g. channels=[8, 16, 32]")
        if len(nb) != len(ch):
            raise ValidationError(
                f"stage_blocks needs one count per stage ({len(ch)} from channels), got {len(nb)}"
            )
        object.__setattr__(self, "channels", ch)
        object.__setattr__(self, "stage_blocks", nb)
        check_choice("activation", self.activation, arch.ACTIVATIONS)
        check_choice("norm", self.norm, NORMS)
        if self.kind != "conv":
            raise ValidationError(f"ConvSpec kind must be 'conv', got {self.kind!r}")
        # a stage after the first needs a block to change the width/resolution
        for s in range(1, len(ch)):
            if nb[s] == 0 and ch[s] != ch[s - 1]:
                raise ValidationError(
                    f"stage {s} changes the width {ch[s - 1]} -> {ch[s]} but has 0 blocks: give it >= 1 block"
                )
        bl = tuple(sorted({int(check_int("branchless block", k, 0)) for k in self.branchless}))
        if bl and bl[-1] >= sum(nb):
            raise ValidationError(f"branchless block {bl[-1]} does not exist: the net has blocks 0..{sum(nb) - 1}")
        object.__setattr__(self, "branchless", bl)

    @property
    def blocks(self) -> list[tuple[int, int, int]]:
        """(in channels, out channels, stride) of blocks k = 0..N-1."""
        out, c_in = [], self.channels[0]
        for s, (c, n) in enumerate(zip(self.channels, self.stage_blocks)):
            for j in range(n):
                stride = 2 if (s > 0 and j == 0) else 1
                out.append((c_in, c, stride))
                c_in = c
        return out

    @property
    def n_blocks(self) -> int:
        """Number of residual blocks N."""
        return len(self.blocks)

    def has_projection(self, k: int) -> bool:
        """Whether block k's skip is a 1x1 strided projection (channels or resolution change)."""
        c_in, c_out, stride = self.blocks[k]
        return c_in != c_out or stride != 1

    def has_branch(self, k: int) -> bool:
        """Whether block k has a residual branch F_k (False for a pruned projection block)."""
        return k not in self.branchless

    def to_dict(self) -> dict:
        """The spec as JSON-ready lists (a run's ``config.json`` ``architecture``)."""
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["channels"] = list(self.channels)
        d["stage_blocks"] = list(self.stage_blocks)
        d["branchless"] = list(self.branchless)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConvSpec:
        """The spec of :meth:`to_dict`'s output."""
        d = dict(d)
        try:
            return cls(**{**d, "image_size": tuple(d["image_size"]), "channels": tuple(d["channels"]),
                          "stage_blocks": tuple(d["stage_blocks"]), "branchless": tuple(d.get("branchless", ()))})
        except (KeyError, TypeError) as exc:
            raise ValidationError(f"not a conv architecture ({exc}); the run's config.json is not from "
                                  "a conv net (ConvNet)") from None


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(math.gcd(c, 8), c)
    return nn.Identity()


class PreActBlock(nn.Module):
    """Pre-activation basic block: branch F(x) = conv2(σ(norm2(conv1(σ(norm1(x)))))), skip S.

    ``has_branch=False``: no branch modules at all, the block is x ↦ S(x) (a pruned block).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, activation: str,
                 has_branch: bool = True) -> None:
        super().__init__()
        self.activation = activation
        self.has_branch = has_branch
        if has_branch:
            self.norm1 = _norm(norm, c_in)
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.norm2 = _norm(norm, c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.S = nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False) if (c_in != c_out or stride != 1) else None
        self.stride = stride

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch F(x) (zeros for a pruned block)."""
        if not self.has_branch:
            return torch.zeros_like(self.skip(x))
        h = self.conv1(arch.activation(self.activation, self.norm1(x), TORCH))
        return self.conv2(arch.activation(self.activation, self.norm2(h), TORCH))

    def skip(self, x: torch.Tensor) -> torch.Tensor:
        """The skip path: x, or its 1x1 strided projection S x."""
        return x if self.S is None else self.S(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """skip(x) + F(x)."""
        if not self.has_branch:
            return self.skip(x)
        return self.skip(x) + self.branch(x)


class ConvHead(nn.Module):
    """H(x) = linear(global_avg_pool(σ(norm(x))))."""

    def __init__(self, c: int, n_outputs: int, norm: str, activation: str) -> None:
        super().__init__()
        self.activation = activation
        self.norm = _norm(norm, c)
        self.linear = nn.Linear(c, n_outputs)

    def forward(self, x: torch.Tensor, track_stats: bool = True) -> torch.Tensor:
        """Logits (n, outputs). ``track_stats=False``: batch norm without updating running stats."""
        if isinstance(self.norm, nn.BatchNorm2d) and not track_stats and self.training:
            z = F.batch_norm(x, None, None, self.norm.weight, self.norm.bias, True, 0.0, self.norm.eps)
        else:
            z = self.norm(x)
        z = arch.activation(self.activation, z, TORCH)
        return self.linear(z.mean(dim=(2, 3)))


class ResNetV2(nn.Module):
    """Conv ResNet-v2 built from a :class:`ConvSpec`; inputs (n, C, H, W)."""

    def __init__(self, spec: ConvSpec, seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        if not isinstance(spec, ConvSpec):
            raise ValidationError(f"ResNetV2 needs a ConvSpec, got {type(spec).__name__}")
        self.spec = spec
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = nn.Conv2d(spec.in_channels, spec.channels[0], 3, 1, 1, bias=False)
            self.blocks = nn.ModuleList(
                PreActBlock(ci, co, s, spec.norm, spec.activation, spec.has_branch(k))
                for k, (ci, co, s) in enumerate(spec.blocks)
            )
            self.head = ConvHead(spec.channels[-1], spec.n_outputs, spec.norm, spec.activation)
        # ``block{k}.…`` names for solution.npz (ModuleList gives ``blocks.{k}.…``)
        self.to(dtype=dtype, device=device)

    @classmethod
    def from_spec(cls, spec: ConvSpec, **kw: Any) -> ResNetV2:
        """Same as the constructor (as :meth:`ResNetMLP.from_spec <ocp_resnet.torch.ResNetMLP.from_spec>`)."""
        return cls(spec, **kw)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """The device of the parameters."""
        return next(self.parameters()).device

    # ---------------------------------------------------------------- names ↔ weights
    @staticmethod
    def _public(name: str) -> str:
        return "block" + name[len("blocks."):] if name.startswith("blocks.") else name

    @staticmethod
    def _private(name: str) -> str:
        return "blocks." + name[len("block"):] if name.startswith("block") and not name.startswith("blocks.") else name

    def weights(self) -> dict[str, np.ndarray]:
        """All parameters and buffers (batch-norm statistics) as float64 numpy, by public name
        (``block3.conv1.weight``, ``block3.S.weight``, ``head.linear.weight`` …)."""
        return {self._public(k): v.detach().to("cpu", torch.float64).numpy().copy()
                for k, v in self.state_dict().items() if v.is_floating_point()}

    def load_weights(self, weights: Mapping[str, Any]) -> ResNetV2:
        """Load what :meth:`weights` returned (checked by name and shape)."""
        sd = self.state_dict()
        wanted = {self._public(k) for k, v in sd.items() if v.is_floating_point()}
        missing = sorted(wanted - set(weights))
        if missing:
            raise ValidationError(f"weights are missing {', '.join(missing[:5])}: they do not match this conv spec")
        with torch.no_grad():
            for name in wanted:
                tgt = sd[self._private(name)]
                a = np.asarray(weights[name])
                if tuple(a.shape) != tuple(tgt.shape):
                    raise ValidationError(f"weight {name} has shape {a.shape}, the spec needs {tuple(tgt.shape)}")
                tgt.copy_(torch.as_tensor(a, dtype=tgt.dtype))
        return self

    def block(self, k: int) -> PreActBlock:
        """Block k (``blocks[k]``, typed: a ``ModuleList`` hands out plain modules)."""
        blk = self.blocks[k]
        if not isinstance(blk, PreActBlock):
            raise TypeError(f"blocks[{k}] is a {type(blk).__name__}, not a PreActBlock")
        return blk

    def branch_parameters(self, k: int) -> list[torch.Tensor]:
        """Parameters of residual branch F_k (the ones that may vanish)."""
        b = self.block(k)
        if not b.has_branch:
            return []
        return [p for m in (b.norm1, b.conv1, b.norm2, b.conv2) for p in m.parameters()]

    # ---------------------------------------------------------------- forward
    def _check(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        if x.ndim != 4 or x.shape[1] != s.in_channels:
            raise ValidationError(
                f"images must have shape (n, {s.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return x.to(self.dtype)

    def trajectory(self, x: torch.Tensor) -> list[torch.Tensor]:
        """States x_0..x_N (n, C_k, H_k, W_k)."""
        xs = [self.stem(self._check(x))]
        for blk in self.blocks:
            xs.append(blk(xs[-1]))
        return xs

    def _stage_logits(self, xs: Sequence[torch.Tensor], ks: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
        """Logits of the truncated stages ``ks`` (all < N), stacked (outputs, K, n), and the
        stage of each slice (the order of the backward walk).

        One pass backwards accumulates S_{N-1}∘…∘S_k as one strided 1x1 convolution (subsample
        by the product of the strides, then the product of the channel matrices). Stages that
        share the chain (a stretch between projections) are stacked and projected together,
        and all stages go through the head as one batch (batch norm statistics per stage).
        """
        N = self.spec.n_blocks
        want = set(ks)
        groups: list[tuple[torch.Tensor | None, int, list[int]]] = []  # (M or None, stride, stages) per stretch
        M: torch.Tensor | None = None
        stride = 1
        cur: list[int] = []
        for k in range(N - 1, -1, -1):
            blk = self.block(k)
            if blk.S is not None:
                if cur:
                    groups.append((M, stride, cur))
                S = blk.S.weight[:, :, 0, 0]
                M = S if M is None else M @ S
                stride *= blk.stride
                cur = []
            if k in want:
                cur.append(k)
        if cur:
            groups.append((M, stride, cur))
        # Stages become channel blocks of one (n, K·C, h, w) tensor: a stretch's stages share
        # one grouped 1x1 conv, and per-channel batch/group norm then keeps statistics per stage.
        zs, order = [], []
        for M, s, ks_g in groups:
            G = len(ks_g)
            parts = [xs[k][:, :, ::s, ::s] if s > 1 else xs[k] for k in ks_g]  # subsample before stacking
            X = torch.cat(parts, dim=1) if G > 1 else parts[0]
            if M is not None:
                W = (M.repeat(G, 1) if G > 1 else M)[:, :, None, None]
                X = F.conv2d(X, W, groups=G)
            zs.append(X)
            order.extend(ks_g)
        Z = torch.cat(zs, dim=1) if len(zs) > 1 else zs[0]
        K = len(order)
        norm = self.head.norm

        def rep(v: Any) -> Any:
            return None if v is None else v.repeat(K)

        if isinstance(norm, nn.BatchNorm2d):
            # training: each stage its own batch statistics, running statistics untouched
            use_batch = self.training or norm.running_mean is None
            mean, var = (None, None) if use_batch else (rep(norm.running_mean), rep(norm.running_var))
            Z = F.batch_norm(Z, mean, var, rep(norm.weight), rep(norm.bias), use_batch, 0.0, norm.eps)
        elif isinstance(norm, nn.GroupNorm):
            Z = F.group_norm(Z, norm.num_groups * K, rep(norm.weight), rep(norm.bias), norm.eps)
        Z = arch.activation(self.head.activation, Z, TORCH)
        n = Z.shape[0]
        pooled = Z.mean(dim=(2, 3)).view(n, K, -1)
        return self.head.linear(pooled).permute(2, 1, 0), order  # (outputs, K, n), stages in `order`

    def stage_outputs_from(self, xs: Sequence[torch.Tensor], need: Sequence[bool] | None = None) -> list[Any]:
        """ŷ_k (outputs, n) for k = 0..N from the states x_0..x_N (None where ``need[k]`` is false)."""
        N = self.spec.n_blocks
        need = [True] * (N + 1) if need is None else list(need)
        outs: list[Any] = [None] * (N + 1)
        outs[N] = self.head(xs[N]).T
        ks = [k for k in range(N) if need[k]]
        if ks:
            logits, order = self._stage_logits(xs, ks)
            for i, k in enumerate(order):
                outs[k] = logits[:, i]
        return outs

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """ŷ_0..ŷ_N, each (outputs, n)."""
        return self.stage_outputs_from(self.trajectory(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Final logits (n, outputs)."""
        return self.head(self.trajectory(x)[-1])

    def cost(self, x: torch.Tensor, t: torch.Tensor, objective: ObjectiveSpec,
             all_stages: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample Σ_k γ_k ℓ(ŷ_k) (1, n) and final logits (outputs, n), in one forward pass.

        The stage losses are evaluated on all stacked stage logits at once (``objective.loss``
        on (outputs, K·n) columns), then weighted by γ_k; stages with γ_k = 0 are not built.
        """
        N = self.spec.n_blocks
        gammas = objective.stage_weights(N)
        xs = self.trajectory(x)
        final = self.head(xs[N]).T
        n_classes = self.spec.n_outputs if objective.loss != "bce" else 2
        const = objective.target_entropy(n_classes)
        ks = [k for k in range(N) if gammas[k] != 0.0]
        Z, order = self._stage_logits(xs, ks) if ks else (None, [])  # (outputs, K, n)
        cost = stacked_stage_cost(objective, final, Z, [gammas[k] for k in order], t, const)
        return cost, final

    def regularization(self, objective: ObjectiveSpec) -> torch.Tensor:
        """λ Σ ||w||² over all trainable parameters."""
        flat = torch.cat([p.reshape(-1) for p in self.parameters()])
        return objective_mod.regularization(objective, flat, TORCH)


def images_of(data: Any) -> np.ndarray:
    """Images (n, C, H, W) of a :class:`~ocp_resnet.data.datasets.Dataset` (``meta['images']``)."""
    imgs = getattr(data, "meta", {}).get("images")
    if imgs is None:
        raise ValidationError(
            f"a conv net needs image data, and {data.name!r} has none: use dataset='digits', an .npz whose X "
            "has shape (n, H, W) or (n, C, H, W), or an MNIST IDX directory (or an MLP)"
        )
    imgs = np.asarray(imgs, dtype=float)
    if imgs.ndim == 3:
        imgs = imgs[:, None]
    if imgs.ndim != 4:
        raise ValidationError(f"images must have shape (n, H, W) or (n, C, H, W), got {imgs.shape}")
    return imgs
