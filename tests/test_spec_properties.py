"""Property tests of spec validation: every invalid spec raises ValidationError (and nothing
else), every valid one builds and survives a round trip through its dict.

Each field is drawn either from a valid strategy or from an invalid one, so the expected
outcome is known independently of the code under test.
"""
from __future__ import annotations

import math
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocp_resnet.errors import ValidationError
from ocp_resnet.model.architecture import ACTIVATIONS, BRANCHES, STEMS, ArchSpec
from ocp_resnet.model.objective import LOSSES, ObjectiveSpec
from ocp_resnet.solvers.ipopt.options import HESSIANS, IpoptOptions, check_ipopt_options

SETTINGS = settings(max_examples=int(os.environ.get("SPEC_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

JUNK = st.one_of(st.none(), st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2),
                 st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")))


def tagged(valid, invalid):
    """(value, is_valid) pairs."""
    return st.one_of(valid.map(lambda v: (v, True)), invalid.map(lambda v: (v, False)))


def pos_int(lo=1, hi=5):
    """Integers >= lo as int, numpy int or integral float: all count as integers."""
    base = st.integers(lo, hi)
    return st.one_of(base, base.map(np.int64), base.map(float))


def bad_int(lo=1):
    return st.one_of(st.integers(-5, lo - 1), st.floats(0.1, 9.9).filter(lambda v: not v.is_integer()), JUNK)


def choice(allowed):
    return tagged(st.sampled_from(allowed), st.one_of(st.text(min_size=1, max_size=6).filter(lambda s: s not in allowed),
                                                      st.none(), st.integers()))


def nonneg_float():
    return st.one_of(st.floats(0, 10, allow_nan=False), st.integers(0, 5), st.floats(0, 10).map(np.float64))


def bad_nonneg_float():
    # (lists are not junk here: a list of valid values is a valid per-stage gamma)
    return st.one_of(st.floats(-10, -1e-9), st.integers(-5, -1),
                     JUNK.filter(lambda v: not isinstance(v, (bool, list))))


@SETTINGS
@given(
    input_dim=tagged(pos_int(), bad_int()),
    n_outputs=tagged(pos_int(), bad_int()),
    n_blocks=tagged(pos_int(0, 4), bad_int(0)),
    width=tagged(pos_int(1, 6), bad_int()),
    branch=choice(BRANCHES),
    hidden=tagged(st.one_of(st.none(), pos_int()), bad_int().filter(lambda v: v is not None)),
    stem=choice(STEMS),
    activation=choice(ACTIVATIONS),
    step=tagged(st.floats(1e-3, 10), st.one_of(st.floats(-10, 0), JUNK)),
)
def test_arch_spec_validation(input_dim, n_outputs, n_blocks, width, branch, hidden, stem, activation, step):
    args = [input_dim, n_outputs, n_blocks, width, branch, hidden, stem, activation, step]
    valid = all(ok for _, ok in args)
    values = [v for v, _ in args]
    if valid and values[6] == "pad" and int(values[3]) < int(values[0]):
        valid = False  # zero-padding cannot shrink the input
    try:
        spec = ArchSpec.uniform(*values)
    except ValidationError as exc:
        assert not valid, f"valid arguments rejected: {exc}"
        assert str(exc) and "\n" not in str(exc)
        return
    assert valid, f"invalid arguments accepted: {values}"
    assert spec.n_blocks == int(values[2])
    assert spec.widths == [int(values[3])] * (int(values[2]) + 1)
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    assert spec.n_params == spec.flatten(spec.init_params("random", 0)).size
    # stored as plain Python numbers, so they serialise and shape arrays exactly
    assert all(type(v) is int for v in (spec.input_dim, spec.n_outputs, spec.stem_width, *spec.widths))
    assert type(spec.step) is float


@SETTINGS
@given(
    n_blocks=st.integers(0, 4),
    widths=st.lists(tagged(pos_int(1, 4), bad_int()), min_size=1, max_size=6),
)
def test_width_lists(n_blocks, widths):
    values = [v for v, _ in widths]
    valid = all(ok for _, ok in widths) and len(values) in (1, n_blocks + 1)
    if valid and int(values[0]) < 2:
        valid = False  # pad stem, input_dim 2
    try:
        spec = ArchSpec.uniform(2, 2, n_blocks, values)
    except ValidationError:
        assert not valid
        return
    assert valid
    assert len(spec.widths) == n_blocks + 1
    assert ArchSpec.from_dict(spec.to_dict()) == spec


@SETTINGS
@given(
    loss=choice(LOSSES),
    gamma=tagged(st.one_of(nonneg_float(), st.lists(nonneg_float(), max_size=4).map(tuple)),
                 st.one_of(bad_nonneg_float(), st.lists(bad_nonneg_float(), min_size=1, max_size=3).map(tuple))),
    weight_decay=tagged(nonneg_float(), bad_nonneg_float()),
    label_smoothing=tagged(st.floats(0, 1), st.one_of(st.floats(1.0001, 5), st.floats(-5, -1e-9), JUNK)),
)
def test_objective_spec_validation(loss, gamma, weight_decay, label_smoothing):
    args = [loss, gamma, weight_decay, label_smoothing]
    valid = all(ok for _, ok in args)
    values = [v for v, _ in args]
    if valid and values[0] == "sce" and values[3] <= 0:
        valid = False
    try:
        obj = ObjectiveSpec(*values)
    except ValidationError as exc:
        assert not valid, f"valid arguments rejected: {exc}"
        return
    assert valid, f"invalid arguments accepted: {values}"
    assert ObjectiveSpec.from_dict(obj.to_dict()) == obj
    assert type(obj.weight_decay) is float and type(obj.label_smoothing) is float
    if isinstance(obj.gamma, tuple):
        assert obj.stage_weights(len(obj.gamma))[-1] == 1.0
    else:
        assert obj.stage_weights(3) == [obj.gamma] * 3 + [1.0]


@SETTINGS
@given(
    tol=tagged(st.floats(1e-14, 1.0), st.one_of(st.floats(-1, 0), JUNK)),
    max_iter=tagged(pos_int(0, 10000), bad_int(0)),
    print_level=tagged(st.integers(0, 12), st.one_of(st.integers(13, 100), st.integers(-5, -1), JUNK)),
    hessian=choice(HESSIANS),
)
def test_ipopt_options_validation(tol, max_iter, print_level, hessian):
    args = [tol, max_iter, print_level, hessian]
    valid = all(ok for _, ok in args)
    values = [v for v, _ in args]
    try:
        opts = IpoptOptions(*values)
    except ValidationError:
        assert not valid
        return
    assert valid
    d = opts.ipopt_dict()
    assert math.isclose(d["tol"], float(values[0]))
    assert type(d["max_iter"]) is int and type(d["print_level"]) is int and type(d["tol"]) is float
    check_ipopt_options(d, {})  # IPOPT itself accepts the resolved options
