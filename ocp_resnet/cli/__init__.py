"""``ocp-resnet``: a thin command-line layer over the API.

Each sub-command lives in its own module with ``register(subparsers)``; the module sets
``func`` on its parser. Exit codes (docs/cli.md):

* 0 — done; 1 — the solve/training ran but failed (its run directory keeps the last iterate
  and says why); 2 — bad input: one line on stderr naming the fix, nothing written;
  130 — interrupted (Ctrl-C; an interrupted solve still writes its run directory).

``--debug`` (before or after the command name) shows the traceback instead of the one line.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ocp_resnet.cli._common import (  # noqa: F401 (the CLI's codes)
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    exit_code,
    flags,
    set_command,
)
from ocp_resnet.errors import ValidationError

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("solve", "path", "train", "evaluate", "analyze", "prune", "sweep", "compare")

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a closed pipe


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message (see prog --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``ocp-resnet`` parser with every sub-command registered."""
    return _build_parser(COMMANDS)


def _build_parser(commands: Sequence[str]) -> argparse.ArgumentParser:
    """The ``ocp-resnet`` parser with the sub-commands ``commands`` registered: all of them, or
    the one a command line names (the same parse of it, without building the others)."""
    parser = _Parser(
        prog="ocp-resnet",
        description="Train residual networks as optimal control problems (CasADi + IPOPT, PyTorch).",
        epilog="exit codes: 0 done, 1 solve/training failed (run directory kept), 2 bad input, 130 interrupted",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    from ocp_resnet.version import __version__

    parser.add_argument("--version", action="version", version=f"ocp-resnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in commands:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for sp in sub.choices.values():  # also accept --debug after the command name
        if "--debug" not in sp._option_string_actions:
            sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show tracebacks of errors")
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _options(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """Each sub-command's flags, in ``--help`` order."""
    return {name: set(p._option_string_actions) for name, p in _subparsers(parser).items()}


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names when argparse is sure to read it as one: the first argument
    after any ``--debug``. None otherwise (help, version, a misspelt or abbreviated option, ...)."""
    i = 0
    while i < len(argv) and argv[i] == "--debug":
        i += 1
    return argv[i] if i < len(argv) and argv[i] in COMMANDS else None


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line, API argument names replaced by the command's flags."""
    return flags(" ".join(str(exc).split())) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 failed, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A command line naming its sub-command is parsed by that sub-command's parser alone, the
    # same parse without building (and importing) the others; the rest (--help, --version, an
    # unknown command, ...) by the full parser, whose messages list every command.
    command = _command_of(argv)
    parser = build_parser() if command is None else _build_parser((command,))
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad flags, with one line
    if args.command != "train":  # train's conv nets do use torch's threads
        # numpy's OpenBLAS reads OMP_NUM_THREADS once, when it loads: load it first, as the
        # package's import always did, so that its thread count stays the machine's (the Newton
        # path limits it where that is faster); numpy is needed by every command anyway.
        import numpy  # noqa: F401

        # MUMPS/BLAS inside IPOPT spin OpenMP threads that buy no wall time on these small KKT
        # systems: the canonical solve took 3.0 s wall / 5.8 s CPU with the default threads
        # and 2.8 s wall / 2.9 s CPU with one (docs/performance.md). Set before casadi is
        # imported; a user's own OMP_NUM_THREADS wins.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    debug = bool(getattr(args, "debug", False))
    # library messages name API arguments; flags() names this command's flags (or another command's)
    if command is None:
        set_command(args.command, _options(parser))
    else:  # every other command's flags only for a message that names one of them
        set_command(args.command, _options(parser), every=lambda: _options(build_parser()))
    prefix = f"ocp-resnet {args.command}: error:"
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        if debug:
            raise
        print(f"{prefix} {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # stdout closed early (e.g. piped into head): not an error of the command
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a file or directory the user named: unreadable, not writable, disk full
        if debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{prefix} {exc.strerror or _one_line(exc)}{where}: check the path and its permissions "
              "(--debug shows the traceback)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"ocp-resnet {args.command}: interrupted (Ctrl-C)",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``ocp-resnet`` console script: :func:`main`, then exit with its code."""
    code = main()
    from ocp_resnet.solvers import abandoned_workers

    # Leave without interpreter finalisation when native threads may still run: an interrupted
    # IPOPT inside a factorisation, or the gloo threads of a torchrun rank. All results are written.
    if abandoned_workers() or _left_process_group():
        _flush()
        os._exit(code)
    if "torch" not in sys.modules:  # (torch's native threads and devices get its own teardown)
        _leave(code)
    sys.exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a pipe whose reader left
            pass


def _leave(code: int) -> NoReturn:
    """Exit with ``code`` after what the interpreter's own exit does first (join the other
    non-daemon threads, run the ``atexit`` handlers, flush stdout and stderr), without its last
    step: freeing every object and module one by one. That step writes nothing, and with the
    CasADi functions of a solve alive it took ~45 ms, 5 % of the canonical problem's whole
    process (docs/performance.md). Where these hooks are missing (not CPython), a normal exit."""
    import atexit
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exitfuncs is None:
        sys.exit(code)
    shutdown()
    run_exitfuncs()
    _flush()
    os._exit(code)


def _left_process_group() -> bool:
    if "ocp_resnet.torch.distributed" not in sys.modules:  # never imported torch: nothing to check
        return False
    return sys.modules["ocp_resnet.torch.distributed"].left_group()
