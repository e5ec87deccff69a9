"""The package's import graph: no cycles, and no module of a lower layer imports a higher one.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:`` (annotations only).
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PKG = ROOT / "ocp_resnet"

#: Layers from the bottom up; a module may import its own layer and the layers below.
LAYERS: list[tuple[str, ...]] = [
    ("ocp_resnet.errors", "ocp_resnet.status", "ocp_resnet.files", "ocp_resnet.version", "ocp_resnet._lazy"),
    ("ocp_resnet.data",),
    ("ocp_resnet.model",),
    ("ocp_resnet.torch", "ocp_resnet.solvers"),
    ("ocp_resnet.runs", "ocp_resnet.parallel", "ocp_resnet.analysis", "ocp_resnet.plotting", "ocp_resnet.compare",
     "ocp_resnet.training", "ocp_resnet.solving", "ocp_resnet.estimator"),
    ("ocp_resnet.cli", "ocp_resnet.__main__"),
]
#: Upward imports the design allows, each with its reason.
ALLOWED_UP = {
    # the model's evaluation computes ∇J by the back-end the caller names (CasADi or torch autograd);
    # the gradient modules import only the model, so this adds no cycle
    ("ocp_resnet.model.evaluation", "ocp_resnet.solvers.ipopt.transcription"),
    ("ocp_resnet.model.evaluation", "ocp_resnet.torch.gradient"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from pkg import sub`` resolves to the submodule)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if _in_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("ocp_resnet"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("ocp_resnet"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: imports_of(p, set(files)) - {m} for m, p in files.items()}


def layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _package_edge(a: str, b: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules (or a submodule importing a sibling
    through the package) is not a dependency between layers of code."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), package edges left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if _package_edge(v, w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_higher_layer() -> None:
    g = graph()
    bad = sorted((a, b) for a, targets in g.items() if a != "ocp_resnet" for b in targets
                 if layer(b) > layer(a) and (a, b) not in ALLOWED_UP and not _package_edge(a, b))
    assert bad == []


def test_no_module_imports_another_modules_private_names() -> None:
    bad = []
    for p in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ocp_resnet"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__") and \
                            f"{node.module}.{a.name}" not in {module_name(q) for q in PKG.rglob("*.py")}:
                        bad.append(f"{module_name(p)}: {node.module}.{a.name}")
    assert bad == []
