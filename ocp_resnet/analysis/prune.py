"""Physical pruning of vanished blocks, and the ``ocp-resnet prune`` pipeline.

A pruned identity-skip block disappears (x_{k+1} = x_k once F_k ≡ 0); a pruned projection
block keeps its S_k as a plain linear layer (``BlockSpec(branch="none")``: F_k ≡ 0, no
branch parameters). Stem and head are kept; the remaining blocks are renumbered, and a
per-block γ list loses the entries of the removed blocks. If the removed branches are
exactly zero, every output of the pruned network equals the original one.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ocp_resnet.analysis.blocks import DEFAULT_TOL, analyze, run_problem
from ocp_resnet.errors import ValidationError
from ocp_resnet.model import architecture as arch
from ocp_resnet.model.objective import ObjectiveSpec
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers import Backend, Solver, TorchSolver
from ocp_resnet.solvers.factory import solver_from_record


@dataclass
class PrunedNetwork:
    """A smaller spec + objective + weights, and where its blocks came from."""

    spec: arch.ArchSpec
    objective: ObjectiveSpec
    weights: dict[str, np.ndarray]
    removed: list[int]
    projection_only: list[int]
    origin: list[int]  # original index of every block of the pruned network


def prune_network(
    spec: arch.ArchSpec, objective: ObjectiveSpec, weights: Mapping[str, Any], blocks: Iterable[int]
) -> PrunedNetwork:
    """Remove the residual branches of ``blocks`` (original indices) physically."""
    cut = sorted(set(int(k) for k in blocks))
    bad = [k for k in cut if not 0 <= k < spec.n_blocks]
    if bad:
        raise ValidationError(f"blocks {bad} do not exist: the network has blocks 0..{spec.n_blocks - 1}")
    params = spec.unflatten(spec.flatten(weights))  # checked against the spec
    new_blocks: list[arch.BlockSpec] = []
    origin: list[int] = []
    removed: list[int] = []
    proj_only: list[int] = []
    for k, blk in enumerate(spec.blocks):
        if k in cut and not spec.has_projection(k):
            removed.append(k)
            continue
        if k in cut:
            proj_only.append(k)
            blk = arch.BlockSpec(blk.width, "none")
        new_blocks.append(blk)
        origin.append(k)
    new_spec = replace(spec, blocks=tuple(new_blocks))
    new_params: dict[str, np.ndarray] = {}
    for name in new_spec.param_shapes():
        if name.startswith("block"):
            idx, rest = name[len("block"):].split(".", 1)
            src = f"block{origin[int(idx)]}.{rest}"
        else:
            src = name
        new_params[name] = np.array(params[src], dtype=float, copy=True)
    gamma = objective.gamma
    if isinstance(gamma, tuple):
        gamma = tuple(gamma[k] for k in origin)
    new_obj = replace(objective, gamma=gamma)
    return PrunedNetwork(new_spec, new_obj, new_params, removed, proj_only, origin)


def prune_problem(problem: Problem, weights: Mapping[str, Any] | np.ndarray, blocks: Iterable[int]) -> tuple[Any, PrunedNetwork]:
    """The pruned :class:`~ocp_resnet.model.problem.Problem` (same data) and the pruned network."""
    from ocp_resnet.model.problem import Problem

    net = prune_network(problem.spec, problem.objective, problem.params(weights), blocks)
    return Problem(net.spec, net.objective, problem.data), net


def max_output_change(problem: Problem, weights: Any, pruned_problem: Problem, pruned_weights: Any) -> float:
    """max_i,j |ŷ_N(pruned) − ŷ_N(original)| over the problem's data."""
    a = problem.stage_outputs(weights)[-1]
    b = pruned_problem.stage_outputs(pruned_weights)[-1]
    return float(np.max(np.abs(a - b))) if a.size else 0.0


