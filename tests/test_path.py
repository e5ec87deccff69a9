"""γ path (warm starts), restarts, collapse detection, held-out split, the analyze verdict."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ocp_resnet import Problem, load_dataset, path, solve
from ocp_resnet.analysis.blocks import analyze, verdict
from ocp_resnet.analysis.collapse import is_collapsed, linear_loss, linear_problem
from ocp_resnet.analysis.restarts import restart_seeds, solve_restarts
from ocp_resnet.data.validation import split
from ocp_resnet.errors import ValidationError
from ocp_resnet.solvers import make_solver

from .helpers import run_cli

GAMMAS = [0, 0.03, 0.1, 0.3, 1]


def spirals_problem(n=60, blocks=5, loss="mse", **kw):
    return Problem.build(load_dataset("spirals", n_samples=n), blocks=blocks, width=2, loss=loss,
                         gamma=kw.pop("gamma", 0.1), weight_decay=kw.pop("weight_decay", 1e-3), **kw)


# ------------------------------------------------------------------------------ path
def test_warm_started_path_needs_fewer_iterations_than_cold_starts():
    p = spirals_problem()
    warm = path(p, GAMMAS)
    cold = path(p, GAMMAS, warm_start=False)
    assert all(s.success for s in warm + cold)
    # The first point is the same cold solve in both.
    assert warm[0].iterations == cold[0].iterations
    assert np.isclose(warm[0].objective, cold[0].objective, rtol=1e-10)
    assert sum(s.iterations for s in warm) < sum(s.iterations for s in cold)
    # each point solves its own γ: the objective is that problem's objective of the weights
    for g, s in zip(GAMMAS, warm):
        assert s.objective == pytest.approx(spirals_problem(gamma=g).objective_value(s.w), rel=1e-10)


def test_path_accepts_a_factory_and_keeps_the_order():
    seen = []

    def factory(g):
        seen.append(g)
        return spirals_problem(n=30, blocks=2, gamma=g)

    sols = path(factory, [1, 0.1])
    assert seen == [1, 0.1] and len(sols) == 2
    with pytest.raises(ValidationError):
        path(factory, [])
    with pytest.raises(ValidationError):
        path(factory, [-1])


def test_path_cli_writes_csv_plot_and_normal_run_dirs(tmp_path, capsys):
    out = tmp_path / "p"
    rc, stdout, err = run_cli(["path", "--n-samples", 40, "--blocks", 3, "--gammas", "0,0.5", "--val-fraction", 0.25,
                               "--quiet", "--out", out], capsys)
    assert rc == 0, err
    rows = list(csv.DictReader(open(out / "path.csv")))
    assert [float(r["gamma"]) for r in rows] == [0, 0.5]
    for col in ("objective", "final_loss", "train_accuracy", "vanished", "recommended_depth", "iterations",
                "status", "solve_time_s", "val_accuracy"):
        assert col in rows[0]
    assert (out / "path.png").stat().st_size > 0
    rd = out / "runs" / "gamma0.5"
    m = json.loads((rd / "metrics.json").read_text())
    assert m["warm_started"] and "collapsed" in m and len(m["val_stage_accuracy"]) == 4
    assert (rd / "multipliers.npz").exists() and (rd / "val_data.npz").exists()
    # analyze / evaluate / prune read a path point like any run
    for cmd in (["analyze", rd], ["evaluate", rd], ["prune", rd, "--out", tmp_path / "pruned"]):
        rc, stdout, err = run_cli(cmd, capsys)
        assert rc == 0, err
    # 30 training samples of 40 (stratified): the run's data is the training part
    assert np.load(rd / "data.npz")["X"].shape[0] == 30


def test_path_cli_refuses_an_existing_out_and_bad_values_before_writing(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    rc, _, err = run_cli(["path", "--out", tmp_path / "p", "--gammas", "0"], capsys)
    assert rc == 2 and "already exists" in err
    for bad in (["--gammas", "a"], ["--gammas", "0,0"], ["--gammas", "-1"], ["--restarts", "0"],
                ["--init-seed", "-1"], ["--val-fraction", "1"], ["--vanish-tol", "-1"]):
        rc, _, err = run_cli(["path", "--out", tmp_path / "q", *bad], capsys)
        assert rc == 2 and err.count("\n") == 1, (bad, err)
        assert not (tmp_path / "q").exists(), bad


# ------------------------------------------------------------------------------ restarts
def test_restarts_keep_the_best_single_seed_and_each_restart_is_reproducible():
    p = spirals_problem(n=40, blocks=4)
    seeds = restart_seeds(3, 3)
    assert seeds == [3, 4, 5]
    best, records = solve_restarts(p, seeds)
    singles = [make_solver().solve(p, "random", s) for s in seeds]  # the solver restarts use by default
    assert [r.init_seed for r in records] == seeds
    for r, s in zip(records, singles):  # restart j == one plain solve with init seed S+j
        assert r.objective == s.objective and r.status == s.status.value
    assert best.objective == min(s.objective for s in singles if s.success)


def test_solve_cli_restarts_record_and_init_seed_reproduces(tmp_path, capsys):
    base = ["solve", "--n-samples", 40, "--blocks", 3, "--quiet"]
    rc, out, err = run_cli([*base, "--restarts", 2, "--init-seed", 5, "--out", tmp_path / "r"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert [r["init_seed"] for r in m["restarts"]] == [5, 6]
    assert {"init_seed", "objective", "status", "vanished"} <= set(m["restarts"][0])
    assert m["objective"] == min(r["objective"] for r in m["restarts"])
    rc, out, err = run_cli([*base, "--init-seed", 6, "--out", tmp_path / "one"], capsys)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert one["objective"] == m["restarts"][1]["objective"]
    # --init-seed changes the weights only: the data are those of --seed
    d1, d2 = np.load(tmp_path / "r" / "data.npz"), np.load(tmp_path / "one" / "data.npz")
    assert np.array_equal(d1["X"], d2["X"])


# ------------------------------------------------------------------------------ collapse
def test_collapse_flag_on_a_constructed_collapse():
    p = spirals_problem(n=60, blocks=4)
    lin = linear_problem(p)
    lsol = solve(lin, init="zeros")
    L = linear_loss(p)
    assert L == pytest.approx(lsol.evaluation.final_loss)
    # zero residual blocks + the linear classifier as head: the network *is* the linear model
    w = p.spec.init_params("zeros")
    w.update({k: v for k, v in lsol.weights.items() if k.startswith("head")})
    ev = p.evaluate(w)
    assert ev.final_loss == pytest.approx(L, rel=1e-12)
    assert is_collapsed(ev.final_loss, L)
    an = analyze(p, w)
    assert an.vanished == [0, 1, 2, 3]  # "vanished" by the norm test, yet no depth is recommended:
    line = verdict(an, collapsed=True, linear_loss=L)
    assert line.startswith("collapsed: blocks 0–3 look vanished") and "not a depth recommendation" in line
    assert "suffices" not in line
    # a good fit (N = 6, seed 0: accuracy 1.0) is far below the linear loss; the near-linear
    # local optimum of N = 4, seed 0 (γ = 0, accuracy 0.83) sits just above it
    good = solve(spirals_problem(n=60, blocks=6, gamma=0), seed=0)
    assert good.evaluation.final_loss < 0.1 * L and not is_collapsed(good.evaluation.final_loss, L)
    trapped = solve(spirals_problem(n=60, blocks=4, gamma=0), seed=0)
    assert is_collapsed(trapped.evaluation.final_loss, L)
    # no linear model does better than L: a random head is worse
    assert not is_collapsed(L * (1 - 1e-3), L) and is_collapsed(L * 1.01, L)


def test_strong_weight_decay_collapses_and_analyze_says_so(tmp_path, capsys):
    # λ = 1e-2 drives two spirals to the near-linear optimum (docs/vanishing.md §4)
    rc, out, err = run_cli(["solve", "--n-samples", 60, "--blocks", 4, "--weight-decay", 1e-2, "--quiet",
                            "--out", tmp_path / "c"], capsys)
    assert rc == 0, err
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert m["collapsed"] is True and m["final_loss"] >= m["linear_loss"] * (1 - 1e-6)
    assert "collapsed" in err
    rc, out, err = run_cli(["analyze", tmp_path / "c"], capsys)
    assert rc == 0 and "collapsed: yes" in out
    assert "not a depth recommendation" in out.strip().splitlines()[-1]


# ------------------------------------------------------------------------------ verdict
def test_verdict_names_the_vanished_tail_and_the_depth():
    p = spirals_problem(n=60, blocks=4)
    sol = solve(p, seed=0)
    w = dict(sol.weights)
    for name in p.spec.branch_names(3):  # switch block 3 off
        w[name] = np.zeros_like(w[name])
    an = analyze(p, w)
    assert 3 in an.vanished
    line = verdict(an, collapsed=False)
    assert line.startswith("block 3 vanished") or line.startswith("blocks")
    if an.recommended_depth < 4:
        assert f"depth {an.recommended_depth} suffices" in line
    full = analyze(p, sol.w)
    if not full.vanished:
        assert verdict(full, collapsed=False).startswith("no block vanished")


def test_solve_output_marks_vanished_rows(tmp_path, capsys):
    rc, out, err = run_cli(["solve", "--n-samples", 60, "--blocks", 4, "--weight-decay", 1e-2, "--quiet",
                            "--out", tmp_path / "c"], capsys)
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    marked = [int(line.split()[0]) for line in out.splitlines() if line.rstrip().endswith("vanished")]
    assert marked == m["vanished"]


# ------------------------------------------------------------------------------ held-out data
def test_split_is_stratified_seeded_and_disjoint():
    ds = load_dataset("moons", n_samples=101)
    tr, va = split(ds, 0.2, seed=3)
    tr2, va2 = split(ds, 0.2, seed=3)
    assert np.array_equal(va.X, va2.X)
    assert tr.n_samples + va.n_samples == 101 and va.n_samples == 21
    assert abs(np.mean(va.y) - np.mean(ds.y)) < 0.05
    rows = {tuple(x) for x in ds.X}
    assert {tuple(x) for x in tr.X} | {tuple(x) for x in va.X} == rows
    assert not ({tuple(x) for x in tr.X} & {tuple(x) for x in va.X})
    for bad in (0, 1, 1.5):
        with pytest.raises(ValidationError):
            split(ds, bad)


def test_val_fraction_bad_value_is_a_usage_error(tmp_path, capsys):
    rc, _, err = run_cli(["solve", "--val-fraction", 1.5, "--out", tmp_path / "x"], capsys)
    assert rc == 2 and "--val-fraction" in err and not (tmp_path / "x").exists()


def test_sweep_restarts_and_val_fraction(tmp_path, capsys):
    out = tmp_path / "s"
    rc, stdout, err = run_cli(["sweep", "--n-samples", 40, "--blocks", 3, "--gamma", "0.1", "--seeds", "0",
                               "--restarts", 2, "--val-fraction", 0.25, "--no-plots", "--quiet", "--out", out], capsys)
    assert rc == 0, err
    m = json.loads((out / "runs" / "gamma0.1-N3-seed0" / "metrics.json").read_text())
    assert [r["init_seed"] for r in m["restarts"]] == [0, 1]
    assert m["objective"] == min(r["objective"] for r in m["restarts"] if r["status"] == "success")
    assert "val_accuracy" in m and "collapsed" in m
    row = list(csv.DictReader(open(out / "sweep.csv")))[0]
    assert row["val_accuracy"] != "" and row["collapsed"] in ("True", "False")
    rc, _, err = run_cli(["sweep", "--restarts", 0, "--out", tmp_path / "t"], capsys)
    assert rc == 2 and "restarts" in err


def test_path_restarts_are_never_worse_than_the_warm_start_or_any_seed():
    p = spirals_problem(n=40, blocks=3)
    best = path(p, [1, 0.1], restarts=2)
    warm = path(p, [1, 0.1])
    singles = [path(p, [1, 0.1], warm_start=False, seed=s) for s in (0, 1)]
    assert best[0].objective == min(s[0].objective for s in singles)  # the first point: best of K cold
    assert best[1].objective <= min(s[1].objective for s in singles)  # later: best of warm and K cold
    if best[0].objective == warm[0].objective:  # same start point, so the same warm candidate
        assert best[1].objective <= warm[1].objective
