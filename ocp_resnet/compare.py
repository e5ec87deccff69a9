"""Solver vs SGD on one MLP problem: traces, time-to-target, per-block profiles, polish.

Every optimizer starts from the same float64 weights. IPOPT's trace comes from its iteration
callback (the weights of each iterate, evaluated afterwards, so recording does not distort the
clock); the torch optimizers are :class:`~ocp_resnet.torch.Trainer` runs (full batch, constant
learning rate, the Trainer's defaults unless ``lr`` says otherwise) whose step callback records
J and ‖∇J‖ of every iterate and applies the stopping rule of :class:`_Recorder`.

Each optimizer is timed alone in a warm process: before its timed run it makes a short untimed
run on the same problem (:func:`_warm_up`: two torch steps, or an IPOPT solve stopped after two
iterations), so one-off costs of the process — torch's first-step start-up, CasADi's per-sample
functions that every later build reuses — are charged to no optimizer, whichever runs first.
What stays on each clock is that run's own work: IPOPT's clock starts before it builds this
problem's NLP, a torch clock before the Trainer sets up its tensors and optimizer.

    cmp = compare(problem, optimizers=("ipopt-ms", "adam"), epochs=2000)
    cmp.results["adam"].time_to_target[1e-3]
"""
from __future__ import annotations

import math
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.errors import ValidationError, check_float, check_int
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers.base import Method
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.torch.train import StepInfo

IPOPT_OPTIMIZERS: dict[str, Method] = {"ipopt-ms": "multiple-shooting", "ipopt-ss": "single-shooting"}
#: The optimizers of :class:`~ocp_resnet.torch.Trainer` that compare runs, in table order (named
#: here so that importing this module needs no torch). AdamW is left out: its steps leave the
#: λ-term out of the gradient, so they carry no ‖∇J‖ for the trace.
TORCH_OPTIMIZERS = ("adam", "sgd", "lbfgs")
OPTIMIZERS = tuple(IPOPT_OPTIMIZERS) + TORCH_OPTIMIZERS
DEFAULT_OPTIMIZERS = OPTIMIZERS
#: L-BFGS memory of the comparison (the Trainer's default keeps 50 pairs).
LBFGS_HISTORY = 20
#: A torch run stops at an iterate whose gradient norm is below this (``success``).
GRAD_STOP = 1e-10


@dataclass
class Trace:
    """Objective J(w_j) and ‖∇J(w_j)‖ of each iterate j, with the wall time at which it existed."""

    time_s: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)

    def time_to(self, level: float) -> float | None:
        """Wall time at which the objective first reached ``level`` (None if never)."""
        for t, f in zip(self.time_s, self.objective):
            if f <= level:
                return t
        return None


@dataclass
class OptimizerResult:
    """One optimizer's outcome on the shared problem."""

    optimizer: str
    final_objective: float
    final_grad_norm: float
    train_accuracy: float
    wall_time_s: float
    iterations: int
    status: Status
    block_norms: list[float]
    stage_losses: list[float]
    trace: Trace
    w: np.ndarray
    time_to_target: dict[float, float | None] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat record for compare.json / compare.csv (no trace, no weights)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("trace", "w", "time_to_target")}
        d["status"] = self.status.value
        d["time_to_target"] = {f"{t:g}": v for t, v in self.time_to_target.items()}
        return d


@dataclass
class Comparison:
    """All results, the best objective found, pairwise distances and the IPOPT polish of Adam."""

    results: dict[str, OptimizerResult]
    best_objective: float
    targets: list[float]
    distances: dict[str, dict[str, float]]
    polish: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """compare.json: rows, traces, distances and polish."""
        return {
            "best_objective": self.best_objective,
            "targets": self.targets,
            "optimizers": {k: r.row() for k, r in self.results.items()},
            "traces": {k: asdict(r.trace) for k, r in self.results.items()},
            "function_space_distance": self.distances,
            "polish": self.polish,
        }


def _check(optimizers: Sequence[str], targets: Sequence[float]) -> None:
    if not optimizers:
        raise ValidationError(f"no optimizers given: use some of {', '.join(OPTIMIZERS)}")
    for o in optimizers:
        if o not in OPTIMIZERS:
            raise ValidationError(f"unknown optimizer {o!r}: use one of {', '.join(OPTIMIZERS)}")
    for t in targets:
        check_float("target", t, 0.0, strict=True)


