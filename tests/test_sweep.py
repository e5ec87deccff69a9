"""Sweeps write one row per grid point; the sub-network bound flags bad deep solutions."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from ocp_resnet.analysis.bound import check_bound, pad_weights, padded_bound
from ocp_resnet.analysis.sweep import COLUMNS, grid_problem, read_csv, run_name, run_sweep, summarize
from ocp_resnet.data.datasets import load_dataset
from ocp_resnet.errors import ValidationError
from ocp_resnet.model.problem import Problem
from ocp_resnet.solvers import IpoptOptions, solve

FAST = {"method": "multiple-shooting", "tol": 1e-8, "max_iter": 500}


def _base(n: int = 20, **kw) -> Problem:
    ds = load_dataset("spirals", n_samples=n, seed=0)
    return Problem.build(ds, **{"blocks": 1, "width": 2, "loss": "mse", "gamma": 0.0, "weight_decay": 1e-3, **kw})


def test_sweep_writes_one_row_per_grid_point(tmp_path) -> None:
    out = tmp_path / "sw"
    rows = run_sweep(_base(), [0.0, 0.5], [1, 2], [0, 1], out, solver=FAST)
    assert len(rows) == 8
    with open(out / "sweep.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 8 and tuple(table[0].keys()) == COLUMNS
    assert {(float(r["gamma"]), int(r["blocks"]), int(r["seed"])) for r in table} == {
        (g, n, s) for g in (0.0, 0.5) for n in (1, 2) for s in (0, 1)}
    back = read_csv(out)
    assert len(back[3]["stage_losses"]) == back[3]["blocks"] + 1
    assert all((out / "runs" / f"gamma{r['gamma']:g}-N{r['blocks']}-seed{r['seed']}" / "solution.npz").exists()
               for r in back)
    # resume reads the finished runs back instead of solving again (same numbers)
    again = run_sweep(_base(), [0.0, 0.5], [1, 2], [0, 1], out, solver=FAST, resume=True)
    assert [r["objective"] for r in again] == pytest.approx([r["objective"] for r in rows], rel=1e-12)
    with pytest.raises(ValidationError, match="already exists"):
        run_sweep(_base(), [0.0], [1], [0], out, solver=FAST)
    s = summarize(rows)
    assert len(s) == 4 and all(x["runs"] == 2 for x in s)


def test_sweep_cli(tmp_path, capsys) -> None:
    from ocp_resnet.cli import main

    out = tmp_path / "cli"
    code = main(["sweep", "--n-samples", "20", "--gamma", "0,1", "--blocks", "1,2", "--seeds", "0",
                 "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "comparisons" in text
    assert len(read_csv(out)) == 4
    for f in ("summary.csv", "bound.csv", "objective_vs_depth.png", "active_blocks_vs_depth.png"):
        assert (out / f).exists()
    assert main(["sweep", "--blocks", "2,x", "--out", str(tmp_path / "bad")]) == 2
    assert main(["sweep", "--width", "2,3", "--blocks", "1", "--out", str(tmp_path / "bad")]) == 2
    assert main(["sweep", "--backend", "jax", "--out", str(tmp_path / "bad")]) == 2


def test_padded_solution_meets_the_bound_exactly() -> None:
    base = _base(n=20)
    g = 0.5
    shallow = grid_problem(base, g, 1)
    sol = solve(shallow, options=IpoptOptions(tol=1e-10), seed=0)
    assert sol.success
    deep = grid_problem(base, g, 3)
    padded = pad_weights(shallow.spec, sol.weights, deep.spec)
    ev = deep.evaluate(padded)
    bound = padded_bound(sol.objective, sol.evaluation.final_loss, [g] * 3, 1, 3)
    assert ev.objective == pytest.approx(bound, rel=1e-12)


def test_bound_flags_a_bad_deep_solution() -> None:
    base = _base(n=20)
    g = 0.5
    shallow = grid_problem(base, g, 1)
    sol = solve(shallow, options=IpoptOptions(tol=1e-10), seed=0)
    deep = grid_problem(base, g, 3)
    bad = deep.evaluate(deep.spec.init_params("random", seed=4, scale=2.0))  # not optimised at all
    good = deep.evaluate(pad_weights(shallow.spec, sol.weights, deep.spec))  # feasible, meets the bound
    rows = [
        {"gamma": g, "blocks": 1, "seed": 0, "objective": sol.objective, "final_loss": sol.evaluation.final_loss,
         "status": sol.status.value},
        {"gamma": g, "blocks": 3, "seed": 0, "objective": bad.objective, "final_loss": bad.final_loss, "status": "success"},
        {"gamma": g, "blocks": 3, "seed": 1, "objective": good.objective, "final_loss": good.final_loss, "status": "success"},
    ]
    report = check_bound(rows)
    assert len(report.checks) == 2
    assert [(c.N, c.seed, c.M) for c in report.violations] == [(3, 0, 1)]
    assert report.violations[0].excess > 0
    assert "1 violations" in report.format()


def test_bound_rows_need_columns() -> None:
    with pytest.raises(ValidationError, match="lacks"):
        check_bound([{"gamma": 0.0}])
    assert check_bound([]).checks == []


def test_failed_shallow_runs_are_not_references() -> None:
    rows = [
        {"gamma": 1.0, "blocks": 1, "seed": 0, "objective": 0.1, "final_loss": 0.1, "status": "max_iter"},
        {"gamma": 1.0, "blocks": 2, "seed": 0, "objective": 5.0, "final_loss": 1.0, "status": "success"},
    ]
    assert check_bound(rows).checks == []


@pytest.mark.skipif(__import__("importlib").util.find_spec("ocp_resnet.torch") is None,
                    reason="the torch back-end (ocp_resnet.torch) is not installed")
def test_torch_sweep_and_fine_tune(tmp_path) -> None:
    from ocp_resnet.analysis.prune import prune_run
    from ocp_resnet.runs import Run

    out = tmp_path / "t"
    rows = run_sweep(_base(), [0.5], [2], [0], out, backend="torch",
                     solver={"optimizer": "lbfgs", "epochs": 5})
    assert len(rows) == 1 and rows[0]["backend"] == "torch" and rows[0]["status"] in ("success", "max_iter")
    rd = out / "runs" / "gamma0.5-N2-seed0"
    assert Run(rd).config["solver"]["backend"] == "torch"
    report, pruned, w = prune_run(rd, tol=1.0, resolve=True, out=tmp_path / "p")  # tol 1: prune every block
    assert report.blocks_after == 0 and report.resolve["backend"] == "torch"
    assert Run(tmp_path / "p").problem().spec.n_blocks == 0


def test_a_solver_object_gives_the_dict_sweep(tmp_path) -> None:
    """run_sweep takes a solver object; an option dict is the same sweep, and the recorded solver
    reads back into the same object."""
    import json

    from ocp_resnet.solvers import IpoptSolver, solver_from_record

    typed = IpoptSolver("multiple-shooting", IpoptOptions(tol=1e-8, max_iter=500, hessian="exact"))
    a = run_sweep(_base(), [0.5], [1], [0], tmp_path / "a", solver=typed)
    b = run_sweep(_base(), [0.5], [1], [0], tmp_path / "b", solver={**FAST, "hessian": "exact"})
    assert [r["objective"] for r in a] == [r["objective"] for r in b]
    recorded = json.loads((tmp_path / "a" / "sweep.json").read_text())["solver"]
    assert recorded == {**FAST, "hessian": "exact"}
    assert solver_from_record(recorded, "casadi") == typed
    with pytest.raises(ValidationError, match="does not match"):
        run_sweep(_base(), [0.5], [1], [0], tmp_path / "c", backend="torch", solver=typed)


def test_torch_solver_record_round_trip() -> None:
    pytest.importorskip("torch")
    from ocp_resnet.solvers import TorchSolver, solver_from_record
    from ocp_resnet.solvers.factory import sweep_record

    s = solver_from_record({"optimizer": "lbfgs", "epochs": 5, "lr": None, "batch_size": 0, "threads": 1,
                            "momentum": 0.5, "unrelated": "ignored"}, "torch")
    assert isinstance(s, TorchSolver) and s.backend == "torch" and s.options.epochs == 5 and s.threads == 1
    assert sweep_record(s) == {"optimizer": "lbfgs", "epochs": 5, "lr": None, "batch_size": 0, "threads": 1,
                               "momentum": 0.5}
    assert solver_from_record(sweep_record(s), "torch") == s


def test_resume_refuses_other_flags(tmp_path) -> None:
    out = tmp_path / "r"
    run_sweep(_base(), [0.0], [1], [0], out, solver=FAST)
    with pytest.raises(ValidationError, match="solved with another problem than this sweep: use the original problem"):
        run_sweep(_base(loss="sce"), [0.0], [1], [0], out, solver=FAST, resume=True)


def test_ctrl_c_stops_the_whole_sweep_and_resume_reruns_the_point(tmp_path, monkeypatch) -> None:
    """An interrupted grid point ends the sweep (KeyboardInterrupt → CLI exit 130); --resume redoes it."""
    import json

    import pytest

    from ocp_resnet.analysis import sweep as sweep_mod

    real = sweep_mod._solve_point
    calls = []

    def interrupted_second(problem, seed, settings, log, restarts=1):
        weights, metrics, stats = real(problem, seed, settings, log, restarts)
        calls.append(seed)
        if len(calls) == 2:
            metrics = {**metrics, "status": "interrupted", "success": False}
        return weights, metrics, stats

    out = tmp_path / "sw"
    monkeypatch.setattr(sweep_mod, "_solve_point", interrupted_second)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_base(), [0.5], [1], [0, 1, 2], out, solver=FAST)
    assert len(calls) == 2  # the third point never ran
    assert len(read_csv(out / "sweep.csv")) == 2
    assert json.loads((out / "runs" / run_name(0.5, 1, 1) / "metrics.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(sweep_mod, "_solve_point", real)
    rows = run_sweep(_base(), [0.5], [1], [0, 1, 2], out, solver=FAST, resume=True)
    assert [r["status"] for r in rows] == ["success"] * 3


# ----------------------------------------------------------------- parallel sweeps
def _numbers(rows):
    return [{k: v for k, v in r.items() if k not in ("time_s", "run_dir")} for r in rows]


def test_jobs_2_gives_the_rows_of_jobs_1(tmp_path) -> None:
    grid = ([0.0, 0.5], [1, 2], [0])
    one = run_sweep(_base(), *grid, tmp_path / "one", solver=FAST)
    two = run_sweep(_base(), *grid, tmp_path / "two", solver=FAST, jobs=2)
    assert _numbers(two) == _numbers(one)  # identical numbers, same order
    w1 = np.load(tmp_path / "one" / "runs" / run_name(0.5, 2, 0) / "solution.npz")
    w2 = np.load(tmp_path / "two" / "runs" / run_name(0.5, 2, 0) / "solution.npz")
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    # resume with workers reads everything back
    again = run_sweep(_base(), *grid, tmp_path / "two", solver=FAST, jobs=2, resume=True)
    assert _numbers(again) == _numbers(one)


def test_dask_local_cluster_gives_the_rows_of_jobs_1(tmp_path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    grid = ([0.5], [1, 2], [0])
    one = run_sweep(_base(), *grid, tmp_path / "one", solver=FAST)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        dask_rows = run_sweep(_base(), *grid, tmp_path / "dask", solver=FAST, scheduler=cl.scheduler_address)
    assert _numbers(dask_rows) == _numbers(one)


def test_bad_jobs_and_missing_dask_are_named(tmp_path, monkeypatch) -> None:
    import builtins

    with pytest.raises(ValidationError, match="^jobs must be >= 1, or -1"):
        run_sweep(_base(), [0.0], [1], [0], tmp_path / "j", solver=FAST, jobs=0)
    real_import = builtins.__import__

    def no_dask(name, *a, **kw):
        if name.startswith("dask"):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ValidationError, match=r"ocp_resnet\[distributed\]"):
        run_sweep(_base(), [0.0], [1], [0], tmp_path / "d", solver=FAST, scheduler="tcp://127.0.0.1:1")


def test_imap_keeps_order_and_stops_submitting_on_ctrl_c() -> None:
    from types import SimpleNamespace

    from ocp_resnet import parallel

    with parallel.executor(1) as ex:
        assert list(parallel.imap(ex, pow, [(2, k) for k in range(5)])) == [1, 2, 4, 8, 16]
        stop = SimpleNamespace(requested=False)
        seen = []
        for r in parallel.imap(ex, pow, [(2, k) for k in range(5)], stop):
            seen.append(r)
            stop.requested = True  # Ctrl-C after the first result: nothing new is submitted
        assert seen == [1]
    assert parallel.n_jobs(-1) >= 1
