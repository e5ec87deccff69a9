"""What every transcription shares: the NLP container, the per-sample symbols and the
structured (per-sample, mapped) derivative functions handed to IPOPT.

Performance design (docs/performance.md): the NLP is an MX graph that maps one small
SX function per sample over the data. Its derivatives are *not* generated from the big graph
(that took ~1 s for two spirals and grew with n); instead gradient, constraint Jacobian and
Lagrangian Hessian are differentiated symbolically for **one** sample, mapped over the samples,
and their non-zeros scattered into the global sparsity with a fixed permutation. The per-sample
functions depend only on the structure (spec, objective, transcription), so they are cached
and reused across data sets and sample counts.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import casadi as ca
import numpy as np

from ocp_resnet.errors import ValidationError
from ocp_resnet.model.architecture import SMOOTH_ACTIVATIONS

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.solvers.base import Hessian, Method

#: One sample's SX symbols and expressions: (u, t, s, w, γ, cost, G).
SampleSymbols = tuple[Any, Any, Any, Any, Any, Any, Any]


@dataclass
class NLP:
    """min f(x) s.t. lbg <= g(x) <= ubg, as CasADi expressions (MX).

    ``initial_guess(w)`` lifts weights to a full x0 (simulating states where needed) and
    ``weights(x)`` extracts the flat weight vector from a solution vector. ``functions`` holds
    the structured derivative Functions (``grad_f``, ``jac_g``, ``hess_lag``) passed to
    ``nlpsol`` (:meth:`nlpsol_options`).
    """

    method: Method
    x: Any
    f: Any
    g: Any
    lbg: np.ndarray
    ubg: np.ndarray
    n_weights: int
    initial_guess: Callable[[np.ndarray], np.ndarray]
    weights: Callable[[np.ndarray], np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, Any] = field(default_factory=dict)

    @property
    def n_variables(self) -> int:
        """Number of decision variables (entries of ``x``)."""
        return int(self.x.numel())

    @property
    def n_constraints(self) -> int:
        """Number of constraints (entries of ``g``; 0 for single shooting)."""
        return int(self.g.numel())

    def jacobian_nnz(self) -> int:
        """Non-zeros of the constraint Jacobian (from the sparsity pattern, no derivatives built)."""
        if self.n_constraints == 0:
            return 0
        jac = self.functions.get("jac_g")
        if jac is not None:
            return int(jac.sparsity_out(1).nnz())
        return int(ca.jacobian_sparsity(self.g, self.x).nnz())

    def nlpsol_options(self, hessian: Hessian = "exact") -> dict[str, Any]:
        """The ``nlpsol`` options that install the structured derivatives.

        With L-BFGS the oracle is only expanded to SX and CasADi derives gradient and Jacobian
        itself: that reproduces the previous L-BFGS iterates exactly (with the mapped functions
        installed, IPOPT's quasi-Newton path changed and needed ~40% more iterations on the
        test problems, though the derivatives agree to 1e-16).
        """
        if hessian == "exact":
            return {k: self.functions[k] for k in self.functions}
        if self.n_constraints == 0:  # single shooting: every weight enters nonlinearly anyway,
            return {"grad_f": self.functions["grad_f"]}  # so skip the (n-sized) expansion
        return {"expand": True}


def check_smooth(problem: Problem) -> None:
    """IPOPT needs twice-differentiable activations."""
    if problem.spec.activation not in SMOOTH_ACTIVATIONS:
        raise ValidationError(
            f"activation {problem.spec.activation!r} is not twice differentiable, so IPOPT cannot use it: "
            f"use one of {', '.join(SMOOTH_ACTIVATIONS)} (relu is for the torch back-end)"
        )


def sample_symbols(problem: Problem) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Symbols of one sample's input u and target t, the flat weights w and named params."""
    spec = problem.spec
    u = ca.SX.sym("u", spec.input_dim)
    t = ca.SX.sym("t", problem.T.shape[0])
    w = ca.SX.sym("w", spec.n_params)
    from ocp_resnet.model._ops import CASADI

    return u, t, w, spec.unflatten(w, CASADI)


