"""A corpus of bad inputs: every user error gives one line naming the fix, exit 2, no traceback.

Most cases run in-process through ``ocp_resnet.cli.main`` (fast); a few run as a real
subprocess to prove that the console script prints no traceback. The API cases check that the
same mistakes raise :class:`ValidationError` (never a bare TypeError/ValueError/IndexError).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ocp_resnet.cli import main
from ocp_resnet.errors import ValidationError

from .helpers import run_cli

# --------------------------------------------------------------------------- data files
BAD_FILES = {
    "nan.npz": dict(X=np.array([[np.nan, 1.0], [0.0, 1.0]]), y=np.array([0, 1])),
    "inf.npz": dict(X=np.array([[np.inf, 1.0], [0.0, 1.0]]), y=np.array([0, 1])),
    "noy.npz": dict(X=np.zeros((4, 2))),
    "empty.npz": dict(X=np.zeros((0, 2)), y=np.zeros(0, int)),
    "oneclass.npz": dict(X=np.arange(10.0).reshape(5, 2), y=np.zeros(5, int)),
    "neglabel.npz": dict(X=np.arange(10.0).reshape(5, 2), y=np.array([0, 1, -1, 0, 1])),
    "fraclabel.npz": dict(X=np.arange(8.0).reshape(4, 2), y=np.array([0, 1, 0.5, 1])),
    "strings.npz": dict(X=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1])),
    "y2d.npz": dict(X=np.arange(8.0).reshape(4, 2), y=np.array([[0, 1], [0, 1]])),
    "nofeatures.npz": dict(X=np.zeros((4, 0)), y=np.array([0, 1, 0, 1])),
    "x1d.npz": dict(X=np.zeros(4), y=np.array([0, 1, 0, 1])),
    "ylength.npz": dict(X=np.arange(8.0).reshape(4, 2), y=np.array([0, 1, 0])),
    "onebased.npz": dict(X=np.arange(12.0).reshape(6, 2), y=np.array([1, 2, 1, 2, 1, 2])),
    "hugelabel.npz": dict(X=np.arange(8.0).reshape(4, 2), y=np.array([0, 10**9, 0, 1])),
}


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Bad data files in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    for name, arrays in BAD_FILES.items():
        np.savez(name, **arrays)
    Path("corrupt.npz").write_bytes(b"this is not a zip archive")
    Path("text.csv").write_text("a,b,label\n1,2,x\n")
    Path("onecolumn.csv").write_text("1\n2\n")
    Path("headeronly.csv").write_text("x1,x2,label\n")
    Path("data.txt").write_text("1,2,0\n")
    Path("afile").write_text("not a directory\n")
    from ocp_resnet.model.architecture import ArchSpec

    np.savez("deeper.npz", **ArchSpec.uniform(2, 2, 11, 2).init_params("random", 0))  # 11 blocks, not 10
    return tmp_path


def assert_one_line_error(rc, err, hint, code=2):
    assert rc == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0]
    assert hint.lower() in lines[0].lower(), f"{hint!r} not in {lines[0]!r}"


# (argv, a phrase of the message that names the fix)
SOLVE_CASES = [
    # data
    (["--dataset", "nan.npz"], "NaN or inf"),
    (["--dataset", "inf.npz"], "clean or impute"),
    (["--dataset", "noy.npz"], "arrays named 'X' and 'y'"),
    (["--dataset", "empty.npz"], "give at least two samples"),
    (["--dataset", "oneclass.npz"], "at least two"),
    (["--dataset", "neglabel.npz"], "0..C-1"),
    (["--dataset", "fraclabel.npz"], "integers 0..C-1"),
    (["--dataset", "strings.npz"], "numeric"),
    (["--dataset", "y2d.npz"], "one label per row"),
    (["--dataset", "nofeatures.npz"], "at least one feature"),
    (["--dataset", "x1d.npz"], "must be 2-D"),
    (["--dataset", "ylength.npz"], "one label per row"),
    (["--dataset", "corrupt.npz"], "numpy.savez"),
    (["--dataset", "text.csv"], "numbers only"),
    (["--dataset", "onecolumn.csv"], "last label column"),
    (["--dataset", "headeronly.csv"], "no data rows"),
    (["--dataset", "onebased.npz"], "relabel them"),
    (["--dataset", "hugelabel.npz"], "every class present"),
    (["--dataset", "data.txt"], "use .npz, .csv"),
    (["--dataset", "missing.npz"], "use one of spirals"),
    (["--dataset", "spirale"], "use one of spirals, moons"),
    (["--n-samples", "0"], "--n-samples must be an integer >= 1"),
    (["--n-samples", "1"], "at least two"),
    (["--noise", "-1"], "noise must be >= 0"),
    (["--dataset", "digits", "--dim", "0"], "dim (number of PCA components) must be an integer >= 1"),
    (["--dataset", "digits", "--dim", "-3"], "must be an integer >= 1"),
    (["--seed", "-1"], "seed must be an integer >= 0"),
    # architecture
    (["--blocks", "-1"], "blocks must be an integer >= 0"),
    (["--blocks", "two"], "invalid int value"),
    (["--width", "0"], "width must be an integer >= 1"),
    (["--width", "abc"], "comma list of integers"),
    (["--width", "2,3"], "needs N+1 = 11 entries"),
    (["--width", "1"], "use --width >= 2 or --stem linear"),
    (["--branch", "resnet"], "use one of single, basic"),
    (["--branch", "basic", "--hidden", "0"], "hidden width must be an integer >= 1"),
    (["--stem", "conv"], "use one of pad, linear"),
    (["--activation", "gelu"], "use one of tanh, softplus, smooth_relu"),
    (["--activation", "relu"], "use one of tanh, softplus, smooth_relu"),
    (["--step", "0"], "step must be > 0"),
    (["--step", "nan"], "step must be a finite number"),
    # objective
    (["--loss", "hinge"], "use one of ce, bce, mse, sce"),
    (["--loss", "bce", "--dataset", "digits", "--dim", "4"], "use --loss ce, --loss sce or --loss mse"),
    (["--loss", "sce", "--label-smoothing", "0"], "--label-smoothing > 0"),
    (["--label-smoothing", "2"], "--label-smoothing must be <= 1"),
    (["--gamma", "-1"], "gamma must be >= 0"),
    (["--gamma", "abc"], "comma list of numbers"),
    (["--gamma", "nan"], "gamma must be a finite number"),
    (["--gamma", ","], "give a number or a comma list"),
    (["--gamma", "0.1,0.2"], "one value per block"),
    (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["--weight-decay", "inf"], "--weight-decay must be a finite number"),
    (["--weight-decay", "abc"], "invalid float value"),
    # solver
    (["--tol", "0"], "tol must be > 0"),
    (["--tol=-1e-8"], "tol must be > 0"),
    (["--max-iter", "-1"], "--max-iter must be an integer >= 0"),
    (["--print-level", "13"], "print_level must be 0..12"),
    (["--method", "collocation"], "use one of auto, multiple-shooting, single-shooting, newton"),
    (["--hessian", "bfgs"], "use one of auto, exact, lbfgs"),
    (["--ipopt", "mumps_pivot_order"], "NAME=VALUE"),
    (["--ipopt", "no_such_option=3"], "No such IPOPT option: no_such_option"),
    (["--ipopt", "tol=abc"], "check the names and value types"),
    (["--init", "warm"], "use random, zeros, or the path"),
    (["--init", "corrupt.npz"], "corrupt or not an .npz"),
    (["--init", "deeper.npz"], "(--blocks 10, --width 2, --branch single); check these arguments against the weights file"),
    (["--bogus-flag"], "unrecognized arguments"),
    # output
    (["--out", "afile", "--overwrite"], "is not a directory"),
    (["--out", "afile/run"], "is a file, not a directory"),
]


@pytest.mark.parametrize("argv,hint", SOLVE_CASES, ids=[" ".join(a) for a, _ in SOLVE_CASES])
def test_solve_bad_input(files, capsys, argv, hint):
    out_given = "--out" in argv
    quiet = [] if "--print-level" in argv else ["--quiet"]  # --quiet sets the print level itself
    full = ["solve", *quiet, *argv] + ([] if out_given else ["--out", "run"])
    rc, _, err = run_cli(full, capsys)
    assert_one_line_error(rc, err, hint)
    assert not Path("run").exists()  # nothing written
    assert not [p for p in Path(".").iterdir() if p.name.startswith(".run.tmp")]


def test_debug_shows_the_traceback(files, capsys):
    with pytest.raises(ValidationError, match="gamma must be >= 0"):
        main(["solve", "--gamma", "-1", "--debug", "--out", "run"])
    with pytest.raises(ValidationError, match="blocks must be"):
        main(["--debug", "solve", "--blocks", "-1", "--out", "run"])


# --------------------------------------------------------------------------- run directories
@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A small, complete run directory (a few IPOPT iterations)."""
    d = tmp_path_factory.mktemp("runs") / "good"
    rc = main(["solve", "--quiet", "--n-samples", "20", "--blocks", "2", "--max-iter", "5", "--out", str(d)])
    assert rc in (0, 1) and (d / "metrics.json").exists()
    return d