def _run_ipopt(problem: Problem, method: Method, w0: np.ndarray, max_iter: int, tol: float) -> OptimizerResult:
    from ocp_resnet.model.evaluation import objective_and_gradient
    from ocp_resnet.solvers import IpoptOptions, IpoptSolver

    iterates: list[tuple[float, np.ndarray]] = []

    def record(info: Any) -> None:
        iterates.append((info.wall_s, info.w))

    sol = IpoptSolver(method, IpoptOptions(tol=tol, max_iter=max_iter), callback=record).solve(problem, w0)
    if sol.status is Status.INTERRUPTED:  # Ctrl-C ends the whole comparison, as in a torch run
        raise KeyboardInterrupt
    trace = Trace()
    for t, w in iterates:  # evaluated after the solve, off the clock; the clock includes building
        J, g = objective_and_gradient(problem, w)
        trace.time_s.append(sol.build_time_s + t)
        trace.objective.append(J)
        trace.grad_norm.append(float(np.linalg.norm(g)))
    ev = sol.evaluation
    return OptimizerResult(
        f"ipopt-{'ms' if method == 'multiple-shooting' else 'ss'}", ev.objective, sol.grad_norm,
        ev.stage_accuracy[-1], sol.build_time_s + sol.solve_time_s, sol.iterations, sol.status,
        ev.block_norms, ev.stage_losses, trace, sol.w,
    )


def _run_torch(problem: Problem, name: str, w0: np.ndarray, steps: int, lr: float | None) -> OptimizerResult:
    """Full-batch torch training of ``name`` from ``w0`` for ``steps`` steps (L-BFGS: iterations)."""
    import torch

    # Tiny tensors: intra-op threads only add synchronisation (measured 7 ms vs 47 ms per
    # Adam step on the default problem with 2 threads on a loaded 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(problem, name, w0, steps, lr)
    finally:
        torch.set_num_threads(threads)


def _train(problem: Problem, name: str, w0: np.ndarray, steps: int, lr: float | None) -> OptimizerResult:
    """A :class:`~ocp_resnet.solvers.TorchSolver` run in float64, full batch, constant rate; the
    trace by its step callback.

    The solver feeds the inputs as ``problem.U.T``, a view of the CasADi layout (the layout
    decides how the products round). The Trainer holds the targets as sample rows: against a loop
    holding them as class columns (the CasADi layout), a few cross-entropy gradient entries round
    differently in the last bit, so long runs drift apart slowly; MSE gradients are the same bit
    for bit (the documented comparisons reproduce exactly).
    """
    from ocp_resnet.model.evaluation import evaluate
    from ocp_resnet.solvers import TorchSolver
    from ocp_resnet.torch import TrainOptions

    # L-BFGS: up to lbfgs_iter (20) iterations per step() call, one trace point each; ``steps``
    # caps the total iterations, so ``steps`` calls are an upper bound. (max_iter=1 per call
    # stalls: torch's L-BFGS stopped improving after ~40 calls on the default problem, J stuck
    # at 0.3437 with |∇J| = 0.18.)
    opts = TrainOptions(optimizer=name, lr=lr, epochs=steps, batch_size=0, schedule="constant", device="cpu",
                        dtype="float64", lbfgs_history=LBFGS_HISTORY, progress=False)
    rec = _Recorder(problem, w0, name, steps)
    sol = TorchSolver(opts, callback=rec).solve(problem, init=w0)
    if sol.stats.get("stopped_by") == "SIGINT":  # Ctrl-C ends the whole comparison, as in an IPOPT run
        raise KeyboardInterrupt
    rec.finish()
    ev = evaluate(problem, sol.w)
    assert ev.grad_norm is not None  # evaluate(..., gradient=True)
    status = rec.status or (Status.NAN if sol.status is Status.NAN else Status.MAX_ITER)
    return OptimizerResult(name, ev.objective, ev.grad_norm, ev.train_accuracy, rec.wall_s, sol.iterations,
                           status, ev.block_norms, ev.stage_losses, rec.trace, sol.w)


def _grad_norm(params: Sequence[Any]) -> float:
    """‖∇J‖ from the parameters' ``.grad`` (in parameter order, the sum the traces always used)."""
    import torch

    return float(torch.sqrt(sum((p.grad**2).sum() for p in params if p.grad is not None)))


