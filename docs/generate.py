"""Regenerate (or check) the numbers in README.md and docs/ that a command produces.

Every generated block sits between ``<!-- BEGIN GENERATED: NAME -->`` and
``<!-- END GENERATED: NAME -->`` and opens with the command that produced it, so a reader can run
it. One generator per block::

    python docs/generate.py                  # regenerate every block in place
    python docs/generate.py readme-solve     # one block
    python docs/generate.py --check          # exit 1 when a committed block differs from a fresh run

``--check`` (run by tests/test_docs_drift.py) compares with the timing fields masked (seconds,
run-directory time stamps) and numbers to a relative 1e-5 / absolute 1e-9, so that the last
digits of a KKT residual of 1e-14 — which differ between CPU builds — do not count as drift,
while any change of an iteration count, objective, norm or accuracy does.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: How the README abridges IPOPT's iteration log: the header and the first iteration line.
LOG_HEAD = 2


@dataclass(frozen=True)
class Block:
    """One generated block: the file it lives in and the function that writes its text."""

    name: str
    path: Path
    make: Callable[[], str]


def _cli(argv: list[str]) -> str:
    """stdout of ``ocp-resnet ARGV`` as a user sees it (a fresh process: IPOPT prints from C++)."""
    res = subprocess.run([sys.executable, "-m", "ocp_resnet", *argv], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode != 0:
        raise SystemExit(f"ocp-resnet {' '.join(argv)} exited with {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def _abridge_ipopt(lines: list[str]) -> list[str]:
    """Drop IPOPT's problem statistics; keep a solver's iteration-table header and first row, then
    '...' up to what follows the table (IPOPT's EXIT line, or the block table)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("Number of nonzeros in equality"):
            while i < len(lines) and not lines[i].lstrip().startswith("iter "):
                i += 1
            continue
        if lines[i].lstrip().startswith("iter "):
            out.extend(lines[i:i + LOG_HEAD])
            out.append("   ...")
            while i < len(lines) and not (lines[i].startswith("EXIT:") or lines[i].startswith("  k      |w_k|")):
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return out


def readme_solve() -> str:
    """``ocp-resnet solve`` on the embedded default: what README.md shows."""
    with tempfile.TemporaryDirectory() as tmp:
        text = _cli(["solve", "--out", f"{tmp}/run"])
    lines = [ln.replace(f"{tmp}/run", "runs/<date>-<time>-spirals-solve") for ln in text.splitlines()]
    lines = [ln for ln in lines if not ln.startswith("This is Ipopt") and "Ipopt is released" not in ln]
    body = "\n".join(_abridge_ipopt(lines))
    return f"```\n$ ocp-resnet solve\n{body}\n```"


#: The problem docs/theory.md discusses: the two-spirals demo with γ = 0.1, λ = 1e-3, solved by
#: IPOPT multiple shooting (its multipliers give the costates a second, independent check).
THEORY_FLAGS = ["--weight-decay", "1e-3", "--method", "multiple-shooting"]
THEORY_GAMMA = 0.1


def _default_runs(tmp: str) -> dict[float, object]:
    """The theory problem at γ = THEORY_GAMMA and at γ = 0 (run directories under ``tmp``)."""
    from ocp_resnet.analysis.costates import costates_of_run

    out = {}
    for g in (THEORY_GAMMA, 0.0):
        rd = f"{tmp}/g{g:g}"
        _cli(["solve", "--gamma", f"{g:g}", *THEORY_FLAGS, "--out", rd, "--quiet"])
        out[g] = costates_of_run(rd)
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}" if 1e-2 <= abs(v) < 1e3 else f"{v:.1e}"


