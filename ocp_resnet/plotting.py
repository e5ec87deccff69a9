"""matplotlib figures (Agg back-end) of runs and sweeps. Imported lazily, never by ``solve``.

* :func:`plot_turnpike` — block weight norms and RMS residual outputs against k (log scale);
* :func:`plot_stages` — stage loss and stage accuracy against k;
* :func:`plot_decision_regions` — decision regions of ŷ_k at a few k (2-D inputs);
* :func:`plot_trajectories` — sample trajectories x_0..x_N in the state plane;
* :func:`plot_sweep` — objective and non-vanished blocks against depth, one line per γ.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ocp_resnet.model.problem import Problem

_FLOOR = 1e-16  # log plots: exact zeros are drawn at this floor


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return path


def _title(title: str | None, default: str) -> str:
    return default if title is None else title


def threshold_label(tol: float, of: str, value: float | None = None) -> str:
    """Legend text of a vanishing-threshold line: its definition ``tol × of`` and, when drawn on
    absolute norms, the value it is drawn at (e.g. ``vanishing threshold 1e-3 × max‖w‖ = 2.0e-03``)."""
    text = f"vanishing threshold {tol:g} × ${of}$" if value is not None else f"vanishing threshold ${of}$ = {tol:g}"
    return text if value is None else f"{text} = {value:.1e}"


def plot_turnpike(analysis: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Block norms ‖w_k‖ and RMS residual outputs ‖F_k(x_k)‖ against k, log scale."""
    plt = _plt()
    k = np.arange(analysis.n_blocks)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    bn = np.maximum(np.asarray(analysis.block_norms, float), _FLOOR)
    rn = np.maximum(np.asarray(analysis.residual_norms, float), _FLOOR)
    ax.semilogy(k, bn, "o-", label=r"weight norm $\|w_k\|$")
    ax.semilogy(k, rn, "s--", label=r"RMS residual $\|F_k(x_k)\|$")
    # the threshold is drawn on the norm the vanishing criterion uses (conv runs: RMS residual outputs),
    # at tol × its largest value, and labelled with both the definition and the value it is drawn at
    residual = getattr(analysis, "criterion", "weights") == "residual"
    ref = rn if residual else bn
    top = max(float(np.max(ref)) if ref.size else 1.0, _FLOOR)
    of = r"\mathrm{max}_j \|F_j\|" if residual else r"\mathrm{max}_j \|w_j\|"
    ax.axhline(top * analysis.tol, color="gray", lw=0.8, ls=":",
               label=threshold_label(analysis.tol, of, top * analysis.tol))
    for j in analysis.vanished:
        ax.axvspan(j - 0.5, j + 0.5, color="tab:green", alpha=0.08, lw=0)
    ax.set_xlabel("block k")
    ax.set_ylabel("norm")
    ax.set_xticks(k)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(title, f"turnpike: {analysis.n_vanished} of {analysis.n_blocks} blocks vanished (shaded)"))
    return _save(fig, path)