class _Recorder:
    """The ``Trainer.fit`` callback of :func:`_train`: the trace of J and ‖∇J‖, and when to stop.

    An Adam/SGD step computes J(w_k) and ∇J(w_k) and moves to w_{k+1} in one go, so its callback
    records the iterate *before* the step (from the step's own J and gradient: no extra
    evaluation), and :meth:`finish` adds the final weights. L-BFGS steps are recorded at the
    iterate they accepted (one evaluation each, as its line search leaves ``.grad`` at a trial).
    A run stops at a non-finite J (``nan``), at ‖∇J‖ < :data:`GRAD_STOP` (``success``), when an
    L-BFGS step did not lower J (``stalled``) or at ``steps`` iterations (``max_iter``). Adam and
    SGD learn of such an iterate after the step that leaves it, so they stop one step later than
    they would checking before every step (same trajectory and trace up to that iterate).
    """

    def __init__(self, problem: Problem, w0: np.ndarray, name: str, steps: int) -> None:
        import torch

        from ocp_resnet.torch import ResNetMLP, StageCostLoss

        # the model being trained is bound at its first step (the solver builds it); until then a
        # twin at the same start weights gives L-BFGS's shared start point
        self.model: Any = ResNetMLP(problem.spec, init=problem.params(w0), dtype=torch.float64)
        self.lbfgs, self.steps, self.bound = name == "lbfgs", steps, False
        self.params = list(self.model.parameters())  # listed once: walking the modules every step costs
        self.loss = StageCostLoss(problem.objective, problem.data.n_classes)
        self.X = torch.as_tensor(problem.U.T, dtype=torch.float64)
        self.T = torch.as_tensor(problem.T.T, dtype=torch.float64)
        self.trace = Trace()
        self.status: Status | None = None
        self.t0 = time.perf_counter()
        self.wall_s = 0.0
        if self.lbfgs:
            self._add(*self._evaluate())  # the shared start point

    def _evaluate(self) -> tuple[float, float]:
        """J and ‖∇J‖ at the model's current weights (full batch, autograd)."""
        self.model.zero_grad()
        J, _ = self.loss(self.model, self.X, self.T)
        J.backward()
        return float(J.detach()), _grad_norm(self.params)

    def _add(self, J: float, gnorm: float) -> bool:
        """Record one iterate; True (and ``status`` set) when it ends the run."""
        prev = self.trace.objective[-1] if self.trace.objective else None
        self.trace.time_s.append(time.perf_counter() - self.t0)
        self.trace.objective.append(J)
        self.trace.grad_norm.append(gnorm)
        if self.status is None:
            if not math.isfinite(J):
                self.status = Status.NAN
            elif gnorm < GRAD_STOP:
                self.status = Status.SUCCESS
            elif self.lbfgs and prev is not None and J >= prev:  # no progress in a whole L-BFGS step
                self.status = Status.STALLED
        return self.status is not None

    def __call__(self, info: StepInfo) -> bool:
        """Record the iterate of this step; True stops the Trainer."""
        if not self.bound:
            self.model, self.params, self.bound = info.model, list(info.model.parameters()), True
        if self.lbfgs:
            return self._add(*self._evaluate()) or info.step >= self.steps
        return self._add(info.objective, _grad_norm(self.params))

    def finish(self) -> None:
        """Add the final weights of an Adam/SGD run to the trace; stop the clock."""
        if not self.lbfgs:
            self._add(*self._evaluate())
        self.wall_s = time.perf_counter() - self.t0


#: Steps (IPOPT: iterations) of the untimed warm-up run before each timed run.
WARMUP_STEPS = 2


def _warm_up(problem: Problem, name: str, w0: np.ndarray, tol: float, lr: float | None) -> None:
    """A short untimed run of ``name`` on ``problem``, so that the timed run starts in a warm process.

    The first ``torch.optim`` optimizer built in a process imports ``torch._dynamo`` (seconds:
    docs/comparison.md gives the first trace points with and without it), and the
    first CasADi build of a structure pays for the per-sample functions that later builds reuse.
    Without this, whichever optimizer ran first carried them.
    """
    if name in IPOPT_OPTIMIZERS:
        from ocp_resnet.solvers import IpoptOptions, IpoptSolver

        IpoptSolver(IPOPT_OPTIMIZERS[name], IpoptOptions(tol=tol, max_iter=WARMUP_STEPS)).solve(problem, w0)
    else:
        _run_torch(problem, name, w0, WARMUP_STEPS, lr)


