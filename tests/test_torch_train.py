"""Trainer: every optimizer lowers the objective; options are validated; AdamW reports J."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocp_resnet import Problem, ValidationError, load_dataset
from ocp_resnet.status import Status
from ocp_resnet.torch import ResNetMLP, StepInfo, Trainer, TrainOptions, mlp_evaluation, split

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    assert tr.stopped_ is Status.INTERRUPTED and tr.stopped_by_ == "SIGINT" and tr.steps_ == 5
    assert len(tr.history_) == 0  # 6 steps per epoch: the unfinished first epoch is not recorded
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_callback_stop_after_step_k_is_training_for_k_steps(problem, optimizer):
    """60 samples in batches of 16: 4 steps an epoch, so stopping after step 8 = 2 epochs."""
    opts = dict(optimizer=optimizer, batch_size=16, schedule="constant", progress=False)
    short = ResNetMLP(problem.spec, seed=0)
    ref = Trainer(problem.objective, 2, TrainOptions(epochs=2, **opts)).fit(short, problem.data.X, problem.data.y)
    infos: list[StepInfo] = []

    def stop_at_8(info: StepInfo) -> bool:
        infos.append(info)
        return info.step == 8

    model = ResNetMLP(problem.spec, seed=0)
    tr = Trainer(problem.objective, 2, TrainOptions(epochs=50, **opts)).fit(
        model, problem.data.X, problem.data.y, callback=stop_at_8)
    assert tr.steps_ == ref.steps_ == 8 and [i.step for i in infos] == list(range(1, 9))
    assert [i.epoch for i in infos] == [0] * 4 + [1] * 4 and all(i.batch_size in (16, 12) for i in infos)
    assert tr.stopped_ is Status.INTERRUPTED and tr.stopped_by_ == "callback"
    a, b = _weights(model), _weights(short)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit the same weights
    assert len(tr.history_) == 1  # the epoch the stop happened in is not recorded (as for Ctrl-C)
    # the history's epoch loss is the batch-size-weighted mean of the steps' objectives
    first = infos[:4]
    mean = sum(i.objective * i.batch_size for i in first) / sum(i.batch_size for i in first)
    assert tr.history_[0]["loss"] == pytest.approx(mean, rel=1e-14)


def test_full_batch_callback_objectives_are_the_history(problem):
    infos: list[StepInfo] = []
    model = ResNetMLP(problem.spec, seed=0)
    tr = Trainer(problem.objective, 2, TrainOptions(epochs=6, batch_size=0, lr=0.02, progress=False)).fit(
        model, problem.data.X, problem.data.y, callback=infos.append)
    assert tr.stopped_ is None and tr.stopped_by_ is None and len(infos) == tr.steps_ == 6
    np.testing.assert_allclose([i.objective for i in infos], [h["loss"] for h in tr.history_], rtol=1e-15)
    assert [i.lr for i in infos] == [h["lr"] for h in tr.history_]  # the cosine schedule's rate of each step
    assert all(a.wall_s <= b.wall_s for a, b in zip(infos, infos[1:])) and infos[0].model is model
    # the first objective is J of the initial weights, the last step's gradient is in .grad
    assert infos[0].objective == pytest.approx(problem.objective_value(ResNetMLP(problem.spec, seed=0).weights()),
                                               rel=1e-12)
    assert all(p.grad is not None for p in model.parameters())


def test_lbfgs_callback_counts_iterations_and_sees_the_accepted_iterate(problem):
    infos: list[StepInfo] = []
    model = ResNetMLP(problem.spec, seed=0)
    tr = Trainer(problem.objective, 2, TrainOptions(optimizer="lbfgs", epochs=3, lbfgs_iter=5, progress=False)).fit(
        model, problem.data.X, problem.data.y, callback=infos.append)
    steps = [0] + [i.step for i in infos]  # L-BFGS iterations so far: at most lbfgs_iter more per step
    assert len(infos) == 3 and all(0 < b - a <= 5 for a, b in zip(steps, steps[1:])) and steps[-1] == tr.steps_
    np.testing.assert_allclose([i.objective for i in infos], [h["loss"] for h in tr.history_], rtol=1e-15)
    assert infos[-1].objective == pytest.approx(problem.objective_value(model.weights()), rel=1e-12)


def test_lbfgs_history_is_an_option_written_only_when_changed():
    assert "lbfgs_history" not in TrainOptions().to_dict()
    assert TrainOptions(lbfgs_history=20).to_dict()["lbfgs_history"] == 20
    with pytest.raises(ValidationError, match="lbfgs_history"):
        TrainOptions(lbfgs_history=0)