@dataclass
class PruneReport:
    """What ``prune`` did and what it cost."""

    tol: float
    blocks_before: int
    blocks_after: int
    removed: list[int]
    projection_only: list[int]
    objective_before: float
    objective_after: float
    accuracy_before: float
    accuracy_after: float
    final_loss_before: float
    final_loss_after: float
    max_output_change: float
    resolve: dict[str, Any] | None = None
    out: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``prune.json``)."""
        return asdict(self)

    def format(self) -> str:
        """The report as text lines."""
        lines = [
            f"blocks_before {self.blocks_before}  blocks_after {self.blocks_after}  "
            f"(removed {self.removed or 'none'}"
            f"{f'; reduced to projection {self.projection_only}' if self.projection_only else ''})",
            f"objective_before {self.objective_before:.10g}  objective_after {self.objective_after:.10g}",
            f"accuracy_before {self.accuracy_before:.4f}  accuracy_after {self.accuracy_after:.4f}",
            f"final_loss_before {self.final_loss_before:.6g}  final_loss_after {self.final_loss_after:.6g}",
            f"max output change on the data {self.max_output_change:.3e}",
        ]
        if self.resolve:
            r = self.resolve
            lines.append(
                f"re-solved ({r['backend']}): status {r['status']}, objective {r['objective']:.10g}, "
                f"accuracy {r['accuracy']:.4f}, {r.get('iterations', 0)} iterations, {r['time_s']:.2f}s"
            )
        lines += [f"note: {n}" for n in self.notes]
        if self.out:
            lines.append(f"run directory: {self.out}")
        return "\n".join(lines)


def torch_available() -> bool:
    """Whether the torch back-end (``ocp_resnet.torch``) exists in this installation."""
    import importlib.util

    try:
        return importlib.util.find_spec("ocp_resnet.torch") is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Resolved:
    """A re-solve of the pruned network: report line, weights, stats, solver config and extra files."""

    info: dict[str, Any]
    weights: Mapping[str, Any]
    stats: dict[str, Any]
    solver: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)


def _info(backend: Backend, method: str, status: str, objective: float, accuracy: float, grad_norm: Any,
          iterations: int, time_s: float, **message: str) -> dict[str, Any]:
    """The ``resolve`` entry of the report (``message``: the status message, IPOPT only)."""
    return {"backend": backend, "method": method, "status": status, **message, "objective": objective,
            "accuracy": accuracy, "grad_norm": grad_norm, "iterations": iterations, "time_s": time_s}


def _resolve_with(pruned: Problem, weights: Mapping[str, Any], solver: Solver, log: Any) -> Resolved:
    """Re-solve (IPOPT) or fine-tune (torch) the pruned network, warm-started from its weights."""
    from ocp_resnet.runs import multiplier_files

    seed = solver.options.seed if isinstance(solver, TorchSolver) else 0
    sol = solver.solve(pruned, dict(weights), seed, log)
    casadi = solver.backend == "casadi"
    message = {"status_message": sol.status.message} if casadi else {}
    time_s = sol.build_time_s + sol.solve_time_s if casadi else sol.solve_time_s
    info = _info(solver.backend, sol.method, sol.status.value, sol.objective, sol.evaluation.train_accuracy,
                 sol.grad_norm, sol.iterations, time_s, **message)
    record = {**solver.record(), "init": "pruned weights"} if casadi else solver.record()
    return Resolved(info, sol.weights, sol.stats, record, multiplier_files(sol) if casadi else {})


def resolve_solver(backend: str, solver: Mapping[str, Any]) -> Solver:
    """The re-solve solver of a run's ``config["solver"]``: its own options, with the defaults
    of a prune re-solve (IPOPT: exact Hessian; torch: 50 epochs) where the run recorded none."""
    defaults = {"hessian": "exact"} if backend == "casadi" else {"epochs": 50}
    return solver_from_record(solver, backend, defaults)


def _resolve(pruned: Any, weights: Mapping[str, Any], backend: str, solver: Mapping[str, Any], log: Any) -> Resolved:
    """Re-solve the pruned network with the back-end and options the run was solved with."""
    if backend == "torch" and not torch_available():
        raise ValidationError(
            "resolve=True on a torch run needs the torch back-end (ocp_resnet.torch), which is not "
            "installed here; prune with resolve=False, or re-solve the pruned run with IPOPT "
            "(init=PRUNED_RUN_DIR and the run's problem settings)"
        )
    return _resolve_with(pruned, weights, resolve_solver(backend, solver), log)


def prune_report(problem: Problem, w: Mapping[str, Any], an: Any, pruned: Any, net: PrunedNetwork) -> PruneReport:
    """The report of pruning ``net`` out of ``problem`` (weights ``w``, analysis ``an``), with its notes."""
    from ocp_resnet.model.evaluation import evaluate

    ev0, ev1 = evaluate(problem, w, gradient=False), evaluate(pruned, net.weights, gradient=False)
    report = PruneReport(
        tol=an.tol, blocks_before=problem.spec.n_blocks, blocks_after=net.spec.n_blocks, removed=net.removed,
        projection_only=net.projection_only, objective_before=ev0.objective, objective_after=ev1.objective,
        accuracy_before=ev0.train_accuracy, accuracy_after=ev1.train_accuracy,
        final_loss_before=ev0.final_loss, final_loss_after=ev1.final_loss,
        max_output_change=max_output_change(problem, w, pruned, net.weights),
    )
    if not an.vanished:
        report.notes.append(f"no block has vanished at tol {an.tol:g}: the pruned network is the original one "
                            f"(see the analysis for the relative norms, or use tol > {an.tol:g})")
    if any(g > 0 for g in problem.objective.stage_weights(problem.spec.n_blocks)[:-1]) and net.removed:
        report.notes.append(
            "objective_after has fewer stage-cost terms (one per remaining block), so it is lower than "
            "objective_before even when the outputs are unchanged"
        )
    return report


def prune_run(
    run_dir: str | os.PathLike,
    tol: float = DEFAULT_TOL,
    resolve: bool = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    write: bool = True,
    log: Any = None,
) -> tuple[PruneReport, Any, dict[str, np.ndarray]]:
    """Prune the vanished blocks of a run directory; optionally re-solve; write a new run.

    Returns the report, the pruned problem and the final (pruned, possibly re-solved) weights.
    """
    from ocp_resnet.runs import Run, check_target

    run = Run(run_dir)
    problem, _ = run_problem(run)
    backend = str(run.config.get("solver", {}).get("backend", "casadi"))
    if write:
        if out is None:
            out = Path(str(run.path).rstrip("/") + "-pruned")
        check_target(out, overwrite)
    w = problem.params(run.weights)
    an = analyze(problem, w, tol)
    pruned, net = prune_problem(problem, w, an.vanished)
    report = prune_report(problem, w, an, pruned, net)
    done: Resolved | None = None
    if resolve:
        done = _resolve(pruned, net.weights, backend, run.config.get("solver", {}), log)
        report.resolve = done.info
    final_w = net.weights if done is None else pruned.params(done.weights)
    if write:
        report.out = str(out)
        _write_pruned(out, run, problem, net, an, report, final_w, pruned, done, backend, overwrite)
    return report, pruned, final_w


def _write_pruned(out: Any, run: Any, problem: Problem, net: PrunedNetwork, an: Any, report: PruneReport,
                  final_w: Mapping[str, Any], pruned: Any, done: Resolved | None, backend: str,
                  overwrite: bool) -> None:
    """The pruned run directory: the original config with the pruned network, and its metrics."""
    from ocp_resnet.model.evaluation import evaluate
    from ocp_resnet.runs import write_run

    solver = dict(run.config.get("solver", {})) if done is None else done.solver
    config = dict(run.config)
    config.update(
        command="prune", architecture=net.spec.to_dict(), objective=net.objective.to_dict(), solver=solver,
        pruned_from=str(run.path),
        pruning={"tol": an.tol, "removed": net.removed, "projection_only": net.projection_only,
                 "origin": net.origin, "resolve": done is not None},
    )
    config.pop("versions", None)
    status = str(run.metrics.get("status", "unknown")) if done is None else done.info["status"]
    # the run's status, or the re-solve's; no status message: the pruned weights were not solved for
    metrics = {**evaluate(pruned, final_w, gradient=False).metrics(), "status": status, "pruned": True,
               "pruned_from": str(run.path), "backend": solver.get("backend", backend)}
    write_run(out, config=config, weights=final_w, metrics=metrics, data=problem.data,
              stats={} if done is None else (done.stats or {}),
              extra_files={"prune.json": report.to_dict(), **({} if done is None else done.files)},
              overwrite=overwrite)