def _run_one(problem: Problem, name: str, w0: np.ndarray, epochs: int, max_iter: int, tol: float,
             lr: float | None) -> OptimizerResult:
    """One optimizer of :func:`compare`, as a task for :mod:`ocp_resnet.parallel` (any process):
    an untimed warm-up run (:func:`_warm_up`), then the timed run."""
    _warm_up(problem, name, w0, tol, lr)
    if name in IPOPT_OPTIMIZERS:
        return _run_ipopt(problem, IPOPT_OPTIMIZERS[name], w0, max_iter, tol)
    return _run_torch(problem, name, w0, epochs, lr)


def function_space_distance(problem: Problem, wa: np.ndarray, wb: np.ndarray) -> float:
    """RMS difference of the final outputs ŷ_N of two weight vectors on the problem's data."""
    za, zb = problem.stage_outputs(wa)[-1], problem.stage_outputs(wb)[-1]
    return float(np.sqrt(np.mean((za - zb) ** 2)))


def compare(
    problem: Problem,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    *,
    epochs: int = 2000,
    max_iter: int = 3000,
    tol: float = 1e-8,
    targets: Sequence[float] = (1e-3, 1e-6),
    lr: dict[str, float] | None = None,
    seed: int = 0,
    polish: bool = True,
    log: Any = None,
    jobs: int = 1,
    scheduler: Any = None,
) -> Comparison:
    """Run every optimizer from the same initial weights and compare (see module docstring).

    Each optimizer's timed run follows an untimed warm-up run of it on the same problem, in the
    process that times it, so every trace starts at its own first iterate rather than at the
    process' start-up costs.

    ``jobs`` worker processes (-1: all cores) or a Dask ``scheduler`` run the optimizers at
    once (:mod:`ocp_resnet.parallel`): the same iterates and objectives, but the wall times
    (and so time-to-target) are then measured while the optimizers share the machine.
    """
    from ocp_resnet import parallel
    from ocp_resnet.solvers import initial_weights

    _check(optimizers, targets)
    epochs = check_int("epochs", epochs, 1)
    max_iter = check_int("max_iter", max_iter, 1)
    parallel.n_jobs(jobs)
    w0 = initial_weights(problem, "random", seed)
    results: dict[str, OptimizerResult] = {}
    tasks = [(problem, name, w0, epochs, max_iter, tol, (lr or {}).get(name)) for name in optimizers]
    with parallel.executor(jobs, scheduler) as ex:
        if log:
            log(f"running {', '.join(optimizers)}" + (f" on {parallel.workers(ex)} workers" if parallel.workers(ex) > 1
                                                      else "") + " ...")
        try:
            for name, r in zip(optimizers, parallel.imap(ex, _run_one, tasks)):
                results[name] = r
                if log:
                    log(f"  {name}: J = {r.final_objective:.10g}, |grad| = {r.final_grad_norm:.2e}, "
                        f"{r.iterations} iterations, {r.wall_time_s:.2f} s ({r.status.value})")
        except KeyboardInterrupt:  # workers ignore Ctrl-C between runs: end them
            parallel.signal_workers(ex, signal.SIGTERM)
            raise
    finite = [min(r.trace.objective + [r.final_objective]) for r in results.values()]
    finite = [f for f in finite if math.isfinite(f)]
    best = min(finite) if finite else float("nan")
    for r in results.values():
        r.time_to_target = {float(t): r.trace.time_to(best + t) for t in targets}
    names = list(results)
    dist = {a: {b: function_space_distance(problem, results[a].w, results[b].w) for b in names} for a in names}
    pol = polish_solution(problem, results["adam"].w, tol, max_iter) if polish and "adam" in results else None
    return Comparison(results, best, [float(t) for t in targets], dist, pol)


def polish_solution(problem: Problem, w: np.ndarray, tol: float = 1e-8, max_iter: int = 3000,
                    method: Method = "multiple-shooting") -> dict[str, Any]:
    """Run IPOPT from SGD weights ``w`` to KKT ``tol``; report how far it moved."""
    from ocp_resnet.model.evaluation import objective_and_gradient
    from ocp_resnet.solvers import IpoptOptions, IpoptSolver

    J0, g0 = objective_and_gradient(problem, w)
    sol = IpoptSolver(method, IpoptOptions(tol=tol, max_iter=max_iter)).solve(problem, w)
    return {
        "start": "adam",
        "objective_before": J0,
        "objective_after": sol.objective,
        "objective_improvement": J0 - sol.objective,
        "grad_norm_before": float(np.linalg.norm(g0)),
        "grad_norm_after": sol.grad_norm,
        "iterations": sol.iterations,
        "status": sol.status.value,
        "solve_time_s": sol.solve_time_s,
        "function_space_distance": function_space_distance(problem, w, sol.w),
    }


