"""Figures label what they draw: threshold and target lines carry their values in the legend.

The tests read the matplotlib artists of each figure (captured when it is saved), not pixels.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ocp_resnet import solve  # noqa: E402
from ocp_resnet.analysis.blocks import analyze  # noqa: E402
from ocp_resnet.compare import compare, plot_objective_gap, plot_profiles  # noqa: E402
from ocp_resnet.plotting import plot_gamma_path, plot_stages, plot_turnpike  # noqa: E402

from .problems import problem  # noqa: E402


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """Every figure written through Figure.savefig during the test (the file is still written)."""
    figs: list[Figure] = []
    real = Figure.savefig

    def record(self: Figure, *args, **kwargs):
        figs.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figs


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() is not None for t in ax.get_legend().get_texts()]


def _hlines(fig: Figure) -> list[float]:
    """y of every horizontal line (axhline) in the figure."""
    ys = []
    for ax in fig.axes:
        for ln in ax.get_lines():
            x, y = ln.get_xdata(), ln.get_ydata()
            if len(y) == 2 and y[0] == y[1] and tuple(x) == (0, 1):
                ys.append(float(y[0]))
    return ys


@pytest.fixture(scope="module")
def solved():
    prob = problem(blocks=4, gamma=0.1)
    sol = solve(prob)
    return prob, sol


def test_turnpike_threshold_is_labelled_with_the_value_it_is_drawn_at(solved, saved, tmp_path):
    prob, sol = solved
    for tol in (1e-3, 0.25):
        an = analyze(prob, sol.weights, tol)
        plot_turnpike(an, tmp_path / f"turnpike{tol}.png")
        fig = saved[-1]
        drawn = tol * float(np.max(an.block_norms))
        assert _hlines(fig) == pytest.approx([drawn])  # drawn at tol × the largest block norm
        label = [t for t in _legend_texts(fig) if "threshold" in t]
        assert len(label) == 1
        assert f"{tol:g} ×" in label[0] and f"= {drawn:.1e}" in label[0], label[0]


def test_every_line_of_the_stages_figure_is_in_its_legend(solved, saved, tmp_path):
    prob, sol = solved
    an = analyze(prob, sol.weights)
    plot_stages(an, tmp_path / "stages.png")
    texts = _legend_texts(saved[-1])
    assert any("stage loss" in t for t in texts) and any("train accuracy" in t for t in texts)
    assert f"recommended depth M = {an.recommended_depth}" in texts
    n_lines = sum(len(ax.get_lines()) for ax in saved[-1].axes)
    assert len(texts) == n_lines  # no unlabelled line


def test_gamma_path_threshold_is_labelled_with_its_value(saved, tmp_path):
    rel = [[1.0, 0.5, 1e-5], [1.0, 0.1, 1e-7]]
    plot_gamma_path([0.0, 0.1], rel, tmp_path / "path.png", tol=2e-3)
    (label,) = [t for t in _legend_texts(saved[-1]) if "threshold" in t]
    assert label.endswith("= 0.002") and _hlines(saved[-1]) == [pytest.approx(2e-3)]


def test_objective_gap_target_lines_are_labelled_with_their_values(saved, tmp_path):
    prob = problem(blocks=2)
    cmp = compare(prob, ["ipopt-ms", "adam"], epochs=20, targets=(1e-2, 1e-5), polish=False)
    plot_objective_gap(cmp, tmp_path / "gap.png")
    fig = saved[-1]
    texts = _legend_texts(fig)
    assert "target gap 0.01" in texts and "target gap 1e-05" in texts
    assert sorted(_hlines(fig)) == pytest.approx([1e-5, 1e-2])
    plot_profiles(cmp, tmp_path / "profiles.png")
    assert set(_legend_texts(saved[-1])) == {"ipopt-ms", "adam"}
