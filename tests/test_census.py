"""The census benchmark's drawing and summary arithmetic (benchmarks/census.py); no solves here."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


census = _load("census")


def test_drawing_is_deterministic_and_seeded():
    a, b = census.draw_problems(0), census.draw_problems(0)
    assert a == b
    assert [p["id"] for p in a] != [p["id"] for p in census.draw_problems(1)]
    ids = [p["id"] for p in a]
    assert len(ids) == len(set(ids)) == 46
    assert [i.split("-")[0] for i in ids] == [f"p{k:02d}" for k in range(46)]


def test_drawn_flags_respect_the_ranges():
    problems = census.draw_problems(0)
    for p in problems:
        f = p["flags"]
        assert f["dataset"] in census.DATASETS
        assert f["noise"] in census.NOISE[f["dataset"]]
        assert 4 <= f["blocks"] <= 12
        assert f["loss"] in census.LOSSES and (f["loss"] != "bce" or census.N_CLASSES[f["dataset"]] == 2)
        assert f["gamma"] in census.GAMMAS and f["weight-decay"] in census.WEIGHT_DECAYS
    base, wide, large = problems[:40], problems[40:43], problems[43:]
    assert all(100 <= p["flags"]["n-samples"] <= 300 and 2 <= p["flags"]["width"] <= 4 for p in base)
    assert all(p["flags"]["width"] == 6 and p["flags"]["n-samples"] <= 300 for p in wide)
    assert all(p["flags"]["n-samples"] == 500 and p["flags"]["width"] <= 4 for p in large)
    # the random part covers the space: every dataset, width and loss occurs
    assert {p["flags"]["dataset"] for p in base} == set(census.DATASETS)
    assert {p["flags"]["width"] for p in base} == {2, 3, 4}
    assert {p["flags"]["loss"] for p in base} == set(census.LOSSES)


def test_flag_list_round_trips_floats():
    flags = {"dataset": "xor", "gamma": 0.05, "weight-decay": 1e-05, "blocks": 4}
    assert census.flag_list(flags) == ["--dataset", "xor", "--gamma", "0.05", "--weight-decay", "1e-05", "--blocks", "4"]


def test_percentile_matches_linear_interpolation():
    xs = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert census.percentile(xs, 50) == 3.0
    assert census.percentile(xs, 90) == pytest.approx(4.0 + 0.6 * 6.0)  # position 3.6 between 4 and 10
    assert census.percentile([7.0], 90) == 7.0
    assert math.isnan(census.percentile([], 90))


def _rec(pid: str, it: int, wall: float, cpu: float, J: float | None, width: int = 2, status: str = "success",
         collapsed: bool = False) -> dict:
    return {"id": pid, "flags": {"width": width}, "status": status, "converged": status == "success",
            "iterations": it, "wall_s": wall, "cpu_s": cpu, "objective": J, "collapsed": collapsed,
            "method": "multiple-shooting", "hessian": "exact", "jit": False}


def test_summary_arithmetic_on_a_hand_written_file(tmp_path):
    a = [_rec("p00", 10, 1.0, 0.5, 1.0), _rec("p01", 20, 2.0, 1.5, 2.0, width=4),
         _rec("p02", 30, 3.0, 2.5, 3.0, width=4, collapsed=True),
         _rec("p03", 40, 9.0, 8.5, None, status="timeout")]
    b = [_rec("p00", 5, 1.0, 1.0, 1.01), _rec("p01", 5, 1.0, 1.0, 2.2), _rec("p02", 5, 1.0, 1.0, 2.7)]
    for label, rows in (("a", a), ("b", b)):
        (tmp_path / f"census-{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"torn')
    rows = census.load_records(tmp_path / "census-a.jsonl")
    assert len(rows) == 4  # the torn last line is skipped
    s = census.label_stats(rows)
    assert (s["count"], s["converged"], s["collapsed"], s["timeouts"]) == (4, 3, 1, 1)
    assert s["it_med"] == 25 and s["it_max"] == 40 and s["it_p90"] == pytest.approx(37.0)
    assert s["wall_med"] == 2.5 and s["wall_max"] == 9.0 and s["cpu_med"] == 2.0
    assert s["w4_max_wall"] == 3.0 and s["w4_ratio"] == pytest.approx(3.0 / 2.5)
    c = census.compare(rows, census.load_records(tmp_path / "census-b.jsonl"))
    assert c["common"] == 3
    # ratios 1.01, 1.1, 0.9: p00 is 1 % worse (within the 2 %), p01 10 % worse, p02 10 % better
    assert c["ratio_med"] == pytest.approx(1.01) and c["ratio_max"] == pytest.approx(1.1)
    assert c["worse"] == ["p01"] and c["better"] == ["p02"]
    text = census.summary(["a", "b"], tmp_path)
    assert "| a | 4 | 3 | 1 | 1 | 25 / 37 / 40 |" in text
    assert "| | 3 | 1.0100 | 1.1000 | 1 | 1 |" in text


def test_run_process_interrupts_then_kills_past_the_cap():
    import sys

    # a child that dies on SIGINT ends within the grace period; one that ignores it is killed
    polite = census.run_process([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                                cap=1.0, grace=20.0)
    assert polite["timed_out"] and polite["exit"] is None and polite["wall_s"] < 50 and "up" in polite["output"]
    stubborn = census.run_process([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, "
                                   "signal.SIG_IGN); print('up', flush=True); time.sleep(60)"], cap=1.0, grace=0.5)
    assert stubborn["timed_out"] and stubborn["wall_s"] < 50  # stopped long before its 60 s sleep ends
    done = census.run_process([sys.executable, "-c", "print('ok')"], cap=60.0)
    assert not done["timed_out"] and done["exit"] == 0 and done["output"].strip() == "ok" and done["cpu_s"] > 0
