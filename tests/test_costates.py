"""Costates and the stage Hamiltonian: finite differences, multipliers, KKT points, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocp_resnet import ArchSpec, BlockSpec, IpoptOptions, ObjectiveSpec, Problem, ValidationError, solve
from ocp_resnet.analysis import costates, costates_of_run
from ocp_resnet.analysis.costates import tail_cost
from ocp_resnet.cli import main
from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient

from .problems import problem, random_weights, tiny_multiclass

BRANCHES = {
    "single": dict(),
    "basic": dict(branch="basic", hidden=3),
    "projection": dict(branch="basic", width=[2, 3, 3, 2]),  # two width changes: projections S_0, S_2
}


def _mixed() -> Problem:
    """Linear stem, a projection-only block, softplus, per-stage γ (some zero), 3 classes."""
    spec = ArchSpec(input_dim=3, n_outputs=3, stem_width=4, stem="linear", activation="softplus",
                    blocks=(BlockSpec(4, "single"), BlockSpec(3, "none"), BlockSpec(3, "basic", 5), BlockSpec(2)))
    return Problem(spec, ObjectiveSpec(loss="sce", gamma=(0.3, 0.0, 0.5, 1.0), weight_decay=1e-3), tiny_multiclass())


def _fd_costates(prob: Problem, w: np.ndarray, xs: list[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the per-sample tail cost Σ_{j≥k} γ_j ℓ(ŷ_j) in x_k (all samples at once:
    each sample's tail cost depends on its own column only)."""
    out = []
    for k, x in enumerate(xs):
        fd = np.zeros_like(x)
        for r in range(x.shape[0]):
            e = np.zeros_like(x)
            e[r] = h
            fd[r] = (tail_cost(prob, w, k, x + e) - tail_cost(prob, w, k, x - e))[0] / (2 * h)
        out.append(fd)
    return out


def _check_recursion(prob: Problem, w: np.ndarray) -> None:
    cs = costates(prob, w)
    fd = _fd_costates(prob, w, cs.states)
    assert len(cs.p) == prob.spec.n_blocks + 1
    for k, (p, f) in enumerate(zip(cs.p, fd)):
        assert p.shape == (prob.spec.widths[k], prob.n_samples)
        assert np.max(np.abs(p - f)) <= 1e-6 * max(1.0, np.max(np.abs(p))), k
    # The gradient assembled from the costates is ∇J (CasADi's AD), so ∂H_k/∂w_k = ∂J/∂w_k.
    _, g = objective_and_gradient(prob, w)
    np.testing.assert_allclose(cs.gradient, g, rtol=0, atol=1e-12 * max(1.0, np.max(np.abs(g))))
    names = list(prob.spec.param_shapes())
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in prob.spec.param_shapes().values()])
    for k, hn in enumerate(cs.hamiltonian_weights):
        sel = np.concatenate([np.arange(offsets[names.index(m)], offsets[names.index(m) + 1]) for m in hn]) \
            if hn else np.zeros(0, int)
        np.testing.assert_allclose(cs.hamiltonian_gradients[k], g[sel], atol=1e-12)


@pytest.mark.parametrize("loss", ["ce", "bce", "mse", "sce"])
@pytest.mark.parametrize("case", list(BRANCHES))
def test_recursion_matches_finite_differences_of_the_tail_cost(loss, case) -> None:
    prob = problem(loss=loss, gamma=0.4, **BRANCHES[case])
    _check_recursion(prob, random_weights(prob, seed=3))


def test_recursion_with_linear_stem_projection_only_block_and_stage_gammas() -> None:
    prob = _mixed()
    cs = costates(prob, random_weights(prob, seed=2))
    assert cs.hamiltonian_weights[1] == [] and cs.hamiltonian_gradient_norms[1] == 0.0  # branch none: no w_1
    assert {"stem.W", "stem.b", "block1.S", "block3.S", "head.W", "head.b"} <= set(cs.shared_weights)
    _check_recursion(prob, random_weights(prob, seed=2))


@pytest.fixture(scope="module")
def kkt_points():
    """Multiple-shooting solves to KKT tolerance 1e-10 (small, fast problems)."""
    out = {}
    for name, prob in (("mse", problem()), ("sce", problem(loss="sce", gamma=0.3, branch="basic", hidden=3))):
        sol = solve(prob, method="multiple-shooting", options=IpoptOptions(tol=1e-10, print_level=0), seed=0)
        assert sol.success, sol
        out[name] = (prob, sol)
    return out