def stage_mask(problem: Problem, jit: bool) -> tuple[bool, ...]:
    """Which stage losses k < N the per-sample functions contain: all of them when compiled (one
    library serves every γ), else those with γ_k ≠ 0 (a shallow objective stays cheap)."""
    gammas = problem.objective.stage_weights(problem.spec.n_blocks)[:-1]
    return tuple(True for _ in gammas) if jit else tuple(g != 0.0 for g in gammas)


def gamma_symbols(mask: tuple[bool, ...]) -> tuple[Any, list[Any]]:
    """The symbol γ (one entry per stage k < N, an input of every per-sample function) and the
    stage weights handed to :func:`~ocp_resnet.model.objective.sample_cost` (0.0 drops a stage)."""
    gam = ca.SX.sym("gamma", len(mask))
    return gam, [gam[k] if on else 0.0 for k, on in enumerate(mask)] + [1.0]


def structure_key(method: str, problem: Problem, mask: tuple[bool, ...]) -> tuple[Any, ...]:
    """What the per-sample functions depend on: the transcription, the architecture, the loss
    (with its label smoothing, a constant of ``sce``), the target size and the built stages;
    not γ, λ or the data, which are inputs."""
    obj = problem.objective
    eps = obj.label_smoothing if obj.loss == "sce" else None  # the other losses do not use it
    return (method, repr(problem.spec), obj.loss, eps, problem.T.shape[0], mask)


# --------------------------------------------------------------------------- structured NLP
class SampleFunctions:
    """One sample's SX functions and the local sparsity of their derivatives.

    Local variables are z = [s; w] (``ns`` own states, then the shared weights); every function
    takes the data (u, t), then s and w, and last the stage weights γ (k < N), so that nothing
    that changes between problems of one structure is a constant of the (compiled) code. The
    Hessian is built on first use only: single shooting's per-sample Hessian is large (dense in
    the weights) and L-BFGS never needs it.
    """

    def __init__(self, u: Any, t: Any, s: Any, w: Any, gam: Any, cost: Any, G: Any, jit: bool = False) -> None:
        self._sym: SampleSymbols = (u, t, s, w, gam, cost, G)
        self.ns, self.nw = int(s.numel()), int(w.numel())
        #: why the functions are interpreted although ``jit`` was asked for (``None``: not asked, or compiled)
        self.jit_note: str | None = None
        z = ca.vertcat(s, w)
        #: (u, t, s, w, γ) -> (cost, G)
        self.value = ca.Function("sample_value", [u, t, s, w, gam], [cost, G])
        gz = ca.gradient(cost, z)
        #: (u, t, s, w, γ) -> (cost, dcost/ds, dcost/dw)
        self.grad = ca.Function("sample_grad", [u, t, s, w, gam], [cost, gz[: self.ns], gz[self.ns :]])
        J = ca.jacobian(G, z)
        self.jac_rows, self.jac_cols = (np.asarray(a, dtype=np.int64) for a in J.sparsity().get_triplet())
        #: (u, t, s, w, γ) -> (G, non-zeros of dG/dz)
        self.jac = ca.Function("sample_jac", [u, t, s, w, gam], [G, _nz(J, range(J.nnz()))])
        #: whether the functions really run as machine code (``compiled`` falls back without a
        #: compiler, or when the code would be too large to compile, see :func:`compile_too_large`)
        self.jit = False
        if jit:
            note = compile_too_large(self.value, self.grad, self.jac)
            if note is None:
                self.value = compiled(self.value, reverse=True)
                self.jit = self.value.class_name() == "External"
                if self.jit:
                    self.grad, self.jac = compiled(self.grad), compiled(self.jac)
                else:
                    note = "no C compiler, or the compile failed"
            self.jit_note = None if self.jit else f"per-sample functions interpreted: {note}"
        self._hess: tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def hess(self) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(Function (u, t, s, w, lam, sig_c, sig_r, γ) -> (own nz, shared nz) of the upper triangle
        of ∇²_z (sig_c cost + lam·G + sig_r |w|²), rows/cols of the own and the shared entries)."""
        if self._hess is None:
            u, t, s, w, gam, cost, G = self._sym
            ns = self.ns
            z = ca.vertcat(s, w)
            lam = ca.SX.sym("lam", G.numel())
            sig_c, sig_r = ca.SX.sym("sig_c"), ca.SX.sym("sig_r")
            L = sig_c * cost + ca.dot(lam, G) + sig_r * ca.sumsqr(w)
            hess_z: ca.SX = ca.hessian(L, z)[0]
            H = ca.triu(hess_z)
            hr, hc = (np.asarray(a, dtype=np.int64) for a in H.sparsity().get_triplet())
            own = np.flatnonzero(hr < ns)  # upper triangle (r <= c): a row in s makes the entry per-sample
            sh = np.flatnonzero(hr >= ns)  # the (w, w) block: summed over the samples
            fn = ca.Function("sample_hess", [u, t, s, w, lam, sig_c, sig_r, gam], [_nz(H, own), _nz(H, sh)])
            if self.jit:
                note = compile_too_large(fn)
                if note is None:
                    fn = compiled(fn)
                else:  # value and gradient stay compiled; only the Hessian is interpreted
                    self.jit_note = f"per-sample Hessian interpreted: {note}"
            self._hess = (fn, hr[own], hc[own], hr[sh], hc[sh])
        return self._hess


class LazyFunctions(dict[str, Any]):
    """A dict whose values may be zero-argument builders, called (once) on first access."""

    def __getitem__(self, key: str) -> Any:
        v = super().__getitem__(key)
        if callable(v) and not isinstance(v, ca.Function):
            v = v()
            self[key] = v
        return v

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, built on first access, or ``default``."""
        return self[key] if key in self else default

    def materialized(self) -> dict[str, Any]:
        """A plain dict with every builder called."""
        return {k: self[k] for k in self}