def plot_stages(analysis: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """Stage loss (log) and stage accuracy of ŷ_k against k = 0..N."""
    plt = _plt()
    k = np.arange(analysis.n_blocks + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.semilogy(k, np.maximum(np.asarray(analysis.stage_losses, float), _FLOOR), "o-", color="tab:blue",
                label="stage loss (left axis)")
    ax.set_xlabel("stage k (output ŷ_k of the network truncated after block k)")
    ax.set_ylabel("stage loss", color="tab:blue")
    ax.set_xticks(k)
    ax.axvline(analysis.recommended_depth, color="gray", ls=":", lw=1,
               label=f"recommended depth M = {analysis.recommended_depth}")
    ax2 = ax.twinx()
    ax2.plot(k, analysis.stage_accuracy, "s--", color="tab:orange", label="train accuracy (right axis)")
    val_acc = getattr(analysis, "val_stage_accuracy", None)
    if val_acc is not None:  # conv runs with a validation split
        ax2.plot(k, val_acc, "^:", color="tab:red", label="validation accuracy (right axis)")
    ax2.set_ylabel("stage accuracy", color="tab:orange")
    ax2.set_ylim(-0.02, 1.02)
    # one legend for the lines of both axes
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, fontsize=8, loc="center right")
    ax.grid(True, alpha=0.3)
    ax.set_title(_title(title, "stage loss and accuracy"))
    return _save(fig, path)


def _stages_to_show(n_blocks: int, count: int = 4) -> list[int]:
    return sorted(set(int(round(v)) for v in np.linspace(0, n_blocks, min(count, n_blocks + 1))))


def plot_decision_regions(
    problem: Problem, weights: Any, path: str | os.PathLike, stages: Sequence[int] | None = None, resolution: int = 150
) -> Path:
    """Decision regions of ŷ_k over the (2-D) input plane at a few stages k, with the data."""
    from ocp_resnet.errors import ValidationError
    from ocp_resnet.model import architecture as arch
    from ocp_resnet.model._ops import NUMPY
    from ocp_resnet.model.objective import predictions

    if problem.spec.input_dim != 2:
        raise ValidationError("decision regions need 2-D inputs; this data set has "
                              f"{problem.spec.input_dim} features")
    plt = _plt()
    p = problem.params(weights)
    N = problem.spec.n_blocks
    stages = _stages_to_show(N) if stages is None else [int(s) for s in stages]
    X, y = problem.data.X, problem.data.y
    lo, hi = X.min(0), X.max(0)
    pad = 0.1 * (hi - lo + 1e-12)
    g0, g1 = np.meshgrid(np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution),
                         np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution))
    U = np.vstack([g0.ravel(), g1.ravel()])
    outs = arch.stage_outputs(problem.spec, p, arch.trajectory(problem.spec, p, U, NUMPY), NUMPY)
    acc = problem.evaluate(p).stage_accuracy
    fig, axes = plt.subplots(1, len(stages), figsize=(3.2 * len(stages), 3.3), squeeze=False)
    C = max(problem.data.n_classes, 2)
    for ax, k in zip(axes[0], stages):
        pred = predictions(problem.objective, outs[k]).reshape(g0.shape)
        ax.contourf(g0, g1, pred, levels=np.arange(C + 1) - 0.5, cmap="coolwarm" if C == 2 else "tab10", alpha=0.35)
        ax.scatter(X[:, 0], X[:, 1], c=y, s=6, cmap="coolwarm" if C == 2 else "tab10", vmin=0, vmax=C - 1,
                   edgecolors="none")
        ax.set_title(f"ŷ_{k}  (acc {acc[k]:.2f})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("input x[0]", fontsize=8)
    axes[0][0].set_ylabel("input x[1]", fontsize=8)
    fig.suptitle("decision regions of the stage outputs (shading: predicted class, dots: samples by true class)",
                 fontsize=10)
    return _save(fig, path)


def plot_trajectories(problem: Problem, weights: Any, path: str | os.PathLike, max_samples: int = 200) -> Path:
    """Sample trajectories x_0..x_N in the state plane (first two principal axes if width > 2)."""
    plt = _plt()
    xs = problem.states(weights)
    widths = {x.shape[0] for x in xs}
    y = problem.data.y
    n = xs[0].shape[1]
    idx = np.linspace(0, n - 1, min(n, max_samples)).astype(int)
    if widths == {2}:
        P = [x for x in xs]
        label = ("x[0]", "x[1]")
    else:
        # project every state onto the top two principal axes of the final states (padding to the max width)
        d = max(widths)
        Z = [np.vstack([x, np.zeros((d - x.shape[0], n))]) for x in xs]
        c = Z[-1].mean(axis=1, keepdims=True)
        _, _, vt = np.linalg.svd((Z[-1] - c).T, full_matrices=False)
        V = vt[:2]
        P = [V @ (z - c) for z in Z]
        label = ("PC 1 of x_N", "PC 2 of x_N")
    fig, ax = plt.subplots(figsize=(5.0, 4.6))
    C = max(problem.data.n_classes, 2)
    cmap = plt.get_cmap("coolwarm" if C == 2 else "tab10")
    traj = np.stack([q[:, idx] for q in P])  # (N+1, 2, m)
    for j, i in enumerate(idx):
        ax.plot(traj[:, 0, j], traj[:, 1, j], "-", lw=0.5, alpha=0.5, color=cmap(y[i] / max(C - 1, 1)))
    ax.scatter(traj[0, 0], traj[0, 1], s=5, c="k", marker=".", label="x_0")
    ax.scatter(traj[-1, 0], traj[-1, 1], s=12, c=[cmap(v / max(C - 1, 1)) for v in y[idx]], marker="o",
               edgecolors="k", linewidths=0.3, label="x_N")
    ax.set_xlabel(label[0])
    ax.set_ylabel(label[1])
    ax.legend(fontsize=8, loc="best")
    ax.set_title("sample trajectories x_k through the blocks (colour: true class)", fontsize=10)
    return _save(fig, path)


def plot_run(run_dir: str | os.PathLike, tol: float = 1e-3, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """All figures of a run directory (written into it, or into ``out_dir``)."""
    from ocp_resnet.analysis.blocks import analyze, run_problem
    from ocp_resnet.runs import Run

    run = Run(run_dir)
    d = Path(out_dir) if out_dir is not None else run.path
    from ocp_resnet.analysis.conv import analyze_conv_run, is_conv_run

    if is_conv_run(run):  # no state plane to draw for images
        conv_an = analyze_conv_run(run, tol)
        return [plot_turnpike(conv_an, d / "turnpike.png"), plot_stages(conv_an, d / "stages.png")]
    problem, _ = run_problem(run)
    an = analyze(problem, run.weights, tol)
    d = Path(out_dir) if out_dir is not None else run.path
    paths = [plot_turnpike(an, d / "turnpike.png"), plot_stages(an, d / "stages.png"),
             plot_trajectories(problem, run.weights, d / "trajectories.png")]
    if problem.spec.input_dim == 2:
        paths.append(plot_decision_regions(problem, run.weights, d / "decision_regions.png"))
    return paths


def plot_sweep(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, title: str = "") -> list[Path]:
    """objective_vs_depth.png and active_blocks_vs_depth.png: per γ, every seed (dots) and the mean."""
    plt = _plt()
    out_dir = Path(out_dir)
    gammas = sorted({float(r["gamma"]) for r in rows})
    paths = []
    for key, fname, ylabel, logy in (
        ("objective", "objective_vs_depth.png", "objective J", True),
        ("n_active", "active_blocks_vs_depth.png", "non-vanished blocks", False),
    ):
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for i, g in enumerate(gammas):
            rs = [r for r in rows if float(r["gamma"]) == g]
            Ns = sorted({int(r["blocks"]) for r in rs})
            color = f"C{i}"
            xs = [int(r["blocks"]) + 0.08 * (i - (len(gammas) - 1) / 2) for r in rs]
            ax.scatter(xs, [float(r[key]) for r in rs], s=14, color=color, alpha=0.5)
            ax.plot(Ns, [np.mean([float(r[key]) for r in rs if int(r["blocks"]) == n]) for n in Ns], "-o",
                    color=color, label=f"γ = {g:g}")
        if key == "n_active":
            allN = sorted({int(r["blocks"]) for r in rows})
            ax.plot(allN, allN, ":", color="gray", lw=1, label="all blocks")
        if logy:
            ax.set_yscale("log")
        else:
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xticks(sorted({int(r["blocks"]) for r in rows}))
        ax.set_xlabel("depth N (blocks)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{ylabel} vs depth (dots: seeds, line: mean){(' — ' + title) if title else ''}", fontsize=9)
        paths.append(_save(fig, out_dir / fname))
    return paths


def plot_norm_profiles(profiles: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str = "",
                       relative: bool = True) -> Path:
    """Block-norm profiles of several solutions against k (log), one line per label."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, norms) in enumerate(profiles.items()):
        b = np.asarray(norms, float)
        if relative and b.size and b.max() > 0:
            b = b / b.max()
        ax.semilogy(np.arange(b.size), np.maximum(b, _FLOOR), "o-", color=f"C{i}", label=label, ms=4)
    ax.set_xlabel("block k")
    ax.set_ylabel("‖w_k‖ / max_j ‖w_j‖" if relative else "‖w_k‖")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "block-norm profiles", fontsize=10)
    return _save(fig, path)


def plot_costates(costates: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """State and costate norms per layer k = 0..N (RMS over samples), log scale, with the block
    weight norms ‖w_k‖ between layers k and k+1 (a :class:`~ocp_resnet.analysis.costates.Costates`)."""
    plt = _plt()
    N = costates.n_blocks
    k = np.arange(N + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.semilogy(k, np.maximum(np.asarray(costates.state_norms, float), _FLOOR), "o-", label=r"state RMS $\|x_k\|$")
    ax.semilogy(k, np.maximum(np.asarray(costates.costate_norms, float), _FLOOR), "s-",
                label=r"costate RMS $\|p_k\|$")
    if costates.multiplier_costate_norms is not None:
        ax.semilogy(k[1:], np.maximum(costates.multiplier_costate_norms[1:], _FLOOR), "x",
                    color="k", ms=7, label=r"$n\,\lambda_{k-1}$ (IPOPT multipliers)")
    if len(costates.block_norms) == N and N:
        ax.semilogy(k[:-1] + 0.5, np.maximum(np.asarray(costates.block_norms, float), _FLOOR), "^--",
                    color="gray", ms=4, lw=0.8, label=r"block weight norm $\|w_k\|$ (at $k+\frac{1}{2}$)")
    ax.set_xlabel("layer k")
    ax.set_ylabel("norm")
    ax.set_xticks(k)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_title(title, "states and costates through the layers"), fontsize=10)
    return _save(fig, path)


def plot_gamma_path(gammas: Sequence[float], rel_norms: Sequence[Sequence[float]], path: str | os.PathLike,
                    tol: float = 1e-3, collapsed: Sequence[bool] | None = None, title: str = "") -> Path:
    """Relative block norms ‖w_k‖/max_j ‖w_j‖ against γ (one line per block, log scale) with the
    vanishing threshold; γ = 0 is drawn at the left edge of a symlog axis. Collapsed points are
    marked with an x."""
    plt = _plt()
    g = np.asarray(gammas, float)
    R = np.maximum(np.asarray(rel_norms, float), _FLOOR)  # (points, blocks)
    order = np.argsort(g, kind="stable")
    g, R = g[order], R[order]
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    cmap = plt.get_cmap("viridis")
    nb = R.shape[1] if R.ndim == 2 else 0
    for k in range(nb):
        ax.plot(g, R[:, k], "o-", ms=3, color=cmap(k / max(1, nb - 1)), label=f"block {k}")
    if collapsed is not None:
        c = np.asarray(collapsed, bool)[order]
        for x in g[c]:
            ax.axvline(x, color="tab:red", lw=0.8, ls="--")
        if c.any():
            ax.plot([], [], color="tab:red", ls="--", lw=0.8, label="collapsed (linear-classifier loss)")
    ax.axhline(tol, color="gray", ls=":", lw=1, label=threshold_label(tol, r"\|w_k\| / \mathrm{max}_j \|w_j\|"))
    ax.set_yscale("log")
    positive = g[g > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0, linscale=0.5)
    ax.set_xlim(float(g.min()), float(g.max()) * 1.15 if g.max() > 0 else 1.0)
    ax.set_xticks(g)
    ax.set_xticklabels([f"{v:g}" for v in g])
    ax.set_xlabel("stage-cost weight γ")
    ax.set_ylabel(r"relative block norm $\|w_k\| / \mathrm{max}_j \|w_j\|$")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax.set_title(title or "γ path: which blocks vanish")
    return _save(fig, path)
