"""Sweeps over γ × depth × seed: one run directory per grid point and ``sweep.csv``.

The data set is drawn once (the base problem's); ``seeds`` are the seeds of the initial
weights. Every grid point writes ``runs/gamma{γ}-N{N}-seed{s}`` inside the sweep directory,
so any of them can be analysed, plotted or pruned later.
"""
from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.analysis.blocks import DEFAULT_TOL, analyze
from ocp_resnet.errors import ValidationError, check_choice, check_float, check_int
from ocp_resnet.model import architecture as arch
from ocp_resnet.solvers import Solver
from ocp_resnet.solvers.factory import BACKENDS, solver_from_record, sweep_record
from ocp_resnet.status import Status

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem

#: Columns of ``sweep.csv`` (lists are ';'-joined).
COLUMNS = (
    "gamma", "blocks", "seed", "backend", "status", "objective", "final_loss", "train_accuracy",
    "n_vanished", "n_active", "tail_to_head", "recommended_depth", "grad_norm", "iterations", "time_s",
    "stage_losses", "block_norms", "run_dir", "collapsed", "val_accuracy",
)
LIST_COLUMNS = ("stage_losses", "block_norms")


def grid_problem(base: Any, gamma: float, n_blocks: int) -> Any:
    """The base problem with one stage weight γ for all stages and ``n_blocks`` uniform blocks."""
    from ocp_resnet.model.problem import Problem

    spec = base.spec
    if len(set(spec.widths)) != 1:
        raise ValidationError("a depth sweep needs one state width (no projections): give width as one number")
    blk = spec.blocks[0] if spec.blocks else arch.BlockSpec(spec.stem_width)
    new_spec = replace(spec, blocks=tuple(arch.BlockSpec(spec.stem_width, blk.branch, blk.hidden) for _ in range(n_blocks)))
    return Problem(new_spec, replace(base.objective, gamma=float(gamma)), base.data)


def run_name(gamma: float, n_blocks: int, seed: int) -> str:
    """The run directory name of one grid point."""
    return f"gamma{gamma:g}-N{n_blocks}-seed{seed}"


