"""The second-order certificate: known answers, cross-checks between its ways of computing.

* convex problems (no blocks: a regularised linear model) are strict minima, with the smallest
  eigenvalue known in closed form (least squares) or bounded by the weight decay (logistic);
* at the symmetric point of a two-layer branch (W1 = b1 = W2 = 0, the rest optimal; the gradient
  in the branch vanishes by symmetry) it finds the saddle and its eigenvalue 2λ − |a|·|m|;
* dense and Lanczos agree; the CasADi Hessian (the Newton path's stage-wise assembly) equals
  the single-shooting transcription's, torch's and a finite-difference Hessian;
* the certificate lands in metrics.json and the CLI prints one line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ocp_resnet import Dataset, IpoptOptions, Problem, load_dataset, solve
from ocp_resnet.analysis.certificate import certify, classify, hessian, torch_hessian, transcription_hessian
from ocp_resnet.errors import ValidationError
from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient

from .problems import problem, random_weights, tiny_spirals


def test_least_squares_without_blocks_is_a_strict_minimum_with_the_known_eigenvalues():
    """0 blocks, mse: J = (1/n) Σ ½|W u + b − t|² + λ|w|², so ∇²J = (Z Zᵀ/n) ⊗ I + 2λ I with Z = [U; 1]."""
    lam = 1e-2
    prob = Problem.build(tiny_spirals(40), blocks=0, width=2, loss="mse", gamma=0.0, weight_decay=lam)
    sol = solve(prob, options=IpoptOptions(tol=1e-12))
    cert = certify(prob, sol.w)
    Z = np.vstack([prob.U, np.ones((1, prob.n_samples))])
    ev = np.linalg.eigvalsh(Z @ Z.T / prob.n_samples) + 2 * lam
    expected = np.sort(np.repeat(ev, prob.spec.n_outputs))
    assert cert.kind == "strict local minimum"
    assert cert.lambda_min == pytest.approx(expected[0], rel=1e-10)
    assert cert.lambda_max == pytest.approx(expected[-1], rel=1e-10)
    np.testing.assert_allclose(cert.smallest, expected[: len(cert.smallest)], rtol=1e-10)
    assert cert.lambda_min >= 2 * lam


def test_logistic_regression_is_a_strict_minimum_above_the_weight_decay():
    lam = 1e-3
    prob = Problem.build(tiny_spirals(40), blocks=0, width=2, loss="bce", gamma=0.0, weight_decay=lam)
    sol = solve(prob, options=IpoptOptions(tol=1e-12))
    cert = certify(prob, sol.w)
    assert cert.kind == "strict local minimum" and cert.n_negative == 0
    assert cert.lambda_min >= 2 * lam * (1 - 1e-10)  # logistic Hessian ⪰ 0, plus 2λI


def test_collinear_features_without_weight_decay_are_degenerate():
    """0 blocks, mse, λ = 0 and the second feature a copy of the first: Z Zᵀ is singular, so
    ∇²J has exact zeros (one per output) and the rest is Z Zᵀ/n ⊗ I."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    data = Dataset(np.column_stack([x, x]), (x > 0).astype(int), 2, "collinear")
    prob = Problem.build(data, blocks=0, width=2, loss="mse", gamma=0.0, weight_decay=0.0)
    cert = certify(prob, random_weights(prob, seed=1))
    assert cert.kind == "degenerate"
    assert abs(cert.lambda_min) <= cert.tol and cert.smallest[1] == pytest.approx(cert.smallest[0], abs=cert.tol)
    assert cert.smallest[2] > 1e3 * cert.tol


def test_the_symmetric_point_of_a_two_layer_branch_is_a_saddle_with_the_known_eigenvalue():
    """F(x) = W2 tanh(W1 x + b1) + b2 at W1 = b1 = W2 = 0: ∂J/∂W1 has the factor W2 and ∂J/∂W2 the
    factor tanh(b1), so both vanish, and IPOPT started at zeros keeps them at zero. To second order
    J contains a·W2 W1 m (a = head weights, m = mean (σ(z) − t) x_0), whose cross block has
    singular value |a|·|m|: λ_min = 2λ − |a|·|m|."""
    lam = 1e-3
    prob = Problem.build(load_dataset("spirals", n_samples=40), blocks=1, width=2, branch="basic", loss="bce",
                         gamma=0.0, weight_decay=lam)
    sol = solve(prob, method="single-shooting", options=IpoptOptions(tol=1e-12, hessian="exact"), init="zeros")
    for name in ("block0.W1", "block0.b1", "block0.W2"):
        assert np.all(sol.weights[name] == 0.0)
    assert sol.grad_norm < 1e-8
    cert = certify(prob, sol.w)
    assert cert.kind == "saddle"
    a = sol.weights["head.W"].ravel()
    z = (a @ (prob.U + sol.weights["block0.b2"][:, None]) + sol.weights["head.b"]).ravel()
    m = prob.U @ (1 / (1 + np.exp(-z)) - prob.T.ravel()) / prob.n_samples
    assert cert.lambda_min == pytest.approx(2 * lam - np.linalg.norm(a) * np.linalg.norm(m), rel=1e-6)


def test_dense_and_lanczos_agree():
    prob = problem(tiny_spirals(30), blocks=3, width=2, loss="bce", gamma=0.3, weight_decay=1e-3)
    w = random_weights(prob, seed=3)
    dense = certify(prob, w, method="dense", k=4)
    lanczos = certify(prob, w, method="lanczos", k=4)
    assert dense.method.startswith("dense") and lanczos.method == "lanczos (casadi)"
    np.testing.assert_allclose(lanczos.smallest, dense.smallest, rtol=1e-8, atol=1e-10)
    assert lanczos.lambda_max == pytest.approx(dense.lambda_max, rel=1e-8)
    assert lanczos.kind == dense.kind


