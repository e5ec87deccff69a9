"""Conv ResNet-v2 sweeps (``sweep --backend torch --arch conv``): γ × stage depths × seeds.

Every grid point is one :func:`~ocp_resnet.training.train_run` of a conv
:class:`~ocp_resnet.training.TrainConfig` (the run of ``ocp-resnet train --arch conv``, so its
directory is exactly train's format: analyze, prune and evaluate work on it), written to
``runs/gamma{γ}-B{b0-b1-…}-seed{s}`` with ``runs/<point>.log`` (what the training reported) and
``runs/<point>.train.json`` (its settings, compared on resume). The seed sets the initial weights,
the mini-batch order and the train/validation split (train's ``--seed``), so the same seed gives
the same split for every γ. ``sweep.csv`` has the columns of the MLP sweeps (:data:`.sweep.COLUMNS`, with the
conv meanings of :mod:`.conv`: vanished by RMS residual output, tail-to-head of residual
norms) plus :data:`EXTRA_COLUMNS`.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocp_resnet.analysis.blocks import DEFAULT_TOL
from ocp_resnet.analysis.conv import analyze_conv_run
from ocp_resnet.analysis.sweep import COLUMNS, finished_point, write_csv
from ocp_resnet.errors import ValidationError, check_float, check_int

if TYPE_CHECKING:
    from ocp_resnet.training import TrainConfig

EXTRA_COLUMNS = ("val_accuracy", "stage_blocks", "optimizer", "reach_block", "val_reach_block", "n_parameters",
                 "stage_accuracy", "val_stage_accuracy", "residual_norms", "rel_residual_norms")
CONV_COLUMNS = COLUMNS + EXTRA_COLUMNS
LIST_COLUMNS = ("stage_losses", "block_norms", "stage_accuracy", "val_stage_accuracy", "residual_norms",
                "rel_residual_norms")


def run_name(gamma: float, stage_blocks: Sequence[int], seed: int) -> str:
    """The run directory name of one conv grid point."""
    return f"gamma{gamma:g}-B{'-'.join(map(str, stage_blocks))}-seed{seed}"


def row_from_conv_run(run_dir: Any, gamma: float, stage_blocks: Sequence[int], seed: int,
                      tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """The ``sweep.csv`` row of a finished conv run directory."""
    from ocp_resnet.runs import Run

    run = Run(run_dir)
    an = analyze_conv_run(run, tol)
    m = run.metrics
    gn = m.get("grad_norm")
    return {
        "gamma": float(gamma), "blocks": an.n_blocks, "seed": int(seed), "backend": "torch",
        "status": str(m.get("status", "unknown")), "objective": an.objective, "final_loss": an.final_loss,
        "train_accuracy": an.stage_accuracy[-1], "n_vanished": an.n_vanished, "n_active": an.n_active,
        "tail_to_head": an.tail_to_head, "recommended_depth": an.recommended_depth,
        "grad_norm": float(gn) if gn is not None else float("nan"),
        "iterations": int(m.get("iterations", 0) or 0), "time_s": float(m.get("solve_time_s", 0.0) or 0.0),
        "stage_losses": an.stage_losses, "block_norms": an.block_norms, "run_dir": str(Path(run_dir)),
        "val_accuracy": an.val_stage_accuracy[-1] if an.val_stage_accuracy else float("nan"),
        "stage_blocks": "-".join(map(str, stage_blocks)), "optimizer": str(m.get("method", "")),
        "reach_block": an.reach_block, "val_reach_block": an.val_reach_block if an.val_reach_block is not None else "",
        "n_parameters": an.n_parameters, "stage_accuracy": an.stage_accuracy,
        "val_stage_accuracy": an.val_stage_accuracy or [], "residual_norms": an.residual_norms,
        "rel_residual_norms": an.rel_residual_norms,
    }


def read_conv_csv(path: Any) -> list[dict[str, Any]]:
    """Read a conv ``sweep.csv`` back, numbers parsed and list columns as lists."""
    from ocp_resnet.analysis.sweep import read_csv

    return read_csv(path, LIST_COLUMNS, ("status", "backend", "run_dir", "stage_blocks", "optimizer"), (),
                    lambda v: int(v) if v.lstrip("-").isdigit() else float(v), "ocp-resnet sweep (conv nets)")


def run_conv_sweep(
    config: TrainConfig,
    gammas: Sequence[float],
    stage_blocks: Sequence[Sequence[int]],
    seeds: Sequence[int],
    out: Any,
    tol: float = DEFAULT_TOL,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every grid point with :func:`~ocp_resnet.training.train_run` and write ``sweep.csv``
    (rewritten after every point; ``resume`` reuses finished runs trained with the same settings).

    ``config`` holds the settings all points share (data, conv net, objective, options,
    val_fraction, threads); :func:`point_config` sets each point's γ, stage blocks and seed.
    A point whose training is interrupted raises KeyboardInterrupt (its run directory is written).
    """
    from ocp_resnet.training import ConvNet

    if not isinstance(config.network, ConvNet):
        raise ValidationError(f"a conv sweep needs a ConvNet network, got {type(config.network).__name__}")
    gammas = [check_float("gamma", g, 0.0) for g in gammas]
    stage_blocks = [tuple(check_int("stage blocks", b, 0) for b in sb) for sb in stage_blocks]
    seeds = [check_int("seed", s, 0) for s in seeds]
    tol = check_float("vanish tol", tol, 0.0)
    if not gammas or not stage_blocks or not seeds:
        raise ValidationError("a sweep needs at least one value in each of gammas, stage_blocks and seeds")
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        raise ValidationError(f"{out} already exists: pass resume=True to continue that sweep, overwrite=True, "
                              "or another out=DIR")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.json", "w") as fh:  # "train": the shared settings; γ, blocks, seed come from the grid
        json.dump({"arch": "conv", "gammas": gammas, "stage_blocks": [list(b) for b in stage_blocks], "seeds": seeds,
                   "train": config.to_dict(), "tol": tol}, fh, indent=2)
    rows: list[dict[str, Any]] = []
    grid = [(g, b, s) for g in gammas for b in stage_blocks for s in seeds]
    for i, (g, b, s) in enumerate(grid, 1):
        rd = out / "runs" / run_name(g, b, s)
        point = point_config(config, g, b, s, rd)
        if not (resume and finished_point(rd) and _same_settings(rd, point)):
            _train_point(point, rd)
        row = row_from_conv_run(rd, g, b, s, tol)
        rows.append(row)
        write_csv(out / "sweep.csv", rows, CONV_COLUMNS)
        if log is not None:
            log(f"[{i}/{len(grid)}] gamma {g:g} blocks {'-'.join(map(str, b))} seed {s}: {row['status']}, "
                f"train acc {row['train_accuracy']:.3f}, val acc {row['val_accuracy']:.3f}, vanished "
                f"{row['n_vanished']}/{row['blocks']}, reach {row['reach_block']}, {row['time_s']:.1f}s")
    return rows