def _corrupt(good_run, tmp_path, how):
    d = tmp_path / "run"
    shutil.copytree(good_run, d)
    how(d)
    return d


def _swap_weights(d):  # the weights of a 3-block net in a 2-block run
    from ocp_resnet.model.architecture import ArchSpec

    spec = ArchSpec.uniform(2, 2, 3, 2)
    np.savez(d / "solution.npz", **spec.init_params("random", 0))


def _edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            cfg[section][field] = value
        elif value is None:
            del cfg[section]
        else:
            cfg[section] = value
    (d / "config.json").write_text(json.dumps(cfg))


EVALUATE_CASES = [
    ("missing", lambda d: shutil.rmtree(d), "does not exist"),
    ("a file", lambda d: (shutil.rmtree(d), d.write_text("x")), "is not a directory"),
    ("no config", lambda d: (d / "config.json").unlink(), "the run directory is incomplete"),
    ("corrupt config", lambda d: (d / "config.json").write_text("{not json"), "the file is corrupt"),
    ("config is a list", lambda d: (d / "config.json").write_text("[1, 2]"), "no 'architecture' section"),
    ("no architecture", lambda d: _edit_config(d, architecture=None), "no 'architecture' section"),
    ("unknown field", lambda d: _edit_config(d, architecture__colour="red"), "use only input_dim"),
    ("bad width in config", lambda d: _edit_config(d, architecture__stem_width=-2), "width must be an integer >= 1"),
    ("bad loss in config", lambda d: _edit_config(d, objective__loss="hinge"), "use one of ce, bce"),
    ("no weights", lambda d: (d / "solution.npz").unlink(), "no solution.npz"),
    ("corrupt weights", lambda d: (d / "solution.npz").write_bytes(b"garbage"), "corrupt or not an .npz"),
    ("weights of another net", _swap_weights, "does not match the architecture"),
    ("no data", lambda d: (d / "data.npz").unlink(), "data.npz is missing"),
    ("corrupt data", lambda d: (d / "data.npz").write_bytes(b"garbage"), "the file is corrupt"),
    ("data of another problem", lambda d: np.savez(d / "data.npz", X=np.zeros((4, 3)), y=[0, 1, 0, 1], n_classes=2),
     "does not match the data's 3 features"),
]