CSV_COLUMNS = ("optimizer", "final_objective", "final_grad_norm", "train_accuracy", "wall_time_s", "iterations",
               "status")


def to_csv(cmp: Comparison) -> str:
    """compare.csv: one row per optimizer (time-to-target columns per target, profiles as ;-lists)."""
    cols = list(CSV_COLUMNS) + [f"time_to_target_{t:g}" for t in cmp.targets] + ["block_norms", "stage_losses"]
    lines = [",".join(cols)]
    for r in cmp.results.values():
        vals = [r.optimizer, f"{r.final_objective:.12g}", f"{r.final_grad_norm:.6g}", f"{r.train_accuracy:.6g}",
                f"{r.wall_time_s:.6g}", str(r.iterations), r.status.value]
        vals += ["" if r.time_to_target[t] is None else f"{r.time_to_target[t]:.6g}" for t in cmp.targets]
        vals += [";".join(f"{v:.6g}" for v in r.block_norms), ";".join(f"{v:.6g}" for v in r.stage_losses)]
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_objective_gap(cmp: Comparison, path: Any) -> None:
    """Objective gap J − best J against wall time, log-log, one line per optimizer."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in cmp.results.items():
        t = np.asarray(r.trace.time_s)
        gap = np.asarray(r.trace.objective) - cmp.best_objective
        keep = (t > 0) & (gap > 0) & np.isfinite(gap)
        if keep.any():
            ax.loglog(t[keep], gap[keep], label=name)
    for i, tgt in enumerate(cmp.targets):  # the gaps time_to_target is measured at
        ax.axhline(tgt, color="grey", lw=0.7, ls=(0, (1, 1 + 2 * i)), label=f"target gap {tgt:g}")
    ax.set(xlabel="wall time [s]", ylabel="J(w) − best J", title="objective gap against time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_profiles(cmp: Comparison, path: Any) -> None:
    """Per-block weight norms and stage losses of every optimizer, overlaid."""
    plt = _pyplot()
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    markers = "osD^vx+"
    for i, (name, r) in enumerate(cmp.results.items()):
        # shrinking markers and alternating dashes keep optimizers that reach the same point visible
        style = {"marker": markers[i % len(markers)], "ms": max(9 - 1.5 * i, 3), "ls": "-" if i % 2 == 0 else "--",
                 "label": name}
        ax[0].semilogy(range(len(r.block_norms)), np.maximum(r.block_norms, 1e-16), **style)
        ax[1].semilogy(range(len(r.stage_losses)), np.maximum(r.stage_losses, 1e-16), **style)
    ax[0].set(xlabel="block k", ylabel="‖w_k‖", title="per-block weight norms")
    ax[1].set(xlabel="stage k", ylabel="ℓ(ŷ_k)", title="stage losses")
    from matplotlib.ticker import MaxNLocator

    for a in ax:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FIGURES = {"objective_gap.png": plot_objective_gap, "profiles.png": plot_profiles}


def format_summary(cmp: Comparison) -> str:
    """A text table of the comparison."""
    tt = "".join(f" {'t(+' + format(t, 'g') + ')':>10}" for t in cmp.targets)
    lines = [f"{'optimizer':<9} {'objective':>15} {'|grad|':>9} {'acc':>6} {'time s':>8} {'iters':>6}{tt}  status"]
    for r in cmp.results.values():
        tts = "".join(f" {'-' if r.time_to_target[t] is None else format(r.time_to_target[t], '.3g'):>10}"
                      for t in cmp.targets)
        lines.append(f"{r.optimizer:<9} {r.final_objective:>15.10f} {r.final_grad_norm:>9.2e} {r.train_accuracy:>6.3f} "
                     f"{r.wall_time_s:>8.2f} {r.iterations:>6}{tts}  {r.status.value}")
    if cmp.polish:
        p = cmp.polish
        lines.append(f"polish (IPOPT from adam): J {p['objective_before']:.10f} -> {p['objective_after']:.10f} "
                     f"(improvement {p['objective_improvement']:.3e}), |grad| {p['grad_norm_before']:.2e} -> "
                     f"{p['grad_norm_after']:.2e}, {p['iterations']} iterations ({p['status']})")
    return "\n".join(lines)
