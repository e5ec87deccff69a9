"""Generate the flag tables of docs/cli.md from the argparse definitions (``ocp_resnet.cli``).

    python docs/gen_cli.py            # rewrite the generated blocks of docs/cli.md in place
    python docs/gen_cli.py --check    # exit status 1 when docs/cli.md differs from what it would write

Only the text between marker comments is generated; the prose around them is written by hand::

    <!-- BEGIN GENERATED: solve -->
    ... one table per argument group: flag, default, choices, help (as ``--help`` prints it)
    <!-- END GENERATED: solve -->

A block named after a sub-command holds that command's flags; the block ``problem`` holds the
data, architecture and objective groups of ``solve``, and a command whose groups of those names
are the same leaves them out of its own block and says so. tests/test_docs.py regenerates the
file in memory and fails when the committed docs/cli.md differs.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
                   re.DOTALL)
#: argument groups that make up a problem, shared by the commands (``ocp_resnet.cli._common.add_problem_args``).
PROBLEM_GROUPS = ("data", "architecture", "objective")


def _parser() -> argparse.ArgumentParser:
    sys.path.insert(0, str(ROOT))  # the checkout's package, also when run as a script
    from ocp_resnet.cli import build_parser

    return build_parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Sub-command name → its parser, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _cell(text: str) -> str:
    """Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:  # a positional argument
        return f"`{action.metavar or action.dest.upper()}`"
    names = ", ".join(action.option_strings)
    takes_value = action.nargs != 0
    if takes_value and action.metavar is not None:
        names += f" {action.metavar}"
    return f"`{names}`"


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse._StoreFalseAction):
        return "on"
    d = action.default
    if d is None or d is argparse.SUPPRESS or d == [] or (not action.option_strings and action.nargs is None):
        return ""
    return f"`{d}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help is argparse.SUPPRESS:
        return ""
    return _cell(parser._get_formatter()._expand_help(action))


def _rows(parser: argparse.ArgumentParser, actions: list[argparse.Action]) -> list[tuple[str, str, str, str]]:
    rows = []
    for a in actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if a.help is argparse.SUPPRESS:  # hidden from --help (deprecated aliases): hidden here too
            continue
        choices = ", ".join(f"`{c}`" for c in a.choices) if a.choices else ""
        rows.append((_flag(a), _default(a), choices, _help(parser, a)))
    return rows


def _groups(parser: argparse.ArgumentParser) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """(title, rows) of every argument group with flags, in ``--help`` order."""
    out = []
    for g in parser._action_groups:
        rows = _rows(parser, g._group_actions)
        if rows:
            title = g.title or ""
            out.append(("options" if title in ("optional arguments", "options") else title, rows))
    return out


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| flag | default | choices | meaning |", "|------|---------|---------|---------|"]
    lines += [f"| {f} | {d} | {c} | {h} |" for f, d, c, h in rows]
    return "\n".join(lines) + "\n"


def _render(groups: list[tuple[str, list[tuple[str, str, str, str]]]]) -> str:
    return "\n".join(f"*{title}*\n\n{_table(rows)}" for title, rows in groups)


def blocks(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Block name → generated markdown, for ``problem`` and every sub-command."""
    parser = parser or _parser()
    subs = subcommands(parser)
    problem = [g for g in _groups(subs["solve"]) if g[0] in PROBLEM_GROUPS]
    out = {"problem": _render(problem)}
    for name, sp in subs.items():
        groups = _groups(sp)
        shared = [g for g in groups if g[0] in PROBLEM_GROUPS and g in problem]
        own = [g for g in groups if g not in shared]
        note = ""
        if shared:
            titles = ", ".join(t for t, _ in shared)
            where = "the tables above" if name == "solve" else "as listed under [`ocp-resnet solve`](#ocp-resnet-solve)"
            note = f"Problem flags ({titles}): {where}.\n\n"
        out[name] = f"`ocp-resnet {name} --help`:\n\n" + note + _render(own)
    return out


def generate(text: str, parser: argparse.ArgumentParser | None = None) -> str:
    """``text`` (docs/cli.md) with every generated block rewritten; an unknown block name is an error."""
    gen = blocks(parser)

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in gen:
            raise KeyError(f"docs/cli.md: no generator for block {name!r} (known: {', '.join(gen)})")
        return f"{m.group(1)}{gen[name]}{m.group(4)}"

    return BLOCK.sub(sub, text)


def missing_blocks(text: str, parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Generated blocks that docs/cli.md lacks (every sub-command must have one)."""
    present = {m.group("name") for m in BLOCK.finditer(text)}
    return [name for name in blocks(parser) if name not in present]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when docs/cli.md is out of date")
    args = ap.parse_args(argv)
    text = CLI_MD.read_text()
    missing = missing_blocks(text)
    if missing:
        print(f"docs/cli.md lacks generated blocks for: {', '.join(missing)}", file=sys.stderr)
        return 1
    new = generate(text)
    if args.check:
        if new != text:
            print("docs/cli.md is out of date: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        CLI_MD.write_text(new)
        print("rewrote docs/cli.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
