"""Trainer: every optimizer lowers the objective; options are validated; AdamW reports J."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocp_resnet import Problem, ValidationError, load_dataset
from ocp_resnet.torch import ResNetMLP, Trainer, TrainOptions, mlp_evaluation, split


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def problem():
    return Problem.build(load_dataset("moons", n_samples=60), blocks=4, width=2, loss="mse", gamma=0.5,
                         weight_decay=1e-3)


@pytest.mark.parametrize("optimizer,epochs", [("sgd", 30), ("adam", 30), ("adamw", 30), ("lbfgs", 5)])
def test_every_optimizer_lowers_the_objective(problem, optimizer, epochs):
    model = ResNetMLP(problem.spec, seed=0)
    J0 = problem.objective_value(model.weights())
    tr = Trainer(problem.objective, 2, TrainOptions(optimizer=optimizer, epochs=epochs, batch_size=16,
                                                    progress=False)).fit(model, problem.data.X, problem.data.y)
    ev = mlp_evaluation(problem, model.weights())
    assert ev.objective < J0
    assert tr.steps_ > 0 and len(tr.history_) == epochs and tr.stopped_ is None
    # the history's loss is the objective J (AdamW included), measured along the way
    assert abs(tr.history_[-1]["loss"] - ev.objective) < 0.5 * J0


def test_full_batch_lbfgs_reaches_a_near_stationary_point(problem):
    model = ResNetMLP(problem.spec, seed=0)
    Trainer(problem.objective, 2, TrainOptions(optimizer="lbfgs", epochs=10, lbfgs_iter=40, progress=False)).fit(
        model, problem.data.X, problem.data.y)
    assert mlp_evaluation(problem, model.weights()).grad_norm < 1e-5


def test_constant_schedule_keeps_the_rate_and_cosine_lowers_it(problem):
    for sched, same in (("constant", True), ("cosine", False)):
        tr = Trainer(problem.objective, 2, TrainOptions(epochs=3, schedule=sched, lr=0.01, progress=False)).fit(
            ResNetMLP(problem.spec), problem.data.X, problem.data.y)
        assert (tr.history_[-1]["lr"] == 0.01) is same


def test_options_are_validated():
    for kw, msg in ((dict(optimizer="rmsprop"), "unknown optimizer"), (dict(lr=0.0), "lr"),
                    (dict(epochs=0), "epochs"), (dict(dtype="float16"), "unknown dtype"),
                    (dict(schedule="step"), "unknown schedule"), (dict(device="tpu"), "device")):
        with pytest.raises(ValidationError, match=msg):
            TrainOptions(**kw)
    if not torch.cuda.is_available():
        with pytest.raises(ValidationError, match="no CUDA device"):
            TrainOptions(device="cuda")
    with pytest.raises(ValidationError, match="val_fraction"):
        split(10, 1.0)
    tr, va = split(10, 0.3, seed=0)
    assert len(va) == 3 and len(tr) == 7 and not set(tr) & set(va)


def test_ctrl_c_stops_after_the_current_step_and_keeps_the_model(problem):
    import signal

    model = ResNetMLP(problem.spec, seed=0)
    calls = []
    orig = model.cost

    def cost(*a, **kw):
        calls.append(1)
        if len(calls) == 5:
            signal.raise_signal(signal.SIGINT)  # the handler of StopOnSigint only sets a flag
        return orig(*a, **kw)

    model.cost = cost
    tr = Trainer(problem.objective, 2, TrainOptions(epochs=100, batch_size=10, progress=False)).fit(
        model, problem.data.X, problem.data.y)
    assert tr.stopped_ == "interrupted" and tr.steps_ == 5
    assert len(tr.history_) == 0  # 6 steps per epoch: the unfinished first epoch is not recorded
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