def _fmt(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ";".join(f"{float(x):.10g}" for x in v)
    if isinstance(v, float):
        return f"{v:.12g}"
    return v


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = COLUMNS) -> Path:
    """Write rows atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        wr.writeheader()
        for r in rows:
            wr.writerow({k: _fmt(r.get(k, "")) for k in columns})
    os.replace(tmp, path)
    return path


def read_csv(path: str | os.PathLike, list_columns: Sequence[str] = LIST_COLUMNS,
             text_columns: Sequence[str] = ("status", "backend", "run_dir"),
             int_columns: Sequence[str] = ("blocks", "seed", "n_vanished", "n_active", "recommended_depth",
                                           "iterations"),
             number: Callable[[str], Any] = float, command: str = "ocp-resnet sweep") -> list[dict[str, Any]]:
    """Read ``sweep.csv`` back with numbers parsed (``number`` for the columns not named) and list
    columns as lists."""
    path = Path(path)
    if path.is_dir():
        path = path / "sweep.csv"
    if not path.exists():
        raise ValidationError(f"{path} does not exist: give a sweep directory written by '{command}'")
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in r.items():
                if k in list_columns:
                    row[k] = [float(x) for x in v.split(";")] if v else []
                elif k in int_columns:
                    row[k] = int(v) if v not in ("", None) else 0
                elif k in text_columns:
                    row[k] = v
                else:
                    try:
                        row[k] = number(v)
                    except (TypeError, ValueError, AttributeError):
                        row[k] = v
            out.append(row)
    return out


def row_from_run(run_dir: str | os.PathLike, gamma: float, n_blocks: int, seed: int, backend: str,
                 tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """The ``sweep.csv`` row of a finished run directory."""
    from ocp_resnet.runs import Run

    run = Run(run_dir)
    return point_row(run.problem(), run.weights, run.metrics, gamma, n_blocks, seed, backend, run_dir, tol)


def point_row(problem: Problem, weights: Mapping[str, Any], metrics: Mapping[str, Any], gamma: float, n_blocks: int,
              seed: int, backend: str, run_dir: str | os.PathLike, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """The ``sweep.csv`` row of one solved grid point (its problem, weights and ``metrics.json`` record)."""
    an = analyze(problem, weights, tol)
    m = metrics
    return {
        "gamma": float(gamma), "blocks": int(n_blocks), "seed": int(seed), "backend": backend,
        "status": str(m.get("status", "unknown")), "objective": an.objective, "final_loss": an.final_loss,
        "train_accuracy": an.stage_accuracy[-1], "n_vanished": an.n_vanished, "n_active": an.n_active,
        "tail_to_head": an.tail_to_head, "recommended_depth": an.recommended_depth,
        "grad_norm": float(m.get("grad_norm", float("nan")) if m.get("grad_norm") is not None else float("nan")),
        "iterations": int(m.get("iterations", 0) or 0),
        "time_s": float(m.get("build_time_s", 0.0) or 0.0) + float(m.get("solve_time_s", 0.0) or 0.0),
        "stage_losses": an.stage_losses, "block_norms": an.block_norms, "run_dir": str(Path(run_dir)),
        "collapsed": m.get("collapsed", ""), "val_accuracy": m.get("val_accuracy", ""),
    }


def _check_same(run_dir: Path, problem: Problem) -> None:
    """A resumed run must be of the same problem (architecture, objective, data size)."""
    from ocp_resnet.runs import Run

    run = Run(run_dir)
    old = run.problem()
    if (old.spec.to_dict() != problem.spec.to_dict() or old.objective.to_dict() != problem.objective.to_dict()
            or old.data.X.shape != problem.data.X.shape or not np.array_equal(old.data.X, problem.data.X)):
        raise ValidationError(
            f"{run_dir} was solved with another problem than this sweep: use the original problem "
            "with resume=True, or another out=DIR"
        )


def sweep_solver(backend: str | None, solver: Solver | Mapping[str, Any] | None) -> Solver:
    """The sweep's solver: ``solver`` itself, or the solver of an option dict for ``backend``
    (default casadi); validated, so a typo fails before the sweep writes anything."""
    if isinstance(solver, Solver):
        if backend is not None and backend != solver.backend:
            raise ValidationError(f"backend {backend!r} does not match the solver ({solver.backend})")
        return solver
    return solver_from_record(solver, "casadi" if backend is None else backend)


def _solve_point(problem: Problem, seed: int, solver: Solver, log: Any,
                 restarts: int = 1) -> tuple[dict, dict, dict]:
    """Solve one grid point; returns (weights, metrics, stats). ``restarts`` K > 1 (IPOPT): the best
    of init seeds seed..seed+K-1, recorded in ``metrics["restarts"]``."""
    from ocp_resnet.analysis.collapse import solution_collapse_record
    from ocp_resnet.analysis.restarts import restart_metrics, solve_best

    sol, records = solve_best(problem, seed, restarts, solver, log=log)
    if solver.backend == "torch":
        return sol.weights, sol.metrics(), sol.stats
    metrics = {**sol.metrics(), **solution_collapse_record(problem, sol), **restart_metrics(records)}
    if "collapse_attempts" in sol.stats:
        metrics["collapse_attempts"] = sol.stats["collapse_attempts"]
    return sol.weights, metrics, sol.stats


def _solve_task(problem: Problem, seed: int, solver: Solver, restarts: int = 1,
                val: Any = None) -> tuple[dict, dict, dict, float]:
    """One grid point as a task for :mod:`ocp_resnet.parallel` (any process): (weights, metrics, stats, wall s).
    ``val``: held-out data whose per-stage losses/accuracies join the metrics."""
    t0 = time.perf_counter()
    weights, metrics, stats = _solve_point(problem, seed, solver, None, restarts)
    if val is not None:
        from ocp_resnet.model.evaluation import validation_metrics

        metrics.update(validation_metrics(problem, weights, val))
    return weights, metrics, stats, time.perf_counter() - t0


def finished_point(rd: Path) -> bool:
    """A grid point's run directory is complete and was not interrupted."""
    if not ((rd / "metrics.json").exists() and (rd / "solution.npz").exists()):
        return False
    try:
        return json.loads((rd / "metrics.json").read_text()).get("status") != Status.INTERRUPTED.value
    except (OSError, ValueError):
        return False


@dataclass
class _Sweep:
    """One sweep's fixed inputs: where it writes, how it solves, what every run directory records."""

    out: Path
    solver: Solver
    tol: float
    config: Mapping[str, Any] | None
    val: Any
    log: Callable[[str], None] | None

    def run_dir(self, g: float, n: int, s: int) -> Path:
        return self.out / "runs" / run_name(g, n, s)

    def say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)