def theory_default() -> str:
    """docs/theory.md's table of block norms, states and costates of the default problem."""
    import numpy as np

    from ocp_resnet.analysis.blocks import DEFAULT_TOL

    g0 = THEORY_GAMMA
    with tempfile.TemporaryDirectory() as tmp:
        cs = _default_runs(tmp)
    a, b = cs[g0], cs[0.0]
    N = a.n_blocks  # type: ignore[attr-defined]
    head = "| k | " + " | ".join(str(k) for k in range(N + 1)) + " |"
    rows = [head, "|---" * (N + 2) + "|"]

    def row(label: str, values: list[float], pad: bool = False) -> str:
        cells = [_fmt(v) for v in values] + ([""] if pad else [])
        return f"| {label} | " + " | ".join(cells) + " |"

    rows += [row(f"‖w_k‖, γ = {g0:g}", a.block_norms, pad=True),  # type: ignore[attr-defined]
             row(f"RMS ‖x_k‖, γ = {g0:g}", a.state_norms),  # type: ignore[attr-defined]
             row(f"RMS ‖p_k‖, γ = {g0:g}", a.costate_norms),  # type: ignore[attr-defined]
             row("‖w_k‖, γ = 0", b.block_norms, pad=True),  # type: ignore[attr-defined]
             row("RMS ‖x_k‖, γ = 0", b.state_norms),  # type: ignore[attr-defined]
             row("RMS ‖p_k‖, γ = 0", b.costate_norms)]  # type: ignore[attr-defined]
    norms = np.asarray(a.block_norms)  # type: ignore[attr-defined]
    rel = norms / norms.max()
    idle = next((k for k in range(N) if np.all(rel[k:] <= 10 * DEFAULT_TOL)), None)
    pk = np.asarray(a.costate_norms)  # type: ignore[attr-defined]
    ham = max(float(np.linalg.norm(h)) for h in a.hamiltonian_gradients) if a.hamiltonian_gradients else 0.0  # type: ignore[attr-defined]
    facts = [
        f"* γ = {g0:g}: blocks from {idle} on have relative norm ≤ {10 * DEFAULT_TOL:g}" if idle is not None
        else f"* γ = {g0:g}: no tail of blocks has relative norm ≤ {10 * DEFAULT_TOL:g}",
        f"* γ = {g0:g}: largest costate RMS ‖p_k‖ = {_fmt(float(pk.max()))} at k = {int(pk.argmax())}, "
        f"{_fmt(float(pk.max() / pk[-1]))}× ‖p_N‖",
        f"* γ = {g0:g}: max_k ‖∂H_k/∂w_k‖ = {ham:.1e}, ‖∂J/∂θ‖ (shared weights) = "
        f"{a.shared_gradient_norm:.1e}",  # type: ignore[attr-defined]
    ]
    flags = " ".join(THEORY_FLAGS)
    cmd = (f"    ocp-resnet solve --gamma {g0:g} {flags} --out runs/demo && ocp-resnet analyze runs/demo --costates\n"
           f"    ocp-resnet solve --gamma 0 {flags} --out runs/demo-g0 && ocp-resnet analyze runs/demo-g0 --costates")
    return cmd + "\n\n" + "\n".join(rows) + "\n\n" + "\n".join(facts)


BLOCKS = [
    Block("readme-solve", ROOT / "README.md", readme_solve),
    Block("theory-default", ROOT / "docs" / "theory.md", theory_default),
]


def _span(text: str, name: str) -> tuple[int, int]:
    begin, end = f"<!-- BEGIN GENERATED: {name} -->\n", f"<!-- END GENERATED: {name} -->"
    i = text.find(begin)
    j = text.find(end, i)
    if i < 0 or j < 0:
        raise SystemExit(f"no generated block {name!r} (markers {begin.strip()} ... {end})")
    return i + len(begin), j


def committed(block: Block) -> str:
    """The block's text as committed."""
    text = block.path.read_text()
    i, j = _span(text, block.name)
    return text[i:j].rstrip("\n")


def write(block: Block, body: str) -> None:
    """Replace the block's text in its file."""
    text = block.path.read_text()
    i, j = _span(text, block.name)
    block.path.write_text(text[:i] + body.rstrip("\n") + "\n" + text[j:])


_TIMING = [
    re.compile(r"\b(build|solve|total)\s+[0-9.]+s"),
    re.compile(r"runs/\d{8}-\d{6}-"),
]
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _mask(text: str) -> str:
    for pat in _TIMING:
        text = pat.sub(lambda m: m.group(0).split()[0] + " <t>" if " " in m.group(0) else "<t>", text)
    return text


def same(a: str, b: str, rtol: float = 1e-5, atol: float = 1e-9) -> bool:
    """Whether two block texts agree: equal apart from timings and numbers within tolerance."""
    a, b = _mask(a), _mask(b)
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        return False
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)):
        fx, fy = float(x), float(y)
        if not math.isclose(fx, fy, rel_tol=rtol, abs_tol=atol):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="blocks to regenerate (default: all): " + ", ".join(b.name for b in BLOCKS))
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on drift")
    args = ap.parse_args(argv)
    chosen = [b for b in BLOCKS if not args.names or b.name in args.names]
    drift = []
    for block in chosen:
        body = block.make()
        if args.check:
            if not same(committed(block), body):
                drift.append(block.name)
                print(f"--- {block.name} ({block.path.name}) committed:\n{committed(block)}\n--- now:\n{body}\n")
        else:
            write(block, body)
            print(f"wrote {block.name} into {block.path.relative_to(ROOT)}")
    if drift:
        print("drift in: " + ", ".join(drift) + " — run: python docs/generate.py " + " ".join(drift))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
