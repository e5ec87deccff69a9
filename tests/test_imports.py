"""Lazy imports: the public names of ``ocp_resnet`` and ``ocp_resnet.analysis`` load on first use,
and ``ocp-resnet CMD`` builds only CMD's parser; neither changes what a name or a command line gives."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

PACKAGES = ("ocp_resnet", "ocp_resnet.analysis")
#: exported values without a __module__ of their own: name -> the module that defines them
VALUES = {"__version__": "ocp_resnet.version", "DEFAULT_TOL": "ocp_resnet.analysis.blocks"}


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_is_the_object_of_its_defining_module(package: str) -> None:
    pkg = importlib.import_module(package)
    for name in pkg.__all__:
        namespace: dict[str, object] = {}
        exec(f"from {package} import {name}", namespace)
        obj = namespace[name]
        assert getattr(pkg, name) is obj, name
        defining = VALUES.get(name) or obj.__module__  # type: ignore[attr-defined]
        assert defining.startswith("ocp_resnet."), (name, defining)
        assert getattr(importlib.import_module(defining), name) is obj, (name, defining)
        assert name in dir(pkg)


def test_unknown_names_raise_attribute_error() -> None:
    import ocp_resnet
    import ocp_resnet.analysis

    for pkg in (ocp_resnet, ocp_resnet.analysis):
        with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
            pkg.nonexistent  # noqa: B018
        assert not hasattr(pkg, "nonexistent")


_FRESH = r"""
import json, sys
import ocp_resnet
after_package = sorted(m for m in sys.modules if m.startswith(("ocp_resnet.", "sklearn")))
import ocp_resnet.analysis
after_analysis = sorted(m for m in sys.modules if m.startswith("ocp_resnet.analysis."))
from ocp_resnet.cli import _build_parser
_build_parser(("solve",))
after_solve_parser = sorted(m for m in sys.modules if m.startswith("ocp_resnet."))
# the module attributes `import ocp_resnet` gave when it imported everything
paths = ["analysis", "data", "errors", "model", "solvers", "status", "version", "analysis.blocks", "analysis.bound",
         "analysis.certificate", "analysis.collapse", "analysis.conv", "analysis.conv_sweep", "analysis.gamma_path",
         "analysis.prune", "analysis.restarts", "analysis.sweep", "solvers.ipopt", "model.problem"]
reached = []
for p in paths:
    obj = ocp_resnet
    for part in p.split("."):
        obj = getattr(obj, part)
    reached.append(obj is sys.modules["ocp_resnet." + p])
import ocp_resnet.analysis.costates
costates_is_function = callable(ocp_resnet.analysis.costates) and not isinstance(ocp_resnet.analysis.costates, type(sys))
namespace = {}
exec("from ocp_resnet import *", namespace)
star = sorted(k for k in namespace if k != "__builtins__")
print(json.dumps([after_package, after_analysis, after_solve_parser, reached, costates_is_function, star,
                  sorted(ocp_resnet.__all__)]))
"""


def test_a_fresh_import_loads_only_what_is_used() -> None:
    out = subprocess.run([sys.executable, "-c", _FRESH], check=True, capture_output=True, text=True, cwd=ROOT)
    after_package, after_analysis, after_solve_parser, reached, costates_is_function, star, all_ = json.loads(out.stdout)
    assert after_package == ["ocp_resnet._lazy", "ocp_resnet.version"]
    assert after_analysis == ["ocp_resnet.analysis.costates"]
    for unused in ("ocp_resnet.analysis.conv", "ocp_resnet.analysis.sweep", "ocp_resnet.analysis.prune",
                   "ocp_resnet.analysis.gamma_path", "ocp_resnet.compare", "ocp_resnet.training", "ocp_resnet.cli.train",
                   "ocp_resnet.estimator"):
        assert unused not in after_solve_parser
    assert all(reached)
    assert costates_is_function  # the function, though its submodule was imported after the package
    assert star == all_


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[object, str, str]:
    """(namespace as a dict, or the exit code; stdout; stderr) of parsing ``argv``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: object = vars(parser.parse_args(argv))
        except SystemExit as exc:
            result = exc.code
    return result, out.getvalue(), err.getvalue()


ARGVS = [["solve"], ["solve", "--blocks", "3", "--gamma", "0,1,0", "--ipopt", "a=1", "--debug"], ["solve", "--help"],
         ["solve", "--bogus"], ["solve", "--tol"], ["--debug", "solve", "--quiet"], ["--debug", "--debug", "solve"],
         ["path"], ["path", "--help"], ["train"], ["train", "--init", "x"], ["train", "--help"], ["evaluate", "RUN"],
         ["evaluate", "--help"], ["analyze", "RUN", "--tol", "0.1"], ["analyze", "--help"], ["prune", "RUN"],
         ["prune", "--help"], ["sweep"], ["sweep", "--help"], ["compare"], ["compare", "--help"]]


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_the_named_commands_parser_parses_as_the_full_parser(argv: list[str]) -> None:
    from ocp_resnet.cli import _build_parser, _command_of, build_parser

    command = _command_of(argv)
    assert command is not None
    assert _parse(_build_parser((command,)), argv) == _parse(build_parser(), argv)


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h", "solve"], ["--version"], ["--deb", "solve"], ["bogus"],
                                  ["solv"], ["--", "solve"], ["--debug"], ["--debug", "--help", "solve"]])
def test_other_command_lines_get_the_full_parser(argv: list[str]) -> None:
    from ocp_resnet.cli import _command_of

    assert _command_of(argv) is None


def test_a_message_naming_another_commands_flag_still_names_that_command() -> None:
    """``main`` registers the running command's flags alone; the others are read when a message needs them."""
    from ocp_resnet.cli import main
    from ocp_resnet.cli._common import flags, set_command

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            assert main(["solve", "--certificate-max-params", "-1"]) == 2  # refused before any work
        assert flags("raise max_iter") == "raise --max-iter"
        assert flags("or raise epochs=N") == "or raise ocp-resnet train --epochs N"
        assert flags("tol=0.01") == "--tol 0.01"
    finally:
        set_command(None)