@pytest.mark.parametrize("name", ["mse", "sce"])
def test_multipliers_are_the_costates(kkt_points, name) -> None:
    prob, sol = kkt_points[name]
    cs = costates(prob, sol.weights, sol)
    assert cs.multiplier_agreement <= 1e-8
    assert len(cs.multiplier_disagreement) == prob.spec.n_blocks
    # the sign and scale are what make them agree: -n·lam_g or lam_g alone would not
    for a, b in zip(cs.multiplier_costates[1:], cs.p[1:]):
        assert np.linalg.norm(a + b) > np.linalg.norm(b) and np.linalg.norm(a / prob.n_samples - b) > 0.5 * np.linalg.norm(b)
    # the same from the bare lam_g array
    assert costates(prob, sol.w, sol.lam_g).multiplier_agreement == pytest.approx(cs.multiplier_agreement)


@pytest.mark.parametrize("name", ["mse", "sce"])
def test_hamiltonian_gradient_vanishes_at_kkt_points_only(kkt_points, name) -> None:
    prob, sol = kkt_points[name]
    cs = costates(prob, sol.weights)
    assert max(cs.hamiltonian_gradient_norms) <= 1e-6
    assert cs.shared_gradient_norm <= 1e-6
    rnd = costates(prob, random_weights(prob, seed=5))
    assert max(rnd.hamiltonian_gradient_norms) > 1e-2


def test_bad_multipliers_are_refused(kkt_points) -> None:
    prob, sol = kkt_points["mse"]
    with pytest.raises(ValidationError, match="multiple-shooting"):
        costates(prob, sol.weights, {"method": "single-shooting", "lam_g": np.zeros(0), "x": sol.w})
    with pytest.raises(ValidationError, match="other weights"):
        costates(prob, sol.w + 1e-3, sol)
    with pytest.raises(ValidationError, match="another problem"):
        costates(prob, sol.w, sol.lam_g[:-1])


def test_analyze_costates_cli(tmp_path, capsys) -> None:
    small = ["--n-samples", "24", "--blocks", "3", "--quiet"]
    ms, ss = tmp_path / "ms", tmp_path / "ss"
    assert main(["solve", *small, "--method", "multiple-shooting", "--out", str(ms)]) == 0  # multipliers
    assert main(["solve", *small, "--method", "single-shooting", "--out", str(ss)]) == 0
    capsys.readouterr()
    assert main(["analyze", str(ms), "--costates"]) == 0
    out = capsys.readouterr().out
    assert "RMS|p_k|" in out and "mult. rel. diff" in out and "wrote" in out
    d = json.loads((ms / "costates.json").read_text())
    assert len(d["costate_norms"]) == 4 and len(d["hamiltonian_gradient_norms"]) == 3
    assert d["multiplier_agreement"]["max_relative_disagreement"] < 1e-6
    assert max(d["hamiltonian_gradient_norms"]) < 1e-6
    with np.load(ms / "costates.npz") as z:
        assert {"p0", "p1", "p2", "p3"} <= set(z.files) and z["p1"].shape == (2, 24)
        np.testing.assert_allclose(z["p3"], costates_of_run(ms).p[3], rtol=1e-12)
    assert (ms / "costates.png").stat().st_size > 0
    # never replaced silently
    before = (ms / "costates.json").read_text()
    assert main(["analyze", str(ms), "--costates"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (ms / "costates.json").read_text() == before
    assert main(["analyze", str(ms), "--costates", "--overwrite"]) == 0
    # a re-solved pruned run keeps its multipliers too
    assert main(["prune", str(ms), "--resolve", "--out", str(tmp_path / "pr")]) == 0
    assert (tmp_path / "pr" / "multipliers.npz").is_file()
    assert costates_of_run(tmp_path / "pr").multiplier_agreement < 1e-6
    # single shooting: recursion only
    assert main(["analyze", str(ss), "--costates", "--plot-dir", str(tmp_path / "figs")]) == 0
    d = json.loads((tmp_path / "figs" / "costates.json").read_text())
    assert "multiplier_agreement" not in d and max(d["hamiltonian_gradient_norms"]) < 1e-6


def test_analyze_costates_of_a_torch_relu_run(tmp_path, capsys) -> None:
    out = tmp_path / "tr"
    assert main(["train", "--n-samples", "24", "--blocks", "3", "--activation", "relu", "--epochs", "5",
                 "--quiet", "--out", str(out)]) == 0
    assert main(["analyze", str(out), "--costates"]) == 0
    d = json.loads((out / "costates.json").read_text())
    m = json.loads((out / "metrics.json").read_text())
    assert "multiplier_agreement" not in d
    assert d["gradient_norm"] == pytest.approx(m["grad_norm"], rel=1e-9)  # torch's own full-batch gradient
