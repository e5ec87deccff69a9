"""Library messages name API arguments; the CLI prints them with its flags (cli._common.FLAGS)."""
from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from ocp_resnet import Problem, Status, load_dataset
from ocp_resnet.cli import build_parser, main
from ocp_resnet.cli._common import FLAGS, flags, set_command
from ocp_resnet.errors import ValidationError
from tests.helpers import ROOT

FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _digits():
    return load_dataset("digits", n_samples=50)


def test_library_error_names_the_argument_and_the_cli_names_the_flag(capsys, tmp_path) -> None:
    with pytest.raises(ValidationError) as exc:
        Problem.build(_digits(), width=2)
    msg = str(exc.value)
    assert "width >= 64 or stem='linear'" in msg and not FLAG.search(msg)
    assert main(["solve", "--dataset", "digits", "--n-samples", "50", "--width", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "use --width >= 64 or --stem linear" in err and "stem='linear'" not in err
    assert not (tmp_path / "r").exists()


def test_estimator_loss_error_names_loss(capsys, tmp_path) -> None:
    from ocp_resnet.estimator import OCPResNetClassifier

    X, y = np.random.default_rng(0).normal(size=(30, 2)), np.arange(30) % 3
    with pytest.raises(ValidationError) as exc:
        OCPResNetClassifier(loss="bce", blocks=1, max_iter=2).fit(X, y)
    msg = str(exc.value)
    assert "loss='bce' is for two classes, the data has 3" in msg and "loss='ce'" in msg and not FLAG.search(msg)
    assert main(["solve", "--dataset", "digits", "--n-samples", "50", "--width", "64", "--loss", "bce",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--loss bce is for two classes, the data has 10: use --loss ce, --loss sce or --loss mse" in err


def test_sce_without_smoothing_names_both_arguments(capsys) -> None:
    with pytest.raises(ValidationError, match=r"loss='sce' needs label_smoothing > 0 .*use loss='ce'"):
        Problem.build(load_dataset("spirals", n_samples=20), blocks=1, loss="sce", label_smoothing=0.0)
    assert main(["solve", "--n-samples", "20", "--blocks", "1", "--loss", "sce", "--label-smoothing", "0"]) == 2
    assert "--loss sce needs --label-smoothing > 0 (e.g. 0.1); use --loss ce for hard labels" in capsys.readouterr().err


def test_status_messages_name_arguments_and_read_as_flags_on_the_cli() -> None:
    for status in Status:
        assert not FLAG.search(status.message), status
    assert flags(Status.MAX_ITER.message, "solve").endswith("raise --max-iter or warm-start from this run with --init RUN_DIR")
    assert "--ipopt max_wall_time=SECONDS" in flags(Status.MAX_TIME.message, "solve")


@pytest.mark.parametrize("api, cli", [
    ("use width >= 64 or stem='linear'", "use --width >= 64 or --stem linear"),
    ("raise max_iter or warm-start with init=RUN_DIR", "raise --max-iter or warm-start with --init RUN_DIR"),
    ("choose another out=DIR, or pass overwrite=True", "choose another --out DIR, or pass --overwrite"),
    ("give gammas=[0, 0.1, 1]", "give --gamma 0,0.1,1"),  # sweep's flag (path's is --gammas)
    ("bound it with ipopt={'max_wall_time': SECONDS}", "bound it with --ipopt max_wall_time=SECONDS"),
    ("threads must be >= 1, got 0", "--threads must be >= 1, got 0"),
    ("restarts > 1 draws random weights", "--restarts > 1 draws random weights"),
    # left alone: English words, status values, module paths, quoted keys
    ("hidden width must be an integer >= 1", "hidden width must be an integer >= 1"),
    ("seed 0: max_iter, J 0.5", "seed 0: max_iter, J 0.5"),
    ("ocp-resnet solve: max_iter: stopped", "ocp-resnet solve: max_iter: stopped"),
    ("see ocp_resnet.solvers.max_iter and 'max_iter'", "see ocp_resnet.solvers.max_iter and 'max_iter'"),
    ("the state width of block 2", "the state width of block 2"),
])
def test_flags_translates_api_names_only(api: str, cli: str) -> None:
    assert flags(api, "sweep") == cli


def test_per_command_flags() -> None:
    assert flags("give gammas=[1, 0]", "path") == "give --gammas 1,0"
    assert flags("or raise tol", "prune") == "or raise tol"  # a bare one-word name is English
    assert flags("tol=0.01", "prune") == "--vanish-tol 0.01" and flags("tol=0.01", "solve") == "--tol 0.01"
    assert flags("another directory=DIR", "analyze") == "another --plot-dir DIR"
    assert flags("another directory=DIR", "solve") == "another directory=DIR"  # no such flag there: left as is


def _options() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if a.choices and "solve" in a.choices).choices
    return {name: set(p._option_string_actions) for name, p in sub.items()}


def test_a_flag_of_another_command_is_named_with_it() -> None:
    set_command("train", _options())
    try:
        assert flags("polish it from this run (init=RUN_DIR)") == "polish it from this run (ocp-resnet solve --init RUN_DIR)"
        assert flags("or raise epochs=N") == "or raise --epochs N"  # train's own
    finally:
        set_command(None)
    assert flags("init=RUN_DIR", "train") == "--init RUN_DIR"  # without the parsers' flags: the table alone


def test_every_flag_of_the_table_exists() -> None:
    options = _options()
    for api, flag in FLAGS.items():
        per_command = flag.items() if isinstance(flag, dict) else [(None, flag)]
        for command, f in per_command:
            where = [command] if command is not None else list(options)
            assert any(f in options[c] for c in where), (api, f, command)


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def test_no_library_string_names_a_cli_flag() -> None:
    """Messages outside ocp_resnet/cli/ name API arguments (docstrings may describe the CLI)."""
    found = []
    for path in sorted((ROOT / "ocp_resnet").rglob("*.py")):
        if "cli" in path.relative_to(ROOT).parts:
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:80]}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                  and FLAG.search(node.value)]
    assert not found, "\n".join(found)
