"""Torch training as a :class:`~ocp_resnet.solvers.base.Solver`: the one MLP training set-up.

Torch training has no optimality certificate, so its status is ``Status.SUCCESS`` only when the
final full-batch gradient norm is below ``grad_tol`` (default
:data:`ocp_resnet.torch.evaluate.GRAD_TOL`), ``Status.NAN`` when training diverged,
``Status.INTERRUPTED`` after Ctrl-C or a callback's stop, and ``Status.MAX_ITER`` (ran out of
epochs) otherwise. The MLP is float64, so its numbers are those of the CasADi evaluation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ocp_resnet.errors import ValidationError, check_float, check_int
from ocp_resnet.solvers.base import Backend, Init, Log
from ocp_resnet.solvers.solution import Solution

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.torch.train import StepCallback, TrainOptions


def _default_options() -> TrainOptions:
    from ocp_resnet.torch.train import TrainOptions

    return TrainOptions(progress=False)


def require_torch() -> None:
    """Raise unless the torch back-end can train (it is an optional part of some installs)."""
    try:
        from ocp_resnet.torch import Trainer  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ValidationError("the torch back-end (ocp_resnet.torch) is not available in this installation: "
                              "use the CasADi back-end (backend='casadi')") from None


@dataclass(frozen=True)
class TorchSolver:
    """Train the MLP of a problem with :class:`~ocp_resnet.torch.Trainer` (float64, CPU or GPU).

    ``options``: the optimizer, learning rate, epochs, batch size ...; the ``seed`` given to
    :meth:`solve` replaces ``options.seed`` (it seeds the initial weights, the batches and the
    optimizer). ``grad_tol``: the gradient norm below which a training counts as converged
    (``None``: :data:`ocp_resnet.torch.evaluate.GRAD_TOL`). ``threads``: torch CPU threads during
    the training (``None``: torch's choice). ``callback``: :meth:`Trainer.fit`'s step callback.
    """

    options: TrainOptions = field(default_factory=_default_options)
    grad_tol: float | None = None
    threads: int | None = None
    callback: StepCallback | None = None

    def __post_init__(self) -> None:
        if self.grad_tol is not None:
            check_float("grad_tol", self.grad_tol, 0.0)
        if self.threads is not None:
            check_int("threads", self.threads, 1)

    @property
    def backend(self) -> Backend:
        """Always ``"torch"``."""
        return "torch"

    @property
    def name(self) -> str:
        """``torch/<optimizer>``."""
        return f"torch/{self.options.optimizer}"

    @property
    def tolerance(self) -> float:
        """The gradient-norm tolerance in force."""
        from ocp_resnet.torch.evaluate import GRAD_TOL

        return GRAD_TOL if self.grad_tol is None else float(self.grad_tol)

    def solve(self, problem: Problem, init: Init = "random", seed: int = 0, log: Log | None = None) -> Solution:
        """Train from ``init`` (random weights of ``seed``, or given weights)."""
        require_torch()
        import torch

        from ocp_resnet.solvers.init import initial_weights
        from ocp_resnet.torch import ResNetMLP, Trainer
        from ocp_resnet.torch.evaluate import mlp_evaluation, training_metrics, training_status

        opts = replace(self.options, seed=seed, progress=False)
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            torch.manual_seed(opts.seed)
            start: Any = "random" if isinstance(init, str) and init == "random" else \
                problem.params(initial_weights(problem, init, seed))
            model = ResNetMLP(problem.spec, init=start, seed=opts.seed, dtype=torch.float64)
            t0 = time.perf_counter()
            # the inputs as a view of the CasADi layout (problem.U), so the products round as there
            tr = Trainer(problem.objective, problem.data.n_classes, opts, log=log).fit(
                model, problem.U.T, problem.data.y, callback=self.callback)
            wall = time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)
        weights = model.weights()
        ev = mlp_evaluation(problem, weights)
        status = training_status(ev, tr.stopped_, self.tolerance)
        metrics = training_metrics(ev, status, self.tolerance)
        stats: dict[str, Any] = {"history": tr.history_[-5:], "steps": tr.steps_, "grad_tol": self.tolerance}
        if tr.stopped_by_:
            stats["stopped_by"] = tr.stopped_by_
        return Solution(
            weights=weights, w=problem.spec.flatten(weights), evaluation=ev, status=status,
            iterations=int(tr.steps_), build_time_s=0.0, solve_time_s=wall,
            n_variables=problem.spec.n_params, n_constraints=0, method=opts.optimizer, backend="torch",
            stats=stats, status_message=metrics["status_message"],
        )

    def record(self) -> dict[str, Any]:
        """``{"backend": "torch", **options, "grad_tol": ..., "threads": ...}``."""
        return {"backend": "torch", **self.options.to_dict(), "grad_tol": self.tolerance, "threads": self.threads}