def point_config(config: TrainConfig, gamma: float, stage_blocks: Sequence[int], seed: int,
                 run_dir: Any) -> TrainConfig:
    """The :class:`~ocp_resnet.training.TrainConfig` of one grid point: ``config`` with stage weight
    ``gamma``, ``stage_blocks`` and ``seed`` (data, split, initial weights and batch order, as
    ``train --seed``), no progress bar, written to ``run_dir`` (replaced if there)."""
    from ocp_resnet.training import ConvNet

    if not isinstance(config.network, ConvNet):
        raise ValidationError(f"a conv sweep needs a ConvNet network, got {type(config.network).__name__}")
    return replace(config, data=replace(config.data, seed=seed),
                   network=replace(config.network, stage_blocks=tuple(stage_blocks)),
                   objective=replace(config.objective, gamma=float(gamma)),
                   options=replace(config.options, seed=seed, progress=False),
                   out=str(run_dir), overwrite=True, resume=None)


def _train_point(config: TrainConfig, rd: Path) -> None:
    """Train one point; beside its run directory go ``<point>.log`` and ``<point>.train.json``
    (the settings :func:`_same_settings` compares on ``--resume``)."""
    from ocp_resnet.status import Status
    from ocp_resnet.training import train_run

    lines: list[str] = []  # train_run's description of the run, then how it ended
    res = train_run(config, log=lines.append)
    m = res.metrics
    if m is not None:  # None only on a torchrun rank other than 0, which writes nothing
        lines.append(f"{res.status.value} after {res.steps} steps ({res.train_time_s:.2f}s): objective "
                     f"{m['objective']:.10g}, grad norm {m['grad_norm']:.2e}, train accuracy {m['train_accuracy']:.3f}, "
                     f"val accuracy {m['val_accuracy']}" + (f"; {m['status_message']}" if m["status_message"] else ""))
    rd.parent.joinpath(f"{rd.name}.log").write_text("\n".join(lines) + "\n")
    rd.parent.joinpath(f"{rd.name}.train.json").write_text(json.dumps(config.to_dict(), indent=2))
    if res.status == Status.INTERRUPTED:
        raise KeyboardInterrupt


