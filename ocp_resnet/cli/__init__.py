"""``ocp-resnet``: a thin command-line layer over the API.

Each sub-command lives in its own module with ``register(subparsers)``; the module sets
``func`` on its parser. User errors (:class:`ValidationError`) print one line and exit 2;
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import ValidationError

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("solve", "train", "evaluate", "analyze", "prune", "sweep")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocp-resnet",
        description="Train residual networks as optimal control problems (CasADi + IPOPT, PyTorch).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"ocp-resnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 solve/training failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad flags
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        if args.debug:
            raise
        print(f"ocp-resnet {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"ocp-resnet {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:  # console script
    sys.exit(main())
