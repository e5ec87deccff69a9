"""How the analysis solves a problem: the back-end and its typed options, one dict boundary.

Sweeps, prune re-solves and fine-tunings pass :class:`SolverSettings` (typed
:class:`~ocp_resnet.solvers.IpoptOptions` or :class:`~ocp_resnet.torch.train.TrainOptions`).
Option dicts exist only at the edges: :meth:`SolverSettings.from_mapping` reads one (a run's
``config["solver"]``, a library caller's dict) and :meth:`SolverSettings.record` is what a
sweep writes to ``sweep.json``/``config.json``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from ..errors import check_choice, check_float, check_int
from ..solvers import IpoptOptions

if TYPE_CHECKING:
    from ..torch.train import TrainOptions

BACKENDS = ("casadi", "torch")
#: IpoptOptions fields an option dict passes on (a run config's ``jit``/``threads``/... are
#: how that run was solved, not settings of a re-solve)
IPOPT_KEYS = ("tol", "max_iter", "hessian", "ipopt")
#: TrainOptions fields an option dict leaves alone: the GPU switches and the progress bar are
#: how one training ran, not settings a sweep point or a fine-tuning inherits
_TRAIN_SKIP = ("progress", "compile", "amp", "channels_last")
#: torch fields :meth:`SolverSettings.record` always writes (the ``sweep`` command's flags)
_TRAIN_RECORD = ("optimizer", "epochs", "lr", "batch_size")


@dataclass(frozen=True)
class SolverSettings:
    """The back-end and its options for the solves of an analysis command.

    CasADi: ``method`` and ``ipopt`` (:class:`~ocp_resnet.solvers.IpoptOptions`); torch:
    ``train`` (:class:`~ocp_resnet.torch.train.TrainOptions`), ``grad_tol`` (the gradient norm
    below which a training counts as converged; ``None``: the torch back-end's default) and
    ``threads`` (torch CPU threads; ``None``: torch's choice).
    """

    method: str = "multiple-shooting"
    ipopt: IpoptOptions = field(default_factory=IpoptOptions)
    train: TrainOptions | None = None
    grad_tol: float | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        from ..transcription import METHODS

        check_choice("method", self.method, METHODS)
        if self.grad_tol is not None:
            check_float("grad_tol", self.grad_tol, 0.0)
        if self.threads is not None:
            check_int("threads", self.threads, 1)

    @property
    def backend(self) -> str:
        """``"torch"`` with training options, else ``"casadi"``."""
        return "casadi" if self.train is None else "torch"

    @classmethod
    def from_mapping(cls, backend: str, solver: Mapping[str, Any] | None) -> SolverSettings:
        """The settings of an option dict (the one place a dict becomes typed options).

        Entries that are ``None`` take the default; keys that are no option are ignored.
        """
        check_choice("backend", backend, BACKENDS)
        given = {k: v for k, v in dict(solver or {}).items() if v is not None}
        if backend == "casadi":
            return cls(method=str(given.get("method", "multiple-shooting")),
                       ipopt=IpoptOptions(**{k: given[k] for k in IPOPT_KEYS if k in given}))
        from ..torch.train import TrainOptions

        names = [f.name for f in fields(TrainOptions) if f.name not in _TRAIN_SKIP]
        train = TrainOptions(**{k: given[k] for k in names if k in given}, progress=False)
        return cls(train=train, grad_tol=float(given["grad_tol"]) if "grad_tol" in given else None,
                   threads=given.get("threads"))

    def with_seed(self, seed: int) -> SolverSettings:
        """The same settings with the torch training seeded by ``seed``."""
        return self if self.train is None else replace(self, train=replace(self.train, seed=seed))

    def record(self) -> dict[str, Any]:
        """The options as a sweep records them: the command's flags, then whatever else differs."""
        if self.train is None:
            o = self.ipopt
            return {"method": self.method, "tol": o.tol, "max_iter": o.max_iter, "hessian": o.hessian,
                    **({"ipopt": dict(o.ipopt)} if o.ipopt else {})}
        from ..torch.train import TrainOptions

        default = TrainOptions()
        rest = {f.name: getattr(self.train, f.name) for f in fields(TrainOptions)
                if f.name not in (*_TRAIN_RECORD, *_TRAIN_SKIP, "seed")
                and getattr(self.train, f.name) != getattr(default, f.name)}
        return {**{k: getattr(self.train, k) for k in _TRAIN_RECORD}, "threads": self.threads, **rest,
                **({} if self.grad_tol is None else {"grad_tol": self.grad_tol})}