def run_sweep(
    base: Any,
    gammas: Iterable[float],
    blocks: Iterable[int],
    seeds: Iterable[int],
    out: str | os.PathLike,
    backend: str | None = None,
    solver: Solver | Mapping[str, Any] | None = None,
    tol: float = DEFAULT_TOL,
    resume: bool = False,
    overwrite: bool = False,
    config: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    scheduler: Any = None,
    restarts: int = 1,
    val: Any = None,
) -> list[dict[str, Any]]:
    """Run the grid γ × N × seed and write ``sweep.csv`` (rewritten after every point).

    ``restarts`` K > 1 keeps the best of init seeds s..s+K-1 at every point (IPOPT back-end);
    ``val`` (a Dataset) adds held-out stage losses/accuracies to every point's metrics.

    ``solver``: the :class:`~ocp_resnet.solvers.Solver` of every point (or an option dict for
    ``backend``, default casadi: ``method, tol, max_iter, hessian, ipopt``; torch: the TrainOptions fields,
    ``grad_tol``, ``threads``). With ``resume``, grid points whose run directory is complete are
    read back instead of solved again. ``jobs`` worker processes (-1: all cores) or a Dask
    ``scheduler`` address solve the points (:mod:`ocp_resnet.parallel`); the rows, run
    directories and numbers are those of ``jobs=1``, in the same order.
    """
    from ocp_resnet import parallel

    parallel.n_jobs(jobs)  # a bad --jobs fails before anything is written
    gammas = [check_float("gamma", g, 0.0) for g in gammas]
    blocks = [check_int("blocks", n, 1) for n in blocks]
    seeds = [check_int("seed", s, 0) for s in seeds]
    if not gammas or not blocks or not seeds:
        raise ValidationError("a sweep needs at least one value in each of gammas, blocks and seeds")
    if backend is not None:
        check_choice("backend", backend, BACKENDS)
    restarts = check_int("restarts", restarts, 1)
    solver = sweep_solver(backend, solver)
    if restarts > 1 and solver.backend == "torch":
        raise ValidationError("restarts are for the IPOPT back-end: list more seeds with the torch back-end")
    sw = _Sweep(Path(out), solver, tol, config, val, log)
    if sw.out.exists() and not (resume or overwrite):
        raise ValidationError(f"{out} already exists: pass resume=True to continue that sweep, overwrite=True, "
                              "or another out=DIR")
    grid = [(g, n, s) for g in gammas for n in blocks for s in seeds]
    problems = [grid_problem(base, g, n) for g, n, _ in grid]
    done = [resume and finished_point(sw.run_dir(*p)) for p in grid]
    for point, problem, d in zip(grid, problems, done):
        if d:
            _check_same(sw.run_dir(*point), problem)
    todo = [(problems[i], grid[i][2], solver, restarts, val) for i in range(len(grid)) if not done[i]]
    with parallel.run_ordered(_solve_task, todo, jobs, scheduler) as results:
        (sw.out / "runs").mkdir(parents=True, exist_ok=True)
        with open(sw.out / "sweep.json", "w") as fh:
            json.dump({"gammas": gammas, "blocks": blocks, "seeds": seeds, "backend": solver.backend,
                       "solver": sweep_record(solver), "tol": tol, **(dict(config) if config else {})},
                      fh, indent=2, default=str)
        return _collect(sw, grid, problems, done, results)


def _collect(sw: _Sweep, grid: Sequence[tuple], problems: Sequence[Any], done: Sequence[bool],
             results: Iterator) -> list[dict[str, Any]]:
    """The rows of the grid in order (read back or solved), ``sweep.csv`` rewritten after each."""
    rows: list[dict[str, Any]] = []
    for i, (g, n, s) in enumerate(grid, 1):
        row = _sweep_point(sw, problems[i - 1], g, n, s, done[i - 1], results)
        if row is None:  # Ctrl-C between points: the finished ones are written, --resume continues
            sw.say(f"[{i}/{len(grid)}] interrupted: stopping the sweep; continue with resume=True")
            raise KeyboardInterrupt
        rows.append(row)
        write_csv(sw.out / "sweep.csv", rows)
        if row["status"] == Status.INTERRUPTED.value:
            # Ctrl-C stops the whole sweep: the point keeps its last iterate, sweep.csv holds
            # what is done, and --resume re-runs the interrupted point.
            sw.say(f"[{i}/{len(grid)}] interrupted: stopping the sweep; continue with resume=True")
            raise KeyboardInterrupt
        sw.say(f"[{i}/{len(grid)}] gamma {g:g} N {n} seed {s}: {row['status']}, J {row['objective']:.6g}, "
               f"vanished {row['n_vanished']}/{n}, tail/head {row['tail_to_head']:.2e}, {row['time_s']:.1f}s")
    return rows


