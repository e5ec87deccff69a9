"""One architecture spec for both back-ends: stem E, blocks (branch F_k, skip S_k), head H.

The network (docs/theory.md), with states as columns::

    x_0     = E(u)                               pad: zero-pad u to the width; linear: W u + b
    x_{k+1} = S_k(x_k) + F_k(x_k)                S_k = identity, or a linear map when the width changes
    F_k(x)  = h σ(W x + b)                       branch "single" (an explicit Euler step)
    F_k(x)  = W2 σ(W1 x + b1) + b2               branch "basic"
    ŷ       = H(x_N) = W_H x_N + b_H

Every formula takes an ``ops`` back-end (:class:`ocp_resnet.model._ops.ArrayOps`), so every
back-end (numpy, the NLP's symbolic one, torch) evaluates the very same code; this module
names none of them. Parameters live in an ordered ``dict`` with stable names
(``stem.W``, ``block3.W1``, ``block3.S``, ``head.b`` ...), flattened row-major.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int, check_mapping
from ocp_resnet.model._ops import NUMPY, ArrayOps

#: ``none``: a projection-only block, F_k ≡ 0 with no parameters (what pruning leaves of a
#: vanished block whose skip is a projection).
BRANCHES = ("single", "basic", "none")
STEMS = ("pad", "linear")
#: Activations IPOPT can use (twice differentiable); ``relu`` is for the torch back-end only.
SMOOTH_ACTIVATIONS = ("tanh", "softplus", "smooth_relu")
ACTIVATIONS = SMOOTH_ACTIVATIONS + ("relu",)
#: Smoothing width of the smooth ReLU ½(z + sqrt(z² + β²)) − β/2 (zero at zero).
SMOOTH_RELU_BETA = 0.1


def activation(name: str, z: Any, ops: ArrayOps) -> Any:
    """σ(z) for the activation ``name``."""
    if name == "tanh":
        return ops.tanh(z)
    if name == "softplus":
        return ops.softplus(z)
    if name == "smooth_relu":
        b = SMOOTH_RELU_BETA
        return 0.5 * (z + ops.sqrt(z * z + b * b)) - 0.5 * b
    if name == "relu":
        return ops.relu(z)
    raise ValidationError(f"unknown activation {name!r}: use one of {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True)
class BlockSpec:
    """One residual block: output width, branch type and hidden width (``basic`` only)."""

    width: int
    branch: str = "single"
    hidden: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_int("block width", self.width, 1))
        check_choice("branch", self.branch, BRANCHES)
        if self.hidden is not None:
            object.__setattr__(self, "hidden", check_int("hidden width", self.hidden, 1))

    @property
    def hidden_width(self) -> int:
        """Width of the hidden layer of a ``basic`` branch (the block width unless set)."""
        return self.width if self.hidden is None else self.hidden


@dataclass(frozen=True)
class ArchSpec:
    """Validated architecture: input dim, stem, state width x_0, blocks, head outputs.

    Build the common case with :meth:`uniform`.
    """

    input_dim: int
    n_outputs: int
    stem_width: int
    blocks: tuple[BlockSpec, ...] = ()
    stem: str = "pad"
    activation: str = "tanh"
    step: float = 1.0

    def __post_init__(self) -> None:
        # stored as plain int/float, so numpy scalars or 2.0 never leak into shapes or JSON
        object.__setattr__(self, "input_dim", check_int("input_dim", self.input_dim, 1))
        object.__setattr__(self, "n_outputs", check_int("n_outputs", self.n_outputs, 1))
        object.__setattr__(self, "stem_width", check_int("width", self.stem_width, 1))
        check_choice("stem", self.stem, STEMS)
        check_choice("activation", self.activation, ACTIVATIONS)
        object.__setattr__(self, "step", check_float("step", self.step, 0.0, strict=True))
        if isinstance(self.blocks, (str, bytes)) or not hasattr(self.blocks, "__iter__"):
            raise ValidationError(f"blocks must be a sequence of BlockSpec or dicts, got {type(self.blocks).__name__}")
        blocks = tuple(
            b if isinstance(b, BlockSpec) else BlockSpec(**check_mapping("block", b, [f.name for f in fields(BlockSpec)]))
            for b in self.blocks
        )
        object.__setattr__(self, "blocks", blocks)
        if self.stem == "pad" and self.stem_width < self.input_dim:
            raise ValidationError(
                f"width {self.stem_width} is smaller than the input dimension {self.input_dim}: "
                f"use width >= {self.input_dim} or stem='linear'"
            )

    # ----------------------------------------------------------------- construction
    @classmethod
    def uniform(
        cls,
        input_dim: int,
        n_outputs: int,
        n_blocks: int,
        width: int | Sequence[int],
        branch: str = "single",
        hidden: int | None = None,
        stem: str = "pad",
        activation: str = "tanh",
        step: float = 1.0,
    ) -> ArchSpec:
        """``width`` is one int, or a list of N+1 widths of x_0..x_N (projections where it changes)."""
        n_blocks = check_int("blocks", n_blocks, 0)
        BlockSpec(1, branch, hidden)  # checks branch and hidden even when there are no blocks
        if isinstance(width, (list, tuple)):
            widths = [check_int("width", w, 1) for w in width]
            if len(widths) == 1:
                widths = widths * (n_blocks + 1)
            if len(widths) != n_blocks + 1:
                raise ValidationError(
                    f"a width list needs N+1 = {n_blocks + 1} entries (x_0..x_N), got {len(widths)}"
                )
        else:
            widths = [check_int("width", width, 1)] * (n_blocks + 1)
        blocks = tuple(BlockSpec(w, branch, hidden) for w in widths[1:])
        return cls(input_dim, n_outputs, widths[0], blocks, stem, activation, step)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON-able data (``config.json``'s ``architecture``)."""
        d = asdict(self)
        d["blocks"] = [asdict(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArchSpec:
        """The spec of :meth:`to_dict`'s data (checked; unknown keys are refused)."""
        d = check_mapping("architecture", d, [f.name for f in fields(cls)])
        d.setdefault("blocks", ())  # entries are checked in __post_init__
        return cls(**d)

    # ----------------------------------------------------------------- shapes
    def describe(self) -> str:
        """The arguments of :meth:`uniform` that shape the weights, e.g. ``blocks=10, width=2, branch='single'``."""
        ws = self.widths
        width = str(ws[0]) if len(set(ws)) == 1 else "[" + ", ".join(map(str, ws)) + "]"
        branches = sorted({b.branch for b in self.blocks}) or ["single"]
        return f"blocks={self.n_blocks}, width={width}, branch={branches[0]!r}"

    @property
    def n_blocks(self) -> int:
        """N, the number of residual blocks (time steps)."""
        return len(self.blocks)

    @property
    def widths(self) -> list[int]:
        """Widths of x_0 .. x_N."""
        return [self.stem_width] + [b.width for b in self.blocks]

    def has_projection(self, k: int) -> bool:
        """Block k changes the width, so its skip S_k is a learned linear map."""
        # (without building :attr:`widths`: the numpy forward pass asks this per block and pass)
        before = self.blocks[k - 1].width if k > 0 else self.stem_width
        return self.blocks[k].width != before

    def branch_names(self, k: int) -> list[str]:
        """Names of the residual-branch parameters of block k (the ones that may vanish)."""
        if self.blocks[k].branch == "single":
            return [f"block{k}.W", f"block{k}.b"]
        if self.blocks[k].branch == "none":
            return []
        return [f"block{k}.W1", f"block{k}.b1", f"block{k}.W2", f"block{k}.b2"]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Ordered parameter names and shapes (this order is the flat vector's order)."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.stem == "linear":
            shapes["stem.W"] = (self.stem_width, self.input_dim)
            shapes["stem.b"] = (self.stem_width,)
        w = self.widths
        for k, blk in enumerate(self.blocks):
            din, dout = w[k], w[k + 1]
            if blk.branch == "single":
                shapes[f"block{k}.W"] = (dout, din)
                shapes[f"block{k}.b"] = (dout,)
            elif blk.branch == "basic":
                hid = blk.hidden_width
                shapes[f"block{k}.W1"] = (hid, din)
                shapes[f"block{k}.b1"] = (hid,)
                shapes[f"block{k}.W2"] = (dout, hid)
                shapes[f"block{k}.b2"] = (dout,)
            if din != dout:
                shapes[f"block{k}.S"] = (dout, din)
        shapes["head.W"] = (self.n_outputs, w[-1])
        shapes["head.b"] = (self.n_outputs,)
        return shapes

    @property
    def n_params(self) -> int:
        """Number of scalar weights (the length of the flat vector)."""
        return self._layout[-1][2] if self._layout else 0

    # ----------------------------------------------------------------- parameters
    def flatten(self, params: Mapping[str, Any]) -> np.ndarray:
        """Concatenate named numeric parameters (row-major) into one float64 vector."""
        shapes = self.param_shapes()
        missing = [k for k in shapes if k not in params]
        if missing:
            raise ValidationError(
                f"weights are missing {', '.join(missing[:5])}: they do not match this architecture "
                f"({self.describe()}); check these arguments against the weights file"
            )
        out = []
        for name, shape in shapes.items():
            a = np.asarray(params[name], dtype=float)
            if a.shape != shape:
                raise ValidationError(
                    f"weight {name} has shape {a.shape}, the spec needs {shape}: the weights "
                    "do not match this architecture"
                )
            out.append(a.ravel())
        return np.concatenate(out) if out else np.zeros(0)

    @functools.cached_property
    def _layout(self) -> tuple[tuple[str, int, int, tuple[int, ...]], ...]:
        """(name, start, stop, shape) of each parameter in the flat vector (the spec is frozen, so
        this is computed once: the Newton path unflattens at every trial point)."""
        out, off = [], 0
        for name, shape in self.param_shapes().items():
            size = math.prod(shape)
            out.append((name, off, off + size, shape))
            off += size
        return tuple(out)

    def unflatten(self, w: Any, ops: ArrayOps = NUMPY) -> dict[str, Any]:
        """Split a flat vector of the back-end ``ops`` into named parameters (one row-major order)."""
        return {name: ops.block(w[a:b], shape) for name, a, b, shape in self._layout}

    def init_params(self, method: str = "random", seed: int = 0, scale: float = 0.1) -> dict[str, np.ndarray]:
        """Initial weights: ``random`` (seeded) or ``zeros``.

        Random: residual-branch weights N(0, scale²) (small, so the net starts near the
        identity), stem/projection/head weights N(0, 1/fan_in), biases zero.
        """
        check_choice("init", method, ("random", "zeros"))
        rng = np.random.default_rng(seed)
        params = {}
        for name, shape in self.param_shapes().items():
            if method == "zeros" or len(shape) == 1:
                params[name] = np.zeros(shape)
            elif name.startswith("block") and not name.endswith(".S"):
                params[name] = scale * rng.standard_normal(shape)
            else:
                params[name] = rng.standard_normal(shape) / math.sqrt(shape[1])
        return params


# --------------------------------------------------------------------------- forward pieces
def stem(spec: ArchSpec, p: Mapping[str, Any], u: Any, ops: ArrayOps) -> Any:
    """x_0 = E(u)."""
    if spec.stem == "linear":
        return ops.affine(p["stem.W"], u, p["stem.b"])
    return ops.pad_rows(u, spec.stem_width)


def branch(spec: ArchSpec, k: int, p: Mapping[str, Any], x: Any, ops: ArrayOps) -> Any:
    """Residual branch F_k(x)."""
    blk = spec.blocks[k]
    if blk.branch == "none":  # F_k ≡ 0: a (d_{k+1}, n) zero array of the back-end's type
        return ops.zero_rows(x, spec.widths[k + 1])
    if blk.branch == "single":
        return spec.step * activation(spec.activation, ops.affine(p[f"block{k}.W"], x, p[f"block{k}.b"]), ops)
    hid = activation(spec.activation, ops.affine(p[f"block{k}.W1"], x, p[f"block{k}.b1"]), ops)
    return ops.affine(p[f"block{k}.W2"], hid, p[f"block{k}.b2"])


def skip(spec: ArchSpec, k: int, p: Mapping[str, Any], x: Any, ops: ArrayOps) -> Any:
    """Skip S_k(x): identity, or the projection where the width changes."""
    if spec.has_projection(k):
        return ops.matmul(p[f"block{k}.S"], x)
    return x


def block(spec: ArchSpec, k: int, p: Mapping[str, Any], x: Any, ops: ArrayOps) -> Any:
    """x_{k+1} = S_k(x_k) + F_k(x_k)."""
    return skip(spec, k, p, x, ops) + branch(spec, k, p, x, ops)


def head(spec: ArchSpec, p: Mapping[str, Any], x: Any, ops: ArrayOps) -> Any:
    """ŷ = H(x)."""
    return ops.affine(p["head.W"], x, p["head.b"])


def trajectory(spec: ArchSpec, p: Mapping[str, Any], u: Any, ops: ArrayOps) -> list[Any]:
    """States x_0 .. x_N for inputs ``u`` (columns are samples)."""
    xs = [stem(spec, p, u, ops)]
    for k in range(spec.n_blocks):
        xs.append(block(spec, k, p, xs[-1], ops))
    return xs


def stage_outputs(spec: ArchSpec, p: Mapping[str, Any], xs: Sequence[Any], ops: ArrayOps,
                  only: int | None = None) -> list[Any]:
    """ŷ_k = H(S_{N-1}(… S_k(x_k))) for k = 0..N: x_k sent through every later skip and the head
    (``only``: ŷ_only alone, the others None — a symbolic stage cost needs one).

    Identity skips drop out, so ŷ_k is the output of the same network with every residual
    branch from block k on switched off. Walking backwards, the chain S_{N-1}∘…∘S_k is applied once per stage by accumulating the
    projection matrices, so identity stretches cost nothing and each projection is used once.
    """
    N = spec.n_blocks
    # M_k = S_{N-1} ⋯ S_k as a matrix, or None while it is the identity.
    M = None
    outs: list[Any] = [None] * (N + 1)
    if only is None or only == N:
        outs[N] = head(spec, p, xs[N], ops)
    for k in range(N - 1, -1 if only is None else only - 1, -1):
        if spec.has_projection(k):
            S = p[f"block{k}.S"]
            M = S if M is None else ops.matmul(M, S)
        if only is None or k == only:
            z = xs[k] if M is None else ops.matmul(M, xs[k])
            outs[k] = head(spec, p, z, ops)
    return outs
