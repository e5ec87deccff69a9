"""Solver vs SGD comparison."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ocp_resnet import ValidationError
from ocp_resnet.cli import main
from ocp_resnet.compare import TORCH_OPTIMIZERS, Trace, compare, format_summary, function_space_distance, to_csv
from ocp_resnet.status import Status

from .problems import problem, tiny_spirals


@pytest.fixture(scope="module")
def cmp():
    prob = problem(tiny_spirals(24), blocks=3, width=2, loss="mse", gamma=0.5, weight_decay=1e-2)
    return prob, compare(prob, epochs=60, targets=(1e-3, 1e-6))


def test_every_optimizer_starts_from_the_same_weights(cmp):
    prob, c = cmp
    starts = {name: r.trace.objective[0] for name, r in c.results.items()}
    # IPOPT's first callback is the start point; torch records J before its first step.
    assert max(starts.values()) - min(starts.values()) < 1e-12


def test_ipopt_rows_are_stationary_and_best(cmp):
    prob, c = cmp
    for name in ("ipopt-ms", "ipopt-ss"):
        assert c.results[name].final_grad_norm <= 1e-6
        assert c.results[name].status == "success"
    assert c.best_objective <= min(r.final_objective for r in c.results.values()) + 1e-15


def test_time_to_target_semantics(cmp):
    prob, c = cmp
    for r in c.results.values():
        for tgt, t in r.time_to_target.items():
            reached = [tt for tt, f in zip(r.trace.time_s, r.trace.objective) if f <= c.best_objective + tgt]
            assert t == (reached[0] if reached else None)
    # whoever found the best objective reached every target
    best = min(c.results.values(), key=lambda r: min(r.trace.objective))
    assert all(v is not None for v in best.time_to_target.values())


def test_trace_time_to():
    tr = Trace([0.1, 0.2, 0.3], [3.0, 2.0, 1.0], [1, 1, 1])
    assert tr.time_to(2.5) == 0.2 and tr.time_to(0.5) is None


def test_function_space_distance(cmp):
    prob, c = cmp
    names = list(c.results)
    for a in names:
        assert c.distances[a][a] == 0.0
        for b in names:
            assert c.distances[a][b] == pytest.approx(c.distances[b][a])
    wa = c.results["adam"].w
    za = prob.stage_outputs(wa)[-1]
    shifted = prob.params(wa)
    shifted["head.b"] = shifted["head.b"] + 0.5  # every output moves by exactly 0.5
    assert function_space_distance(prob, wa, prob.spec.flatten(shifted)) == pytest.approx(0.5)
    assert za.shape[1] == prob.n_samples


def test_polish_improves_the_adam_solution(cmp):
    prob, c = cmp
    p = c.polish
    assert p["objective_after"] <= p["objective_before"]
    assert p["grad_norm_after"] <= 1e-6 < p["grad_norm_before"]


def test_bad_optimizer_is_rejected():
    prob = problem(tiny_spirals(10), blocks=1)
    with pytest.raises(ValidationError, match="ipopt-ms"):
        compare(prob, ["newton"])


def test_cli_compare_writes_json_csv_and_figures(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "--n-samples", "20", "--blocks", "2", "--optimizers", "ipopt-ms,adam,lbfgs",
               "--epochs", "30", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "compare.json").read_text())
    assert set(data["optimizers"]) == {"ipopt-ms", "adam", "lbfgs"}
    row = data["optimizers"]["ipopt-ms"]
    for key in ("final_objective", "final_grad_norm", "train_accuracy", "wall_time_s", "iterations",
                "time_to_target", "block_norms", "stage_losses"):
        assert key in row
    assert set(row["time_to_target"]) == {"0.001", "1e-06"}
    rows = list(csv.DictReader(open(out / "compare.csv")))
    assert [r["optimizer"] for r in rows] == ["ipopt-ms", "adam", "lbfgs"]
    assert row["status"] == rows[0]["status"] == "success"  # the Status value, not its repr
    assert (out / "objective_gap.png").stat().st_size > 0 and (out / "profiles.png").stat().st_size > 0
    assert "polish" in capsys.readouterr().out
    # a second run into the same directory is refused
    assert main(["compare", "--n-samples", "20", "--blocks", "2", "--optimizers", "adam", "--epochs", "2",
                 "--out", str(out)]) == 2


def test_jobs_2_gives_the_objectives_of_jobs_1(cmp):
    prob, c = cmp
    par = compare(prob, epochs=60, targets=(1e-3, 1e-6), jobs=2)
    assert list(par.results) == list(c.results)
    for name, r in c.results.items():
        p = par.results[name]
        assert p.trace.objective == r.trace.objective and np.array_equal(p.w, r.w), name
        assert p.iterations == r.iterations and p.status == r.status
    assert par.polish["objective_after"] == c.polish["objective_after"]


def test_statuses_are_status_values(cmp):
    prob, c = cmp
    assert all(isinstance(r.status, Status) for r in c.results.values())
    assert c.results["ipopt-ms"].status is Status.SUCCESS and c.results["adam"].status is Status.MAX_ITER
    assert c.results["adam"].row()["status"] == "max_iter" and ",max_iter," in to_csv(c)
    assert "Status." not in format_summary(c)


def test_torch_rows_are_full_batch_trainer_runs(cmp):
    """compare trains with the Trainer: its defaults, one step per epoch, the trace from its callback."""
    import torch

    from ocp_resnet.solvers import initial_weights
    from ocp_resnet.torch import OPTIMIZERS, ResNetMLP, StepInfo, Trainer, TrainOptions

    assert set(TORCH_OPTIMIZERS) <= set(OPTIMIZERS)
    prob, c = cmp
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as compare trains: the same bits
    try:
        runs = {}
        for name in ("adam", "sgd"):
            model = ResNetMLP(prob.spec, init=prob.params(initial_weights(prob, "random", 0)), dtype=torch.float64)
            infos: list[StepInfo] = []
            Trainer(prob.objective, 2, TrainOptions(optimizer=name, epochs=60, batch_size=0, schedule="constant",
                                                    progress=False)).fit(model, prob.U.T, prob.data.y,
                                                                         callback=infos.append)
            runs[name] = model, infos
    finally:
        torch.set_num_threads(threads)
    for name, (model, infos) in runs.items():
        r = c.results[name]
        assert np.array_equal(prob.spec.flatten(model.weights()), r.w), name
        # iterate k's J is the objective of step k+1; the trace ends with the final weights
        assert [i.objective for i in infos] == r.trace.objective[:-1] and len(r.trace.objective) == 61


def test_lbfgs_that_stops_improving_is_stalled():
    prob = problem(tiny_spirals(24), blocks=3, width=2, loss="mse", gamma=0.5, weight_decay=1e-2)
    r = compare(prob, ["lbfgs"], epochs=3000, polish=False).results["lbfgs"]
    assert r.status is Status.STALLED and r.iterations < 3000
    assert r.trace.objective[-1] >= r.trace.objective[-2]  # the last L-BFGS step did not lower J
    assert r.final_grad_norm < 1e-6  # near a stationary point, where line searches stop gaining


def test_no_optimizer_carries_the_warm_up(tmp_path):
    """In a fresh interpreter, the optimizer that runs first pays no one-off start-up cost: every
    trace's first point is within a few steps' time (before the untimed warm-up, Adam run first
    recorded its first iterate after ~1000 median step times)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cmp"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "ocp_resnet", "compare", "--n-samples", "100", "--blocks", "4",
                        "--optimizers", "adam,sgd,ipopt-ms", "--epochs", "100", "--no-polish", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    traces = json.loads((out / "compare.json").read_text())["traces"]
    for name, tr in traces.items():
        t = np.asarray(tr["time_s"])
        step = float(np.median(np.diff(t)))
        assert step > 0 and t[0] <= 50 * step, (name, t[0], step)