_SAMPLE_CACHE: dict[tuple[Any, bool], SampleFunctions] = {}


def c_compiler() -> str | None:
    """The C compiler the JIT calls (``$CC``, else ``gcc``/``cc``/``clang`` on the PATH), or ``None``."""
    import shutil

    for name in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def cache_dir() -> Path:
    """Where compiled per-sample functions are kept between runs (``$OCP_RESNET_CACHE``, else
    ``$XDG_CACHE_HOME/ocp_resnet``, else ``~/.cache/ocp_resnet``)."""
    env = os.environ.get("OCP_RESNET_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ocp_resnet"


_CFLAGS = ("-O2", "-shared", "-fPIC")
#: How :func:`compiled_library` generates the code (part of each library's name: a change here
#: must change the names)
_CODEGEN = "CodeGenerator with_header=False; each function, then its reverse(1) when asked"

#: What :func:`compiled` did in this process: ``compiled`` (the C compiler ran), ``loaded`` (a
#: library from :func:`cache_dir` was reused), ``fallback`` (no compiler, or the compile failed).
COMPILE_COUNTS = {"compiled": 0, "loaded": 0, "fallback": 0}

#: gcc -O2 time of one per-sample function, fitted as ``a·instructions^1.2`` to the per-sample
#: Hessians of single shooting (bce, widths 2–4, 3–10 blocks: 2,111 instructions 0.6 s, 19,996
#: 11 s, 38,114 27 s, 66,117 78 s, 166,609 ~140 s and 3 GB of compiler memory; docs/performance.md).
COMPILE_S_COEFF = 7.6e-5
#: Per-sample code estimated to take longer than this to compile is run interpreted instead.
MAX_COMPILE_S = 60.0


def compile_seconds(instructions: float) -> float:
    """Estimated C-compiler seconds for per-sample code of ``instructions`` SX instructions."""
    return float(COMPILE_S_COEFF * max(float(instructions), 0.0) ** 1.2)


def compile_too_large(*fns: Any) -> str | None:
    """``None`` when the SX Functions ``fns`` are small enough to compile, else why not in words:
    gcc -O2 needs time and memory that grow faster than the size of one C function, so code whose
    compile is estimated (:func:`compile_seconds`) to take longer than
    :data:`MAX_COMPILE_S` stays interpreted."""
    n = sum(int(f.n_instructions()) for f in fns)
    t = compile_seconds(n)
    if t <= MAX_COMPILE_S:
        return None
    return f"{n:,} instructions would take ~{t:.0f} s to compile (more than {MAX_COMPILE_S:.0f} s)"


def compiled(fn: Any, reverse: bool = False, cached_only: bool = False) -> Any:
    """``fn`` as machine code: CasADi generates its C code, the C compiler builds a shared library
    (kept in :func:`cache_dir` under a hash of the functions, so a structure is compiled once per
    machine, not once per run) and CasADi loads it. Same inputs, outputs and values as ``fn``;
    ``reverse`` also compiles its reverse derivative (CasADi's ``adj1_`` convention), for a
    function that CasADi must differentiate further (the NLP's objective and constraints).
    Falls back to ``fn`` itself when there is no compiler or the compile fails, and with
    ``cached_only`` when the library is not in the cache yet (nothing is compiled or counted)."""
    return compiled_library([fn], reverse, cached_only)[0]


def compiled_library(fns: list[Any], reverse: bool = False, cached_only: bool = False) -> list[Any]:
    """:func:`compiled` for several functions in one library (one compile, one file, named by
    the first): the compiled twin of each, or all of ``fns`` themselves where it falls back."""
    import hashlib
    import subprocess
    import tempfile

    cc = c_compiler()
    if cc is None:
        COMPILE_COUNTS["fallback"] += 1
        return fns
    fn = fns[0]
    # The C code is CasADi's (this version's) generation from the functions alone, so the
    # serialised functions name the library as well as the code would, without generating the
    # code at every start only to hash it (~4 ms at the canonical problem, ~30 ms at width 6)
    key = hashlib.sha256("\0".join([*(f.serialize() for f in fns), f"reverse={reverse}", _CODEGEN,
                                      cc, *_CFLAGS, ca.CasadiMeta.version()]).encode()).hexdigest()[:20]
    target = cache_dir() / f"{fn.name()}_{key}.so"
    if cached_only and not target.exists():
        return fns
    try:
        if target.exists():
            COMPILE_COUNTS["loaded"] += 1
        else:
            cg = ca.CodeGenerator(f"{fn.name()}.c", {"with_header": False})
            for f in fns:
                cg.add(f)
                if reverse:
                    cg.add(f.reverse(1))
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src, lib = Path(tmp) / f"{fn.name()}.c", Path(tmp) / "lib.so"
                src.write_text(cg.dump())
                subprocess.run([cc, *_CFLAGS, "-o", str(lib), str(src), "-lm"], check=True, capture_output=True)
                os.replace(lib, target)  # atomic: a concurrent run sees a whole library or none
            COMPILE_COUNTS["compiled"] += 1
        return [ca.external(f.name(), str(target)) for f in fns]
    except (OSError, subprocess.CalledProcessError, RuntimeError):
        COMPILE_COUNTS["fallback"] += 1
        return fns


def sample_functions(method: str, problem: Problem, make: Callable[[tuple[bool, ...]], SampleSymbols],
                     jit: bool = False) -> SampleFunctions:
    """Per-sample functions of ``problem``'s structure (:func:`structure_key`), built once per
    process by ``make(mask)``, which returns the SX symbols and expressions
    ``(u, t, s, w, γ, cost, G)`` with the stages of ``mask``; ``jit`` compiles them with the C
    compiler. Problems that differ only in γ, λ or the data share them."""
    mask = stage_mask(problem, jit)
    key = structure_key(method, problem, mask)
    hit = _SAMPLE_CACHE.get((key, jit))
    if hit is None:
        u, t, s, w, gam, cost, G = make(mask)
        hit = _SAMPLE_CACHE[(key, jit)] = SampleFunctions(u, t, s, w, gam, cost, G, jit=jit)
    return hit


def compiled_in_process(method: str, problem: Problem) -> bool:
    """Whether compiled per-sample functions of ``problem``'s structure were built in this process
    (so that asking for ``jit`` again costs nothing)."""
    key = structure_key(method, problem, stage_mask(problem, True))
    hit = _SAMPLE_CACHE.get((key, True))
    return hit is not None and hit.jit


def stage_gammas(problem: Problem) -> np.ndarray:
    """The numeric γ input of the per-sample functions: γ_k for the stages k < N."""
    return np.asarray(problem.objective.stage_weights(problem.spec.n_blocks)[:-1], dtype=float).reshape(-1, 1)


def _nz(M: Any, idx: Iterable[int]) -> Any:
    nz = M.nonzeros()
    idx = list(idx)
    return ca.vertcat(*[nz[i] for i in idx]) if idx else ca.SX(0, 1)


def _scatter(nrow: int, ncol: int, rows: np.ndarray, cols: np.ndarray, vals: Any) -> Any:
    """MX matrix with the (distinct) entries ``vals[k]`` at ``(rows[k], cols[k])``."""
    order = np.lexsort((rows, cols))  # column-major, as CasADi stores non-zeros
    sp = ca.Sparsity.triplet(nrow, ncol, rows[order].tolist(), cols[order].tolist())
    if sp.nnz() != len(rows):
        raise AssertionError("structured derivative has duplicate entries")  # a bug, not a user error
    if vals.numel() == 0:
        return ca.MX(sp)
    return ca.MX(sp, vals[order.tolist()])


def structured_nlp(sf: SampleFunctions, U: np.ndarray, T: np.ndarray, gammas: np.ndarray, weight_decay: float,
                   threads: int = 1) -> dict[str, Any]:
    """x, f, g and the nlpsol derivative Functions of

        min_x (1/n) Σ_i cost(u_i, t_i, s_i, w; γ) + λ |w|²   s.t.  G(u_i, t_i, s_i, w) = 0,

    with x = [s_1; …; s_n; w] (sample by sample, weights last: an arrowhead KKT). The data, γ
    (``gammas``, one per stage k < N) and λ enter as values here, outside the per-sample code.
    ``threads`` > 1 evaluates the samples in that many threads (CasADi's thread map; the sums are the same).
    """

    def mapped(fn: Any) -> Any:
        return fn.map(n, "thread", threads) if threads > 1 else fn.map(n)

    n, ns, nw = U.shape[1], sf.ns, sf.nw
    nx, ng = ns * n + nw, int(sf.value.size1_out(1)) * n
    Ud, Td, gam = ca.DM(U), ca.DM(T), ca.DM(gammas)
    x = ca.MX.sym("x", nx)
    p = ca.MX.sym("p", 0, 1)
    S = ca.reshape(x[: ns * n], ns, n)
    w = x[ns * n :]
    lam_f = ca.MX.sym("lam_f")
    lam_g = ca.MX.sym("lam_g", ng)
    reg = weight_decay * ca.sumsqr(w)

    C, G = mapped(sf.value)(Ud, Td, S, w, gam)
    f = ca.sum2(C) / n + reg
    g = ca.vec(G)

    C2, gs, gw = mapped(sf.grad)(Ud, Td, S, w, gam)
    grad = ca.vertcat(ca.vec(gs) / n, ca.sum2(gw) / n + 2 * weight_decay * w)
    grad_f = ca.Function("nlp_grad_f", [x, p], [ca.sum2(C2) / n + reg, grad],
                         ["x", "p"], ["f", "grad_f_x"])

    I = np.arange(n, dtype=np.int64)[:, None]

    def glob(loc: np.ndarray) -> np.ndarray:  # local z index of sample i -> global x index, (n, k)
        index: np.ndarray = np.where(loc[None, :] < ns, I * ns + loc[None, :], ns * n + loc[None, :] - ns)
        return index

    out = LazyFunctions(grad_f=grad_f)
    if ng:
        G2, jv = mapped(sf.jac)(Ud, Td, S, w, gam)
        ngs = ng // n
        rows = (I * ngs + sf.jac_rows[None, :]).ravel()
        cols = glob(sf.jac_cols).ravel()
        out["jac_g"] = ca.Function("nlp_jac_g", [x, p], [ca.vec(G2), _scatter(ng, nx, rows, cols, ca.vec(jv))],
                                   ["x", "p"], ["g", "jac_g_x"])

    def hess_lag() -> Any:
        fn, r_own, c_own, r_sh, c_sh = sf.hess
        L = ca.reshape(lam_g, ng // n, n) if ng else ca.MX(0, n)
        ho, hs = mapped(fn)(Ud, Td, S, w, L, lam_f / n, lam_f * weight_decay / n, gam)
        rows = np.concatenate([glob(r_own).ravel(), ns * n + r_sh - ns])
        cols = np.concatenate([glob(c_own).ravel(), ns * n + c_sh - ns])
        vals = ca.vertcat(ca.vec(ho), ca.sum2(hs))
        return ca.Function("nlp_hess_l", [x, p, lam_f, lam_g], [_scatter(nx, nx, rows, cols, vals)],
                           ["x", "p", "lam_f", "lam_g"], ["hess_gamma_x_x"])

    out["hess_lag"] = hess_lag  # built on first use (not for L-BFGS)
    return {"x": x, "f": f, "g": g, "functions": out, "jit": sf.jit, "sf": sf}