def test_hessian_matches_torch_and_finite_differences():
    prob = problem(tiny_spirals(20), blocks=2, width=2, loss="sce", gamma=0.2, weight_decay=1e-3)
    w = random_weights(prob, seed=2)
    H = hessian(prob, w)
    np.testing.assert_allclose(torch_hessian(prob, w), H, rtol=1e-10, atol=1e-12)
    p, h = w.size, 1e-5
    fd = np.empty((p, p))
    for j in range(p):
        e = np.zeros(p)
        e[j] = h
        fd[:, j] = (objective_and_gradient(prob, w + e)[1] - objective_and_gradient(prob, w - e)[1]) / (2 * h)
    np.testing.assert_allclose(H, fd, atol=1e-7)
    np.testing.assert_allclose(np.linalg.eigvalsh(H), np.linalg.eigvalsh(0.5 * (fd + fd.T)), atol=1e-7)
    torch_cert = certify(prob, w, backend="torch")
    assert torch_cert.lambda_min == pytest.approx(certify(prob, w, backend="casadi").lambda_min, rel=1e-10)


@pytest.mark.parametrize("kw", [
    dict(blocks=3, width=2, loss="bce", gamma=0.3),
    dict(width=[2, 3, 3, 4], loss="sce", gamma=0.3, stem="linear"),  # projections, linear stem
    dict(blocks=2, width=3, branch="basic", hidden=2, loss="mse", gamma=0.0, activation="softplus"),
    dict(blocks=2, width=3, loss="ce", gamma=[0.1, 0.0], activation="smooth_relu"),
])
def test_hessian_equals_the_single_shooting_transcriptions(kw):
    """Two independent assemblies of ∇²J: stage by stage with second-order adjoints, and the
    symbolic Hessian of one sample's whole trajectory."""
    prob = problem(tiny_spirals(15), **kw)
    w = random_weights(prob, seed=4)
    H = hessian(prob, w)
    ref = transcription_hessian(prob, w)
    np.testing.assert_allclose(H, ref, rtol=0, atol=1e-12 * max(1.0, np.abs(ref).max()))
    assert np.array_equal(H, H.T)


def test_classification_and_limits():
    assert classify(1e-3, 10.0, 1e-6)[0] == "strict local minimum"
    assert classify(-1e-3, 10.0, 1e-6)[0] == "saddle"
    assert classify(1e-6, 10.0, 1e-6) == ("degenerate", pytest.approx(1e-5))
    prob = problem(tiny_spirals(12), blocks=2)
    skipped = certify(prob, random_weights(prob), max_params=5)
    assert skipped.kind == "skipped" and skipped.lambda_min is None and "max_params=5" in skipped.describe()
    with pytest.raises(ValidationError, match="method"):
        certify(prob, random_weights(prob), method="power")
    with pytest.raises(ValidationError, match="NaN"):
        certify(prob, np.full(prob.spec.n_params, np.nan))


def test_the_solve_command_records_and_prints_the_certificate(tmp_path, capsys):
    from ocp_resnet.cli import main

    out = tmp_path / "run"
    main(["solve", "--dataset", "spirals", "--n-samples", "30", "--blocks", "0", "--width", "2", "--loss", "bce",
          "--weight-decay", "1e-3", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "second-order: strict local minimum (λ_min" in printed
    m = json.loads((out / "metrics.json").read_text())
    assert m["second_order"]["kind"] == "strict local minimum" and m["second_order"]["n_params"] == 3
    assert m["second_order"]["lambda_min"] >= 2e-3 * (1 - 1e-10) and m["second_order"]["note"] is None
    assert m["second_order_time_s"] > 0 and "time_s" not in m["second_order"]
    off = tmp_path / "off"
    main(["solve", "--dataset", "spirals", "--n-samples", "30", "--blocks", "0", "--width", "2", "--loss", "bce",
          "--quiet", "--certificate-max-params", "0", "--out", str(off)])
    assert "second_order" not in json.loads((off / "metrics.json").read_text())


def test_torch_hessian_skipped_by_default_when_n_p_squared_is_too_large(monkeypatch) -> None:
    """The torch dense Hessian (relu) of a large problem is not formed unless asked for; the
    stage-wise one (smooth activations) is bounded by the weight count only."""
    from ocp_resnet import Problem, load_dataset
    from ocp_resnet.analysis import certificate

    smooth = Problem.build(load_dataset("spirals", n_samples=40), blocks=2, width=2, loss="mse", weight_decay=1e-3)
    ws = smooth.spec.flatten(smooth.spec.init_params("random", 0))
    monkeypatch.setattr(certificate, "MAX_WORK", 40 * ws.size**2 - 1)
    assert certificate.certify(smooth, ws).kind != "skipped"
    prob = Problem.build(load_dataset("spirals", n_samples=40), blocks=2, width=2, loss="mse", weight_decay=1e-3,
                         activation="relu")
    w = prob.spec.flatten(prob.spec.init_params("random", 0))
    monkeypatch.setattr(certificate, "MAX_WORK", 40 * w.size**2 - 1)
    skipped = certificate.certify(prob, w)
    assert skipped.kind == "skipped" and "n·p²" in (skipped.note or "")
    assert certificate.certify(prob, w, max_params=None).kind != "skipped"