def _same_settings(rd: Path, config: TrainConfig) -> bool:
    """A finished run is reused only when it was trained with the same settings."""
    f = rd.parent / f"{rd.name}.train.json"
    if not f.exists():
        return False
    if json.loads(f.read_text()) != config.to_dict():
        raise ValidationError(f"{rd} was trained with other settings than this sweep: use the original settings "
                              "with resume=True, or another out=DIR")
    return True


def summarize_conv(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (γ, stage blocks): mean ± std over seeds of vanished count, reach block, accuracies."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((float(r["gamma"]), str(r["stage_blocks"])), []).append(r)
    out = []
    for (g, b), rs in groups.items():
        def ms(key: str, rs: list = rs) -> tuple[float, float]:
            v = np.array([float(r[key]) for r in rs], dtype=float)
            return float(np.mean(v)), float(np.std(v))

        rel = np.array([r["rel_residual_norms"] for r in rs], dtype=float)
        out.append({
            "gamma": g, "stage_blocks": b, "runs": len(rs),
            **{f"{k}_{s}": v for k in ("n_vanished", "reach_block", "train_accuracy", "val_accuracy",
                                       "recommended_depth") for s, v in zip(("mean", "std"), ms(k))},
            "n_vanished_min": int(min(r["n_vanished"] for r in rs)), "n_vanished_max": int(max(r["n_vanished"] for r in rs)),
            "rel_residual_median": ";".join(f"{x:.2g}" for x in np.median(rel, axis=0)),
        })
    return out


def format_conv_summary(summary: Sequence[Mapping[str, Any]], markdown: bool = False) -> str:
    """A text (or markdown) table of :func:`summarize_conv` output."""
    head = ["gamma", "stage blocks", "runs", "vanished mean ± std (min–max)", "reach block mean",
            "train acc", "val acc", "rec. depth", "median relative RMS residual per block"]
    body = [[f"{s['gamma']:g}", s["stage_blocks"], str(s["runs"]),
             f"{s['n_vanished_mean']:.2f} ± {s['n_vanished_std']:.2f} ({s['n_vanished_min']}–{s['n_vanished_max']})",
             f"{s['reach_block_mean']:.2f}", f"{s['train_accuracy_mean']:.4f}",
             f"{s['val_accuracy_mean']:.4f} ± {s['val_accuracy_std']:.4f}", f"{s['recommended_depth_mean']:.2f}",
             s["rel_residual_median"].replace(";", " ")] for s in summary]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
                         + ["| " + " | ".join(r) + " |" for r in body])
    return "\n".join(["  ".join(head)] + ["  ".join(r) for r in body])