def _sweep_point(sw: _Sweep, problem: Problem, g: float, n: int, s: int, done: bool,
                 results: Iterator) -> dict[str, Any] | None:
    """The row of one grid point: read back (``done``) or the next result, written as a run directory."""
    from ocp_resnet.runs import write_run

    rd = sw.run_dir(g, n, s)
    backend = sw.solver.backend
    if done:
        return row_from_run(rd, g, n, s, backend, sw.tol)
    try:
        weights, metrics, stats, wall = next(results)
    except StopIteration:
        return None
    cfg = dict(sw.config or {})
    cfg.update(command="sweep", architecture=problem.spec.to_dict(), objective=problem.objective.to_dict(),
               solver={"backend": backend, **sweep_record(sw.solver), "init": "random", "seed": s})
    extra: dict = {}
    if sw.val is not None:
        from ocp_resnet.data.validation import val_data_file

        extra = val_data_file(sw.val)
    write_run(rd, config=cfg, weights=weights, metrics=metrics, data=problem.data, stats=stats, extra_files=extra,
              overwrite=True)
    row = point_row(problem, weights, metrics, g, n, s, backend, rd, sw.tol)  # in memory: no read-back
    row["time_s"] = wall
    return row


def summarize(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("gamma", "blocks")) -> list[dict[str, Any]]:
    """Mean / std / min / max over seeds of the tail-to-head ratio, vanished count and objective.

    The tail-to-head ratio is summarised on log10 (it spans decades): ``log10_tail_to_head_mean``
    and ``..._std``; also its median.
    """
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if str(r["status"]) in (Status.SUCCESS.value, Status.ACCEPTABLE.value)]
        th = np.array([float(r["tail_to_head"]) for r in rs])
        lth = np.log10(np.clip(th, 1e-300, None))
        nv = np.array([float(r["n_vanished"]) for r in rs])
        J = np.array([float(r["objective"]) for r in rs])
        acc = np.array([float(r["train_accuracy"]) for r in rs])
        out.append({
            **dict(zip(keys, key)), "runs": len(rs), "converged": len(ok),
            "tail_to_head_median": float(np.median(th)),
            "log10_tail_to_head_mean": float(np.mean(lth)), "log10_tail_to_head_std": float(np.std(lth)),
            "tail_to_head_min": float(np.min(th)), "tail_to_head_max": float(np.max(th)),
            "n_vanished_mean": float(np.mean(nv)), "n_vanished_std": float(np.std(nv)),
            "n_vanished_min": int(np.min(nv)), "n_vanished_max": int(np.max(nv)),
            "objective_mean": float(np.mean(J)), "objective_min": float(np.min(J)),
            "best_seed": int(rs[int(np.argmin(J))]["seed"]), "best_n_vanished": int(nv[int(np.argmin(J))]),
            "best_train_accuracy": float(acc[int(np.argmin(J))]),
            "train_accuracy_mean": float(np.mean(acc)),
        })
    return out


def format_summary(summary: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """A text (or markdown) table of :func:`summarize` output."""
    head = ["gamma", "N", "runs", "converged", "tail/head median", "log10 tail/head mean ± std",
            "vanished mean ± std", "vanished min–max", "accuracy mean", "J best", "best: vanished", "best: accuracy"]
    body = []
    for s in summary:
        body.append([
            f"{s['gamma']:g}", f"{s['blocks']}", f"{s['runs']}", f"{s['converged']}",
            f"{s['tail_to_head_median']:.2e}",
            f"{s['log10_tail_to_head_mean']:.2f} ± {s['log10_tail_to_head_std']:.2f}",
            f"{s['n_vanished_mean']:.2f} ± {s['n_vanished_std']:.2f}",
            f"{s['n_vanished_min']}–{s['n_vanished_max']}",
            f"{s['train_accuracy_mean']:.3f}", f"{s['objective_min']:.5g}", f"{s['best_n_vanished']}",
            f"{s['best_train_accuracy']:.3f}",
        ])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[j]) for r in body)) if body else len(h) for j, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(lines)
