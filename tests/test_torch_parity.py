"""The torch MLP is the CasADi model's twin: same objective and gradient (float64), same names."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocp_resnet import ArchSpec, BlockSpec, ObjectiveSpec, Problem, ValidationError, load_dataset, solve
from ocp_resnet.data.datasets import Dataset
from ocp_resnet.model.architecture import SMOOTH_ACTIVATIONS
from ocp_resnet.model.objective import LOSSES
from ocp_resnet.solvers import IpoptOptions
from ocp_resnet.solvers.ipopt.transcription import objective_and_gradient as casadi_jg
from ocp_resnet.torch import ResNetMLP
from ocp_resnet.torch import objective_and_gradient as torch_jg

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@st.composite
def problems(draw):
    """Random MLP problems: 0–5 blocks, width changes (projections), all branches, losses, γ lists."""
    N = draw(st.integers(0, 5))
    p = draw(st.integers(1, 3))
    stem = draw(st.sampled_from(["pad", "linear"]))
    w0 = draw(st.integers(p if stem == "pad" else 1, 4))
    widths = [w0] + [draw(st.integers(1, 4)) for _ in range(N)]
    blocks = tuple(
        BlockSpec(widths[k + 1], draw(st.sampled_from(["single", "basic", "none"])), draw(st.none() | st.integers(1, 4)))
        for k in range(N)
    )
    loss = draw(st.sampled_from(LOSSES))
    C = 2 if loss == "bce" else draw(st.integers(2, 4))
    gamma = draw(st.floats(0, 2) | st.lists(st.floats(0, 2), min_size=N, max_size=N).map(tuple))
    obj = ObjectiveSpec(loss=loss, gamma=gamma, weight_decay=draw(st.sampled_from([0.0, 1e-3, 0.1])),
                        label_smoothing=draw(st.sampled_from([0.05, 0.2])))
    spec = ArchSpec(p, obj.n_outputs(C), w0, blocks, stem, draw(st.sampled_from(SMOOTH_ACTIVATIONS)),
                    draw(st.sampled_from([1.0, 0.5])))
    n = draw(st.integers(3, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = Dataset(rng.normal(size=(n, p)), np.arange(n) % C, C, "random")
    w = 0.7 * rng.standard_normal(spec.n_params)
    return Problem(spec, obj, data), w


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_casadi_and_torch_give_the_same_objective_and_gradient(case):
    problem, w = case
    Jc, gc = casadi_jg(problem, w)
    Jt, gt = torch_jg(problem, w)
    assert abs(Jt - Jc) <= 1e-10 * abs(Jc)
    assert np.linalg.norm(gt - gc) <= 1e-10 * max(np.linalg.norm(gc), 1e-300)
    assert abs(problem.objective_value(w) - Jt) <= 1e-10 * abs(Jc)


def test_ipopt_optimum_is_a_stationary_point_in_torch():
    problem = Problem.build(load_dataset("moons", n_samples=40), blocks=3, width=2, loss="mse", gamma=0.5,
                            weight_decay=1e-3)
    sol = solve(problem, "multiple-shooting", IpoptOptions(tol=1e-8))
    assert sol.success
    _, g = torch_jg(problem, sol.w)
    assert np.linalg.norm(g) <= 1e-6


def test_module_uses_the_spec_names_and_round_trips_weights():
    spec = ArchSpec.uniform(2, 3, 3, [2, 3, 3, 2], branch="basic", stem="linear")
    m = ResNetMLP.from_spec(spec, init="random", seed=3)
    assert list(m.state_dict()) == list(spec.param_shapes())
    w = m.weights()
    ref = spec.init_params("random", 3)
    assert all(np.array_equal(w[k], ref[k]) for k in ref)  # torch starts where IPOPT's random init starts
    m2 = ResNetMLP(spec, init="zeros").load_weights(w)
    x = torch.randn(5, 2, dtype=torch.float64)
    assert torch.equal(m(x), m2(x))
    assert m(x).shape == (5, 3)
    assert torch.equal(torch.cat([p.reshape(-1) for p in m.params().values()]), m.flat_params())
    bad = dict(w)
    bad.pop("block2.S")
    with pytest.raises(ValidationError, match="block2.S"):
        m2.load_weights(bad)
    with pytest.raises(ValidationError, match="inputs must have shape"):
        m(torch.randn(5, 3, dtype=torch.float64))


def test_float32_model_matches_float64_closely():
    spec = ArchSpec.uniform(2, 2, 4, 3)
    m64, m32 = ResNetMLP(spec, seed=1), ResNetMLP(spec, seed=1, dtype=torch.float32)
    x = torch.randn(7, 2, dtype=torch.float64)
    assert m32(x).dtype == torch.float32
    assert torch.allclose(m32(x).double(), m64(x), atol=1e-5)


@pytest.mark.parametrize("loss,activation", [("bce", "softplus"), ("ce", "softplus")])
def test_parity_holds_for_large_softplus_arguments(loss, activation):
    """torch's F.softplus returns z above z = 20 (error e^-20); the back-end must not."""
    problem = Problem.build(load_dataset("moons", n_samples=20), blocks=2, width=2, loss=loss, activation=activation,
                            gamma=0.5)
    w = 30.0 * np.random.default_rng(0).standard_normal(problem.spec.n_params)
    Jc, gc = casadi_jg(problem, w)
    Jt, gt = torch_jg(problem, w)
    assert abs(Jt - Jc) <= 1e-10 * abs(Jc)
    assert np.linalg.norm(gt - gc) <= 1e-10 * np.linalg.norm(gc)


def test_torch_softplus_is_exact_for_large_arguments():
    from ocp_resnet.model._ops import NUMPY, TORCH

    z = torch.tensor([-800.0, -30.0, -1.0, 0.0, 1.0, 19.0, 21.0, 25.0, 800.0], dtype=torch.float64,
                     requires_grad=True)
    y = TORCH.softplus(z)
    y.sum().backward()
    zn = z.detach().numpy()
    assert np.allclose(y.detach().numpy(), NUMPY.softplus(zn), rtol=1e-14, atol=0)
    sigmoid = np.exp(-np.logaddexp(0.0, -zn))
    assert np.allclose(z.grad.numpy(), sigmoid, rtol=1e-14, atol=0)  # σ(25) ≠ 1 in float64
