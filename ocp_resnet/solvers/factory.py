"""One factory turns plain values (CLI flags, a library caller's dict, a run's recorded
``solver``) into a :class:`~ocp_resnet.solvers.base.Solver`.

Every command builds its solver here, so ``method="auto"`` (the size-aware choice of
:func:`ocp_resnet.solvers.ipopt.sizing.plan`) is the default of every command, and a recorded
solver (``config.json``'s ``solver``) is read back into the same object.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ocp_resnet.errors import check_choice
from ocp_resnet.solvers.base import Solver

BACKENDS = ("casadi", "torch")
#: the CasADi back-end's methods (base.Method)
METHODS = ("auto", "multiple-shooting", "single-shooting", "newton", "newton-cg")
#: IpoptOptions fields a recorded solver passes on (``jit``/``threads``/... are how that run was
#: solved on its machine, not settings of a re-solve)
IPOPT_KEYS = ("tol", "max_iter", "hessian", "ipopt")
#: TrainOptions fields a record leaves alone: the GPU switches and the progress bar are how one
#: training ran, not settings a sweep point or a fine-tuning inherits
TRAIN_SKIP = ("progress", "compile", "amp", "channels_last")


def make_solver(backend: str = "casadi", **options: Any) -> Solver:
    """The solver of ``backend`` with ``options`` (``None`` values take the defaults).

    CasADi: ``method`` (default ``"auto"``) and the :class:`~ocp_resnet.solvers.ipopt.IpoptOptions`
    fields (other keys are ignored); ``method="newton"`` gives the exact trust-region Newton
    solver (:class:`~ocp_resnet.solvers.newton.NewtonSolver`: ``tol``, ``max_iter``,
    ``print_level`` and its own fields), ``method="newton-cg"`` the Hessian-free one
    (:class:`~ocp_resnet.solvers.newton_cg.NewtonCGSolver`: the same, and ``threads``). Torch:
    the :class:`~ocp_resnet.torch.train.TrainOptions`
    fields, ``grad_tol`` and ``threads``.
    """
    check_choice("backend", backend, BACKENDS)
    given = {k: v for k, v in options.items() if v is not None}
    if backend == "casadi":
        check_choice("method", given.get("method", "auto"), METHODS)
    if backend == "casadi" and given.get("method") in ("newton", "newton-cg"):
        from ocp_resnet.solvers.newton import NewtonOptions, NewtonSolver
        from ocp_resnet.solvers.newton_cg import NewtonCGOptions, NewtonCGSolver

        def opts(cls: Any) -> dict[str, Any]:  # its fields among the given, print level 0 or 1
            chosen = {k: given[k] for k in (f.name for f in fields(cls)) if k in given}
            chosen["print_level"] = min(int(chosen.get("print_level", 1)), 1)
            return chosen

        if given["method"] == "newton":
            return NewtonSolver(NewtonOptions(**opts(NewtonOptions)))
        return NewtonCGSolver(NewtonCGOptions(**opts(NewtonCGOptions)))
    if backend == "casadi":
        from ocp_resnet.solvers.ipopt import IpoptOptions, IpoptSolver
        from ocp_resnet.solvers.ipopt.options import check_method

        names = [f.name for f in fields(IpoptOptions)]
        return IpoptSolver(method=check_method(str(given.get("method", "auto"))),
                           options=IpoptOptions(**{k: given[k] for k in names if k in given}))
    from ocp_resnet.solvers.trainer import TorchSolver, require_torch

    require_torch()
    from ocp_resnet.torch.train import TrainOptions

    names = [f.name for f in fields(TrainOptions) if f.name not in TRAIN_SKIP]
    train = TrainOptions(**{k: given[k] for k in names if k in given}, progress=False)
    return TorchSolver(train, grad_tol=float(given["grad_tol"]) if "grad_tol" in given else None,
                       threads=given.get("threads"))


def solver_from_record(record: Mapping[str, Any] | None, backend: str | None = None,
                       defaults: Mapping[str, Any] | None = None) -> Solver:
    """The solver a ``config.json`` ``solver`` record (or an option dict) describes, for a re-solve.

    ``backend`` overrides the record's own (default ``"casadi"``); ``defaults`` fill what the
    record lacks. Of IPOPT's options only :data:`IPOPT_KEYS` carry over.
    """
    rec = {**dict(defaults or {}), **{k: v for k, v in dict(record or {}).items() if v is not None}}
    backend = backend or str(rec.get("backend", "casadi"))
    if backend == "casadi":
        rec = {k: rec[k] for k in ("method", *IPOPT_KEYS) if k in rec}
    return make_solver(backend, **{k: v for k, v in rec.items() if k != "backend"})


def sweep_record(solver: Solver) -> dict[str, Any]:
    """The options a sweep writes to ``sweep.json``/``config.json``: the command's flags first,
    then whatever else differs from the defaults (torch)."""
    from ocp_resnet.solvers.ipopt import IpoptSolver

    inner = getattr(solver, "solver", None)  # a wrapper (retries after a collapse) records its solver's options
    if inner is not None:
        return {**sweep_record(inner), **{k: v for k, v in solver.record().items() if k not in inner.record()}}
    if isinstance(solver, IpoptSolver):
        o = solver.options
        return {"method": solver.method, "tol": o.tol, "max_iter": o.max_iter, "hessian": o.hessian,
                **({"ipopt": dict(o.ipopt)} if o.ipopt else {})}
    from ocp_resnet.solvers.newton import NewtonSolver
    from ocp_resnet.solvers.newton_cg import NewtonCGSolver
    from ocp_resnet.solvers.trainer import TorchSolver

    if isinstance(solver, (NewtonSolver, NewtonCGSolver)):
        return {"method": solver.name, "tol": solver.options.tol, "max_iter": solver.options.max_iter}
    if not isinstance(solver, TorchSolver):
        raise TypeError(f"a sweep records an IpoptSolver or a TorchSolver, got {type(solver).__name__}")
    from ocp_resnet.torch.train import TrainOptions

    train, default = solver.options, TrainOptions()
    first = ("optimizer", "epochs", "lr", "batch_size")
    rest = {f.name: getattr(train, f.name) for f in fields(TrainOptions)
            if f.name not in (*first, *TRAIN_SKIP, "seed") and getattr(train, f.name) != getattr(default, f.name)}
    grad_tol = solver.grad_tol
    return {**{k: getattr(train, k) for k in first}, "threads": solver.threads,
            **rest, **({} if grad_tol is None else {"grad_tol": grad_tol})}
