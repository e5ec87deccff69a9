"""Documented numbers that a command produces must match what the code produces now.

docs/generate.py writes each such block; here every block is regenerated and compared with the
committed text (timings masked, numbers to a relative 1e-5: see ``generate.same``).
"""
from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.helpers import ROOT


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


gen = _generate()


@pytest.mark.parametrize("block", gen.BLOCKS, ids=lambda b: b.name)
def test_generated_block_matches_the_code(block) -> None:
    fresh = block.make()
    assert gen.same(gen.committed(block), fresh), (
        f"{block.path.name}: block {block.name!r} drifted from the code; regenerate it with "
        f"python docs/generate.py {block.name}\n--- now:\n{fresh}")


def test_the_comparison_masks_timings_and_catches_a_changed_number() -> None:
    a = "objective 0.147408368  grad norm 7.19e-14  iterations 57  build 0.19s  solve 6.11s  total 6.57s"
    assert gen.same(a, a.replace("6.11s", "1.02s").replace("7.19e-14", "9.3e-14"))
    assert not gen.same(a, a.replace("iterations 57", "iterations 58"))
    assert not gen.same(a, a.replace("0.147408368", "0.1475"))
    assert not gen.same(a, a + " vanished")
