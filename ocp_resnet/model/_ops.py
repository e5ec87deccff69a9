"""Array back-ends for the formulas in :mod:`architecture` and :mod:`objective`.

Every formula of the model is written once, against the small interface below, and evaluated
with numpy (numeric analysis), CasADi SX (the NLP) or torch (SGD training). Layout: features
on rows, samples on columns, so a state batch is ``(d, n)`` and one CasADi sample is ``(d, 1)``.
Biases are 1-D ``(d,)`` arrays (numpy/torch) or ``(d, 1)`` CasADi columns.

:class:`ArrayOps` declares the interface; :data:`NUMPY`, :data:`CASADI` and :data:`TORCH` are
its three implementations. Code outside this module never names a back-end library to
evaluate a formula: it receives an ``ops`` object and calls it.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ArrayOps(Protocol):
    """The array operations the formulas use (features on rows, samples on columns)."""

    name: str

    def affine(self, W: Any, x: Any, b: Any | None) -> Any:
        """W x + b (``b`` None: W x), the bias broadcast over the sample columns."""

    def matmul(self, W: Any, x: Any) -> Any:
        """W x."""

    def pad_rows(self, x: Any, rows: int) -> Any:
        """``x`` with zero rows appended up to ``rows`` rows."""

    def zero_rows(self, x: Any, rows: int) -> Any:
        """A zero array of ``rows`` rows, as many columns as ``x`` and its type."""

    def block(self, chunk: Any, shape: tuple[int, ...]) -> Any:
        """The parameter of ``shape`` stored row-major in the flat ``chunk`` (see ``ArchSpec.unflatten``)."""

    def tanh(self, z: Any) -> Any:
        """Elementwise tanh."""

    def exp(self, z: Any) -> Any:
        """Elementwise exp."""

    def log(self, z: Any) -> Any:
        """Elementwise log."""

    def sqrt(self, z: Any) -> Any:
        """Elementwise square root."""

    def softplus(self, z: Any) -> Any:
        """log(1 + e^z), exact for all z."""

    def relu(self, z: Any) -> Any:
        """max(z, 0) (not for IPOPT: not twice differentiable)."""

    def logsumexp(self, z: Any) -> Any:
        """log Σ_rows exp(z), shape (1, n)."""

    def colsum(self, z: Any) -> Any:
        """Σ over rows, shape (1, n)."""

    def sumsqr(self, w: Any) -> Any:
        """Σ w², a scalar."""


class _BatchedOps(ArrayOps):
    """What numpy and torch share: ``@`` and 1-D biases broadcast over the sample columns."""

    @staticmethod
    def affine(W: Any, x: Any, b: Any | None) -> Any:
        y = W @ x
        return y if b is None else y + b.reshape(-1, 1)

    @staticmethod
    def matmul(W: Any, x: Any) -> Any:
        return W @ x

    @staticmethod
    def block(chunk: Any, shape: tuple[int, ...]) -> Any:
        return chunk.reshape(shape)

    def zero_rows(self, x: Any, rows: int) -> Any:
        return self.pad_rows(x[:0], rows)


class NumpyOps(_BatchedOps):
    """numpy back-end: batched, columns are samples."""

    name = "numpy"

    @staticmethod
    def pad_rows(x: Any, rows: int) -> Any:
        if x.shape[0] == rows:
            return x
        return np.concatenate([x, np.zeros((rows - x.shape[0], x.shape[1]), x.dtype)], 0)

    @staticmethod
    def tanh(z: Any) -> Any:
        return np.tanh(z)

    @staticmethod
    def exp(z: Any) -> Any:
        return np.exp(z)

    @staticmethod
    def log(z: Any) -> Any:
        return np.log(z)

    @staticmethod
    def sqrt(z: Any) -> Any:
        return np.sqrt(z)

    @staticmethod
    def softplus(z: Any) -> Any:
        return np.logaddexp(0.0, z)

    @staticmethod
    def relu(z: Any) -> Any:
        return np.maximum(z, 0.0)

    @staticmethod
    def logsumexp(z: Any) -> Any:
        """log Σ_rows exp(z), shape (1, n)."""
        m = np.max(z, axis=0, keepdims=True)
        return m + np.log(np.sum(np.exp(z - m), axis=0, keepdims=True))

    @staticmethod
    def colsum(z: Any) -> Any:
        """Σ over rows, shape (1, n)."""
        return np.sum(z, axis=0, keepdims=True)

    @staticmethod
    def sumsqr(w: Any) -> Any:
        return float(np.sum(np.square(w)))


class CasadiOps(ArrayOps):
    """CasADi back-end: one sample as a (d, 1) column of SX/MX; mapped over samples."""

    name = "casadi"

    @staticmethod
    def affine(W: Any, x: Any, b: Any | None) -> Any:
        import casadi as ca

        y = ca.mtimes(W, x)
        return y if b is None else y + b

    @staticmethod
    def matmul(W: Any, x: Any) -> Any:
        import casadi as ca

        return ca.mtimes(W, x)

    @staticmethod
    def pad_rows(x: Any, rows: int) -> Any:
        import casadi as ca

        if x.shape[0] == rows:
            return x
        return ca.vertcat(x, ca.DM.zeros(rows - x.shape[0], x.shape[1]))

    @staticmethod
    def zero_rows(x: Any, rows: int) -> Any:
        return CasadiOps.pad_rows(x[:0, :], rows)  # [:0, :]: CasADi reads x[:0] of a 1x1 as (1, 0)

    @staticmethod
    def block(chunk: Any, shape: tuple[int, ...]) -> Any:
        import casadi as ca

        # CasADi matrices are column-major: a (r, c) block is the transpose of a (c, r) reshape,
        # which keeps one (row-major) flat order for all back-ends.
        if len(shape) == 1:
            return chunk
        return ca.reshape(chunk, shape[1], shape[0]).T

    @staticmethod
    def tanh(z: Any) -> Any:
        import casadi as ca

        return ca.tanh(z)

    @staticmethod
    def exp(z: Any) -> Any:
        import casadi as ca

        return ca.exp(z)

    @staticmethod
    def log(z: Any) -> Any:
        import casadi as ca

        return ca.log(z)

    @staticmethod
    def sqrt(z: Any) -> Any:
        import casadi as ca

        return ca.sqrt(z)

    @staticmethod
    def softplus(z: Any) -> Any:
        import casadi as ca

        # Stable form; the kinks of fmax/fabs cancel, so derivatives of all orders are exact.
        return ca.fmax(z, 0) + ca.log1p(ca.exp(-ca.fabs(z)))

    @staticmethod
    def relu(z: Any) -> Any:
        raise NotImplementedError  # guarded by the spec: IPOPT needs C2 activations

    @staticmethod
    def logsumexp(z: Any) -> Any:
        import casadi as ca

        # Shift by the max for stability; its (non-smooth) derivative cancels exactly.
        m = ca.mmax(z)
        return m + ca.log(ca.sum1(ca.exp(z - m)))

    @staticmethod
    def colsum(z: Any) -> Any:
        import casadi as ca

        return ca.sum1(z)

    @staticmethod
    def sumsqr(w: Any) -> Any:
        import casadi as ca

        return ca.sumsqr(w)


class TorchOps(_BatchedOps):
    """torch back-end: batched, columns are samples (transpose of torch's usual layout)."""

    name = "torch"

    @staticmethod
    def pad_rows(x: Any, rows: int) -> Any:
        import torch

        if x.shape[0] == rows:
            return x
        return torch.nn.functional.pad(x, (0, 0, 0, rows - x.shape[0]))

    @staticmethod
    def tanh(z: Any) -> Any:
        return z.tanh()

    @staticmethod
    def exp(z: Any) -> Any:
        return z.exp()

    @staticmethod
    def log(z: Any) -> Any:
        return z.log()

    @staticmethod
    def sqrt(z: Any) -> Any:
        return z.sqrt()

    @staticmethod
    def softplus(z: Any) -> Any:
        import torch

        # Exact for all z, like numpy's logaddexp: F.softplus returns z itself above 20, an
        # error of e^-20 ≈ 2e-9 that breaks float64 parity with CasADi.
        return torch.logaddexp(z, z.new_zeros(()))

    @staticmethod
    def relu(z: Any) -> Any:
        return z.relu()

    @staticmethod
    def logsumexp(z: Any) -> Any:
        return z.logsumexp(dim=0, keepdim=True)

    @staticmethod
    def colsum(z: Any) -> Any:
        return z.sum(dim=0, keepdim=True)

    @staticmethod
    def sumsqr(w: Any) -> Any:
        return (w * w).sum()


NUMPY = NumpyOps()
CASADI = CasadiOps()
TORCH = TorchOps()
