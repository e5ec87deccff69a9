"""A second-order certificate of a solution: the curvature of the training objective at the weights.

    cert = certify(problem, sol.w)
    cert.describe()   # 'strict local minimum (λ_min 3.2e-04, λ_max 41, p=63)'

At the returned weights w the smallest eigenvalues of the Hessian ∇²J(w) of the condensed
objective J(w) (the weights are the only variables, states simulated: the single-shooting
objective, whatever transcription found w) decide what w is:

* ``strict local minimum``: λ_min > tol (with ∇J(w) = 0, a strict local minimiser);
* ``saddle``: λ_min < −tol (a direction of descent: not a minimum);
* ``degenerate``: |λ_min| ≤ tol (second order cannot tell; e.g. a flat direction),

with tol = ``rtol`` · max|λ|. With p ≤ ``dense_max`` weights all eigenvalues come from the
dense Hessian (``numpy.linalg.eigvalsh``: LAPACK, without importing scipy in a plain solve);
above, the ``k`` smallest and the largest by Lanczos (``scipy.sparse.linalg.eigsh``) on CasADi
Hessian-vector products (:func:`hvp`); above
``max_params`` nothing is computed (``kind = "skipped"``).

The dense Hessian is assembled the way the exact Newton path assembles it (:func:`hessian`,
:func:`ocp_resnet.solvers.newton.exact_derivatives`: per-stage CasADi derivatives of one sample,
mapped over the data, summed by second-order adjoints) when the activation is smooth; else it
comes from torch (:func:`torch_hessian`, ``torch.func`` in float64). Measured, CPU seconds
in-process at the solution of ``ocp-resnet solve --dataset moons --n-samples 283 --noise 0.05
--blocks 10 --width 4 --loss ce --gamma 2.0 --weight-decay 1e-5 --seed 0`` (p = 210;
``python benchmarks/newton_derivatives.py`` with those flags): 0.04 s, against 1.1 s for the
exact-Hessian functions of the single-shooting transcription (:func:`transcription_hessian`,
which builds one sample's symbolic Hessian of the whole trajectory); torch took 2.2 s plus
1.4 s to import it on a similar problem (docs/performance.md, "Second-order certificate").

Lanczos is for large p only: on trained nets the spectrum spans 1e-4 … 1e4 with clusters at
2λ (weights the data does not use), and ARPACK then stops after :data:`LANCZOS_MAXITER`
restarts with only part of the eigenvalues converged (``method`` says ``not converged``; the
values it has are converged Ritz values).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_float, check_int

#: Weights up to which the Hessian is formed and fully diagonalised (a p×p eigh: 2000 → ~1 s).
DENSE_MAX = 2000
#: Weights above which no certificate is computed by default: that is Lanczos territory, which
#: needs hundreds of Hessian-vector products, and one costs 1.9 s CPU on digits with width 64,
#: 2 blocks (p = 8970, n = 1797): minutes. ``max_params=None`` asks for it anyway.
MAX_PARAMS = DENSE_MAX
#: Largest n·p² (samples × weights²) for which the *torch* dense Hessian (non-smooth activations)
#: is formed by default: its cost and memory grow with n·p². The stage-wise assembly used for
#: smooth activations (:func:`hessian`) costs about one Newton iteration (P2, n = 2000, p = 410:
#: 0.63 s CPU and 160 MB at the initial weights of ``--dataset spirals --n-samples 2000 --blocks
#: 20 --width 4``), so only :data:`MAX_PARAMS` bounds it. ``max_params=None`` asks for it anyway.
MAX_WORK = 1e8
#: Relative tolerance: |λ| ≤ RTOL · max|λ| counts as zero. Eigenvalues of the AD Hessian are
#: exact to rounding (≈ p · 1e-16 · max|λ|), so this is a margin of ~1e4 above it. Trained nets
#: are ill-conditioned: P1 by single shooting at γ = 0.3 has λ_min 2.25e-4 (the weight decay
#: gives 2λ = 2e-4) against λ_max 2.3e5, a strict minimum that RTOL 1e-9 would call degenerate.
RTOL = 1e-10
#: Lanczos restarts before the certificate gives up (``method`` then says ``not converged``).
LANCZOS_MAXITER = 300
KINDS = ("strict local minimum", "saddle", "degenerate", "skipped")


@dataclass
class Certificate:
    """The curvature of J at some weights: ``kind`` (one of :data:`KINDS`), the smallest
    eigenvalues (ascending), the largest, the tolerance that separated the kinds, how they were
    computed (``dense`` / ``lanczos``) and in how many seconds."""

    kind: str
    n_params: int
    lambda_min: float | None = None
    lambda_max: float | None = None
    smallest: list[float] = field(default_factory=list)
    tol: float | None = None
    rtol: float = RTOL
    n_negative: int | None = None
    method: str = "dense"
    #: why a certificate was skipped
    note: str | None = None
    time_s: float = 0.0

    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        """Plain JSON-ready values (the ``second_order`` record of ``metrics.json``, which keeps
        ``time_s`` beside it as ``second_order_time_s``: ``timings=False`` leaves it out)."""
        d = asdict(self)
        if not timings:
            d.pop("time_s")
        return d

    def describe(self) -> str:
        """One line, e.g. ``strict local minimum (λ_min 3.2e-04, λ_max 41, tol 4e-05, p=63, dense (casadi))``."""
        if self.kind == "skipped":
            return f"skipped ({self.note})"
        at_least = "≥ " if self.method.startswith("lanczos") and self.n_negative == len(self.smallest) else ""
        neg = f", {at_least}{self.n_negative} negative" if self.n_negative else ""
        return (f"{self.kind} (λ_min {self.lambda_min:.3g}, λ_max {self.lambda_max:.3g}, tol {self.tol:.1g}, "
                f"p={self.n_params}{neg}, {self.method})")


def describe_record(record: dict[str, Any]) -> str:
    """:meth:`Certificate.describe` of a ``second_order`` record of ``metrics.json``."""
    return Certificate(**record).describe()


def classify(lambda_min: float, lambda_max_abs: float, rtol: float = RTOL) -> tuple[str, float]:
    """(kind, tol) of a Hessian whose smallest eigenvalue is ``lambda_min`` and largest modulus ``lambda_max_abs``."""
    tol = rtol * lambda_max_abs
    if lambda_min > tol:
        return "strict local minimum", tol
    if lambda_min < -tol:
        return "saddle", tol
    return "degenerate", tol


# --------------------------------------------------------------------------- Hessian by CasADi
def _grad_function(problem: Any) -> Any:
    """The MX Function w -> (J, ∇J) of :func:`~ocp_resnet.solvers.ipopt.transcription.objective_and_gradient`."""
    from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient

    if problem.__dict__.get("_casadi_grad_fn") is None:
        objective_and_gradient(problem, np.zeros(problem.spec.n_params))
    return problem.__dict__["_casadi_grad_fn"]


def hessian(problem: Any, w: np.ndarray) -> np.ndarray:
    """∇²J(w), dense and symmetric (p×p), as the Newton path assembles it
    (:func:`ocp_resnet.solvers.newton.exact_derivatives`: small per-stage CasADi functions mapped
    over the samples, then second-order adjoints, no symbolic Hessian of the whole trajectory).
    Smooth activations only."""
    from ocp_resnet.solvers.newton import exact_derivatives

    return exact_derivatives(problem, w)[2]


def transcription_hessian(problem: Any, w: np.ndarray) -> np.ndarray:
    """∇²J(w) by the exact-Hessian functions of the single-shooting transcription (one sample's
    whole trajectory differentiated symbolically, mapped over the data): an independent
    computation of :func:`hessian`, slower to build (seconds for p ≈ 200)."""
    import casadi as ca

    from ocp_resnet.solvers.ipopt.transcription import single_shooting
    from ocp_resnet.solvers.ipopt.transcription._common import compiled_in_process

    fn = problem.__dict__.get("_casadi_hess_fn")
    if fn is None:  # a solve by single shooting may have compiled these functions already: reuse them
        nlp = single_shooting(problem, jit=compiled_in_process("single-shooting", problem))
        fn = problem.__dict__["_casadi_hess_fn"] = nlp.functions["hess_lag"]
    H = np.asarray(ca.densify(fn(np.asarray(w, dtype=float).ravel(), [], 1.0, [])))
    return np.triu(H) + np.triu(H, 1).T  # IPOPT's upper triangle, mirrored


def hvp(problem: Any) -> Any:
    """A function v -> ∇²J(w)v at given weights: ``hvp(problem)(w, v)`` (CasADi forward-over-reverse
    on the mapped per-sample gradient; v may be a p×k block of directions)."""
    import casadi as ca

    fn = problem.__dict__.get("_casadi_hvp_fn")
    if fn is None:
        g = _grad_function(problem)
        wm = ca.MX.sym("w", problem.spec.n_params)
        vm = ca.MX.sym("v", problem.spec.n_params)
        grad = g(wm)[1]
        fn = problem.__dict__["_casadi_hvp_fn"] = ca.Function("hvp", [wm, vm], [ca.jtimes(grad, wm, vm)])
    return lambda w, v: np.asarray(fn(np.asarray(w, dtype=float).ravel(), np.asarray(v, dtype=float)))


# --------------------------------------------------------------------------- Hessian by torch
def torch_objective(problem: Any) -> Any:
    """J as a torch function of the flat float64 weights (the same formula as ``Problem.objective_value``)."""
    import torch

    from ocp_resnet.model import architecture as arch
    from ocp_resnet.model import objective as objective_mod
    from ocp_resnet.model._ops import TORCH

    spec, obj = problem.spec, problem.objective
    U = torch.as_tensor(problem.U, dtype=torch.float64)
    T = torch.as_tensor(problem.T, dtype=torch.float64)

    def J(wf: Any) -> Any:
        p = spec.unflatten(wf, TORCH)
        cost = objective_mod.sample_cost(spec, obj, p, arch.trajectory(spec, p, U, TORCH), T, TORCH)
        return cost.mean() + objective_mod.regularization(obj, wf, TORCH)

    return J


#: Hessian columns torch computes at once: each is a full backward pass over the data, so
#: ``TORCH_CHUNK`` bounds the memory to that many passes (p at once: p × n × widths floats).
TORCH_CHUNK = 32


def torch_hessian(problem: Any, w: np.ndarray) -> np.ndarray:
    """∇²J(w) by torch in float64: ``torch.func.jacrev`` of the gradient, :data:`TORCH_CHUNK`
    columns at a time (the cross-check of :func:`hessian`, and the back-end for large expressions)."""
    import torch

    f = torch_objective(problem)
    H = torch.func.jacrev(torch.func.grad(f), chunk_size=TORCH_CHUNK)(torch.as_tensor(np.asarray(w, dtype=float).ravel()))
    H = H.detach().numpy()
    return 0.5 * (H + H.T)


# --------------------------------------------------------------------------- the certificate
def dense_backend(problem: Any) -> str:
    """``"casadi"`` (:func:`hessian`) when the activation is smooth, else ``"torch"``."""
    from ocp_resnet.model.architecture import SMOOTH_ACTIVATIONS

    return "casadi" if problem.spec.activation in SMOOTH_ACTIVATIONS else "torch"


def certify(problem: Any, w: Any, *, rtol: float = RTOL, k: int = 6, dense_max: int = DENSE_MAX,
            max_params: int | None = MAX_PARAMS, method: str = "auto", backend: str = "auto",
            seed: int = 0) -> Certificate:
    """The :class:`Certificate` of the weights ``w`` (flat vector or name → array) on ``problem``.

    ``method``: ``"dense"`` (the whole Hessian, ``numpy.linalg.eigvalsh``), ``"lanczos"`` (the ``k``
    smallest and the largest eigenvalue by ``scipy.sparse.linalg.eigsh`` on CasADi
    Hessian-vector products, start vector seeded by ``seed``) or ``"auto"``: dense for
    p ≤ ``dense_max`` (default 2000), Lanczos above. Above ``max_params`` weights (default
    2000, i.e. Lanczos only when asked for; ``None``: no limit) the certificate is ``skipped``:
    Lanczos needs hundreds of Hessian-vector products, minutes at that size. ``backend`` of the
    dense Hessian: ``"casadi"``, ``"torch"`` or ``"auto"`` (:func:`dense_backend`).
    """
    rtol = check_float("rtol", rtol, 0.0)
    k = check_int("k", k, 1)
    if method not in ("auto", "dense", "lanczos"):
        raise ValidationError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}")
    if backend not in ("auto", "casadi", "torch"):
        raise ValidationError(f"backend must be 'auto', 'casadi' or 'torch', got {backend!r}")
    t0 = time.perf_counter()
    w = problem.spec.flatten(w) if isinstance(w, dict) else np.asarray(w, dtype=float).ravel()
    p = w.size
    if max_params is not None and p > max_params:
        return Certificate("skipped", p, rtol=rtol, method="none",
                           note=f"p={p} weights, more than max_params={max_params}")
    if max_params is not None and dense_backend(problem) == "torch" and problem.n_samples * p * p > MAX_WORK:
        return Certificate("skipped", p, rtol=rtol, method="none",
                           note=f"n·p² = {problem.n_samples * p * p:.1e} (n={problem.n_samples}, p={p}) is more than "
                                f"{MAX_WORK:.0e}; call certify(problem, w, max_params=None) to compute it")
    if not np.all(np.isfinite(w)):
        raise ValidationError("the weights contain NaN or inf: there is no curvature to certify")
    try:
        return _certify(problem, w, rtol, k, dense_max, method, backend, seed, t0)
    except FloatingPointError as exc:  # the weights are finite, J overflows there
        return Certificate("skipped", p, rtol=rtol, method="none", note=str(exc), time_s=time.perf_counter() - t0)


def _certify(problem: Any, w: np.ndarray, rtol: float, k: int, dense_max: int, method: str, backend: str, seed: int,
             t0: float) -> Certificate:
    p = w.size
    if method == "dense" or (method == "auto" and p <= dense_max):
        backend = dense_backend(problem) if backend == "auto" else backend
        H = hessian(problem, w) if backend == "casadi" else torch_hessian(problem, w)
        if not np.all(np.isfinite(H)):
            raise FloatingPointError("the Hessian is not finite at these weights (overflow)")
        ev = np.linalg.eigvalsh(H)  # ascending, like LAPACK's syevd behind scipy's eigh
        smallest, lmax, lmin, lam_abs = ev[:k], float(ev[-1]), float(ev[0]), float(np.max(np.abs(ev)))
        used = f"dense ({backend})"
        kind, tol = classify(lmin, lam_abs, rtol)
        neg_count = int(np.sum(ev < -tol))
    else:
        smallest, lmax, lam_abs, converged = _lanczos(problem, w, k, seed)
        lmin = float(smallest[0])
        used = "lanczos (casadi)" if converged else "lanczos (casadi, not converged)"
        kind, tol = classify(lmin, lam_abs, rtol)
        neg_count = int(np.sum(smallest < -tol))  # among the k computed
    return Certificate(kind, p, lambda_min=lmin, lambda_max=lmax, smallest=[float(v) for v in smallest], tol=tol,
                       rtol=rtol, n_negative=neg_count, method=used, time_s=time.perf_counter() - t0)


def _lanczos(problem: Any, w: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, float, float, bool]:
    """(k smallest eigenvalues ascending, largest, largest modulus, converged) of ∇²J(w) by Lanczos.

    The smallest eigenvalues are found as the largest of σI − ∇²J (σ just above λ_max): ARPACK's
    stopping test is relative to the eigenvalue it converges to, which for λ_min ≈ 1e-4 against
    λ_max ≈ 1e4 asks for a residual below rounding and never ends (301 restarts without one
    eigenvalue on P1); shifted, the test is relative to σ, i.e. absolute accuracy 1e-10·λ_max.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    p = w.size
    prod = hvp(problem)
    v0 = np.random.default_rng(seed).standard_normal(p)
    k = min(k, p - 1)
    converged = True

    def operator(shift: float) -> LinearOperator:
        def matmat(V: np.ndarray) -> np.ndarray:
            V = np.asarray(V, dtype=float).reshape(p, -1)
            HV = prod(w, V)
            if not np.all(np.isfinite(HV)):
                raise FloatingPointError("a Hessian-vector product is not finite at these weights (overflow)")
            return shift * V - HV if shift else HV

        return LinearOperator((p, p), matvec=lambda v: matmat(v).reshape(np.shape(v)), matmat=matmat, dtype=float)

    def largest(op: LinearOperator, kk: int) -> np.ndarray:
        nonlocal converged
        try:
            return eigsh(op, k=kk, which="LA", v0=v0, tol=1e-10, ncv=min(p, max(2 * kk + 1, 20)),
                         maxiter=LANCZOS_MAXITER, return_eigenvectors=False)
        except ArpackNoConvergence as exc:  # keep what did converge
            converged = False
            if len(exc.eigenvalues) == 0:
                raise
            return np.asarray(exc.eigenvalues).real

    top = largest(operator(0.0), 1)
    lmax = float(np.max(top))
    sigma = abs(lmax) * 1.01 + 1e-12  # σI − H is positive semi-definite: its top is H's bottom
    small = np.sort(sigma - largest(operator(sigma), k))
    return small, lmax, max(abs(lmax), abs(float(small[0]))), converged