@pytest.mark.parametrize("name,how,hint", EVALUATE_CASES, ids=[c[0] for c in EVALUATE_CASES])
def test_evaluate_bad_run_dir(good_run, tmp_path, capsys, name, how, hint):
    d = _corrupt(good_run, tmp_path, how)
    rc, out, err = run_cli(["evaluate", str(d)], capsys)
    assert_one_line_error(rc, err, hint)
    assert out == ""


def test_evaluate_unknown_backend(good_run, capsys):
    rc, _, err = run_cli(["evaluate", str(good_run), "--backend", "jax"], capsys)
    assert_one_line_error(rc, err, "use one of casadi")


def test_evaluate_good_run_works(good_run, capsys):
    rc, out, err = run_cli(["evaluate", str(good_run)], capsys)
    assert rc == 0 and "objective" in json.loads(out)


def test_warm_start_from_another_architecture(good_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(["solve", "--quiet", "--n-samples", "20", "--blocks", "3", "--init", str(good_run),
                          "--out", "run"], capsys)
    assert_one_line_error(rc, err, "(--blocks 3, --width 2, --branch single); check these arguments against the weights file")
    assert not Path("run").exists()


# --------------------------------------------------------------------------- other commands
# (command, argv, hint); "RUN" is replaced by the path of a good run directory
OTHER_CASES = [
    ("train", ["--epochs", "-1"], "epochs must be an integer >= 1"),
    ("train", ["--lr", "-1"], "lr must be > 0"),
    ("train", ["--optimizer", "rmsprop"], "use one of sgd, adam"),
    ("train", ["--batch-size", "-1"], "--batch-size must be an integer >= 0"),
    ("train", ["--val-fraction", "1.5"], "--val-fraction must be < 1"),
    ("train", ["--device", "tpu"], "use auto, cpu, cuda"),
    ("train", ["--dtype", "float16"], "use one of float32, float64"),
    ("train", ["--arch", "vit"], "use one of mlp, conv"),
    ("train", ["--arch", "conv", "--dataset", "spirals"], "needs image data"),
    ("train", ["--dataset", "nan.npz"], "NaN or inf"),
    ("train", ["--gamma", "-1"], "gamma must be >= 0"),
    ("train", ["--seed", "-1"], "seed must be an integer >= 0"),
    ("analyze", ["missing"], "does not exist"),
    ("analyze", ["RUN", "--vanish-tol", "-1"], "--vanish-tol must be >= 0"),
    ("analyze", ["afile"], "is not a directory"),
    ("analyze", ["MISMATCH"], "does not match the architecture"),
    ("prune", ["MISMATCH", "--out", "pruned"], "does not match the architecture"),
    ("prune", ["missing"], "does not exist"),
    ("prune", ["RUN", "--vanish-tol", "-1"], "--vanish-tol must be >= 0"),
    ("prune", ["RUN", "--out", "afile/x"], "is a file, not a directory"),
    ("prune", ["RUN", "--out", "RUN"], "already exists"),
    ("sweep", ["--blocks", "a"], "comma list of integers"),
    ("sweep", ["--blocks", "-1"], "blocks must be an integer >= 0"),
    ("sweep", ["--gamma", "-1"], "gamma must be >= 0"),
    ("sweep", ["--backend", "jax"], "use one of casadi, torch"),
    ("sweep", ["--max-iter", "-1"], "--max-iter must be an integer >= 0"),
    ("compare", ["--optimizers", "newton"], "use one of ipopt-ms"),
    ("compare", ["--targets", "-1"], "target must be > 0"),
    ("compare", ["--lr", "adam=x"], "must be a number"),
    ("compare", ["--tol", "0"], "tol must be > 0"),
]


def _other_id(case):
    c, a, _ = case.values if hasattr(case, "values") else case
    return " ".join([c, *a])


@pytest.mark.parametrize("command,argv,hint", OTHER_CASES, ids=[_other_id(c) for c in OTHER_CASES])
def test_other_commands_bad_input(files, good_run, capsys, command, argv, hint):
    from ocp_resnet.cli import COMMANDS

    if command not in COMMANDS:
        pytest.skip(f"no {command} command yet")
    if "MISMATCH" in argv:  # a run whose solution.npz holds the weights of a deeper net
        shutil.copytree(good_run, "mismatch")
        _swap_weights(Path("mismatch"))
    argv = [str(good_run) if a == "RUN" else "mismatch" if a == "MISMATCH" else a for a in argv]
    writes = command in ("train", "sweep", "compare")
    before = sorted(os.listdir("."))
    rc, _, err = run_cli([command, *argv, *(["--out", "run", "--quiet"] if writes and command != "compare" else []),
                          *(["--out", "run"] if command == "compare" else [])], capsys)
    assert_one_line_error(rc, err, hint)
    assert sorted(os.listdir(".")) == before  # nothing written


# --------------------------------------------------------------------------- subprocess
SUBPROCESS_CASES = [
    (["solve", "--gamma", "-1"], "gamma must be >= 0"),
    (["solve", "--dataset", "corrupt.npz"], "numpy.savez"),
    (["evaluate", "no/such/run"], "does not exist"),
    (["solve", "--blocks", "x"], "invalid int value"),
]


@pytest.mark.parametrize("argv,hint", SUBPROCESS_CASES, ids=[" ".join(a) for a, _ in SUBPROCESS_CASES])
def test_console_script_prints_no_traceback(files, argv, hint):
    cmd = [sys.executable, "-c", "from ocp_resnet.cli import entry; entry()", *argv, "--out", "run"]
    if argv[0] == "evaluate":
        cmd = cmd[:-2]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert_one_line_error(p.returncode, p.stderr, hint)
    assert p.stdout == ""


# --------------------------------------------------------------------------- the API
def _problem(**kw):
    from ocp_resnet.data.datasets import load_dataset
    from ocp_resnet.model.problem import Problem

    return Problem.build(load_dataset("spirals", n_samples=20), **{"blocks": 2, "loss": "bce", **kw})


def _api_cases():
    from ocp_resnet.data.datasets import Dataset, check_dataset, load_dataset
    from ocp_resnet.model.architecture import ArchSpec, BlockSpec
    from ocp_resnet.model.objective import ObjectiveSpec
    from ocp_resnet.model.problem import Problem
    from ocp_resnet.runs import Run, check_target, load_weights
    from ocp_resnet.solvers import IpoptOptions, initial_weights

    X = np.random.default_rng(0).normal(size=(6, 2))
    y = np.array([0, 1, 0, 1, 0, 1])
    return [
        ("ArchSpec input_dim 0", lambda: ArchSpec(0, 1, 2), "input_dim must be an integer >= 1"),
        ("ArchSpec width float", lambda: ArchSpec.uniform(2, 1, 3, 2.5), "width must be an integer"),
        ("ArchSpec blocks str", lambda: ArchSpec.uniform(2, 1, "3", 2), "blocks must be an integer"),
        ("ArchSpec blocks not a list", lambda: ArchSpec(2, 1, 2, blocks=3), "sequence of BlockSpec"),
        ("ArchSpec block dict typo", lambda: ArchSpec(2, 1, 2, blocks=[{"widht": 2}]), "use only width"),
        ("ArchSpec from_dict typo", lambda: ArchSpec.from_dict({"input_dim": 2, "n_output": 1}), "use only input_dim"),
        ("BlockSpec branch", lambda: BlockSpec(2, "dense"), "use one of single"),
        ("BlockSpec bool width", lambda: BlockSpec(True), "block width must be an integer"),
        ("ObjectiveSpec gamma str", lambda: ObjectiveSpec(gamma="1"), "gamma must be a finite number"),
        ("ObjectiveSpec gamma list neg", lambda: ObjectiveSpec(gamma=(0.1, -0.1)), "gamma must be >= 0"),
        ("ObjectiveSpec lambda None", lambda: ObjectiveSpec(weight_decay=None), "weight_decay must be a finite number"),
        ("ObjectiveSpec from_dict typo", lambda: ObjectiveSpec.from_dict({"los": "ce"}), "use only loss"),
        ("IpoptOptions tol str", lambda: IpoptOptions(tol="1e-8"), "tol must be a finite number"),
        ("IpoptOptions ipopt list", lambda: IpoptOptions(ipopt=["tol=1"]), "must be a mapping"),
        ("IpoptOptions unknown", lambda: IpoptOptions(ipopt={"no_such": 1}), "No such IPOPT option"),
        ("check_dataset object X", lambda: check_dataset(Dataset(np.array([[None, 1]], dtype=object), np.array([0]), 2)),
         "numeric array"),
        ("check_dataset n_classes 1", lambda: check_dataset(Dataset(X, np.zeros(6, int), 1)), "at least two"),
        ("check_dataset label >= C", lambda: check_dataset(Dataset(X, y * 2, 2)), "out of range"),
        ("load_dataset n_samples float", lambda: load_dataset("spirals", n_samples=2.5), "n_samples must be an integer"),
        ("Problem classes vs head", lambda: Problem(ArchSpec.uniform(2, 3, 2, 2), ObjectiveSpec("ce"), Dataset(X, y, 2)),
         "needs 2"),
        ("Problem features vs spec", lambda: Problem(ArchSpec.uniform(3, 2, 2, 3), ObjectiveSpec("ce"), Dataset(X, y, 2)),
         "does not match the data's 2 features"),
        ("Problem gamma list", lambda: _problem(gamma=[0.1, 0.2, 0.3]), "one value per block"),
        ("initial_weights size", lambda: initial_weights(_problem(), np.zeros(3)), "this spec needs"),
        ("initial_weights nan", lambda: initial_weights(_problem(), np.full(_problem().spec.n_params, np.nan)),
         "NaN or inf"),
        ("initial_weights mapping", lambda: initial_weights(_problem(), {"head.W": np.zeros((1, 2))}), "are missing"),
        ("initial_weights type", lambda: initial_weights(_problem(), 3.0), "init must be"),
        ("load_weights missing", lambda: load_weights("/no/such/dir"), "does not exist"),
        ("Run missing", lambda: Run("/no/such/dir"), "does not exist"),
        ("check_target parent is a file", lambda: check_target(__file__ + "/x"), "is a file"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("name,call,hint", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(name, call, hint):
    with pytest.raises(ValidationError) as info:
        call()
    assert hint.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)


def test_corpus_size():
    """The issue asks for at least 30 bad inputs through the CLI and the API."""
    cli = len(SOLVE_CASES) + len(EVALUATE_CASES) + len(SUBPROCESS_CASES) + len(OTHER_CASES) + 2
    assert cli >= 30 and len(API_CASES) >= 20


def test_vanish_tol_is_the_threshold_and_tol_a_deprecated_alias_that_warns(capsys: pytest.CaptureFixture[str]) -> None:
    """analyze/prune call the vanishing threshold --vanish-tol; the old --tol still works and warns."""
    from ocp_resnet.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["analyze", "RUN", "--vanish-tol", "0.01"]).vanish_tol == 0.01
    assert parser.parse_args(["prune", "RUN"]).vanish_tol == 1e-3
    assert "deprecated" not in capsys.readouterr().err
    assert parser.parse_args(["prune", "RUN", "--tol", "0.02"]).vanish_tol == 0.02
    assert "--tol is deprecated here" in capsys.readouterr().err
