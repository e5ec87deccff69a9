"""The documentation is self-contained and the public API is documented.

* every public function and class (the ``__all__`` of ``ocp_resnet``, ``ocp_resnet.torch``,
  ``ocp_resnet.analysis`` and the public module-level ones of every public module) has a docstring;
* every docstring cross-reference (``:func:`x``` …) names an object (what the API reference
  build, ``python docs/build_api.py``, also checks);
* README.md and docs/*.md link and name only files that exist in the repository, every
  ``ocp_resnet.x.y`` they name in backticks exists, and nothing cites files outside it.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import ocp_resnet

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
API_NAMESPACES = ("ocp_resnet", "ocp_resnet.torch", "ocp_resnet.analysis")


def _build_api():
    """docs/build_api.py as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _public_modules() -> list:
    mods = [ocp_resnet] + [importlib.import_module(i.name)
                           for i in pkgutil.walk_packages(ocp_resnet.__path__, "ocp_resnet.")]
    return [m for m in mods if not any(part.startswith("_") for part in m.__name__.split("."))]


def _public_objects() -> dict[str, object]:
    """Qualified name -> object for every public function and class."""
    objs: dict[str, object] = {}
    for ns in API_NAMESPACES:
        mod = importlib.import_module(ns)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                objs[f"{obj.__module__}.{obj.__qualname__}"] = obj
    for mod in _public_modules():
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                objs[f"{mod.__name__}.{name}"] = obj
    return objs


def test_public_functions_and_classes_have_docstrings():
    missing = sorted(name for name, obj in _public_objects().items() if not (obj.__doc__ or "").strip())
    assert not missing, f"{len(missing)} public functions/classes without a docstring:\n" + "\n".join(missing)


def test_public_modules_have_docstrings():
    missing = sorted(m.__name__ for m in _public_modules() if not (m.__doc__ or "").strip())
    assert not missing, "modules without a docstring: " + ", ".join(missing)


def test_docstring_cross_references_resolve():
    build_api = _build_api()
    bad = build_api.broken_references(build_api._modules())
    assert not bad, "\n".join(bad)


def test_a_broken_cross_reference_is_caught():
    build_api = _build_api()
    known = build_api._all_names(build_api._modules())
    assert build_api.resolves("ocp_resnet.model.evaluation.evaluate", "ocp_resnet.status", None, known)
    assert build_api.resolves("Status.from_ipopt", "ocp_resnet.status", None, known)
    assert build_api.resolves(".blocks", "ocp_resnet.analysis", None, known)
    assert not build_api.resolves("ocp_resnet.model.evaluation.evaluat", "ocp_resnet.status", None, known)
    assert not build_api.resolves("no_such_function", "ocp_resnet.status", None, known)


# --------------------------------------------------------------------------- the markdown docs
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# a repository path in prose or code: ocp_resnet/…, benchmarks/…, examples/…, tests/…, docs/…
REPO_PATH = re.compile(r"(?<![\w/.-])((?:ocp_resnet|benchmarks|examples|tests|docs)/[\w./*-]*)(?:::(\w+))?")
DOTTED = re.compile(r"`(ocp_resnet(?:\.\w+)+)(?:\([^`]*\))?`")
OUTSIDE = re.compile(r"DESIGN\.md|/work/|\.\./shared|\bissues? #?\d+|(?<![\w&])#\d+\b", re.IGNORECASE)
# a relative path that climbs out of its folder: ../x/y
PARENT_PATH = re.compile(r"(?<![\w./-])((?:\.\./)+[\w./-]*\w)")


def _strip_code_urls(text: str) -> str:
    return re.sub(r"https?://\S+", "", text)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_markdown_links_resolve(doc):
    bad = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        if not (doc.parent / target.split("#")[0]).exists():
            bad.append(target)
    assert not bad, f"{doc.name} links to missing files: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_named_repository_paths_exist(doc):
    bad = []
    for path, member in REPO_PATH.findall(_strip_code_urls(doc.read_text())):
        path = path.rstrip(".")
        found = list(ROOT.glob(path)) if "*" in path else [ROOT / path] if (ROOT / path).exists() else []
        if not found:
            bad.append(path)
        elif member and not re.search(rf"^\s*(?:def|class)\s+{member}\b", found[0].read_text(), re.MULTILINE):
            bad.append(f"{path}::{member}")
    assert not bad, f"{doc.name} names paths that do not exist: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_parent_paths_stay_in_the_repository(doc):
    bad = [p for p in PARENT_PATH.findall(_strip_code_urls(doc.read_text()))
           if not (doc.parent / p).resolve().is_relative_to(ROOT) or not (doc.parent / p).exists()]
    assert not bad, f"{doc.name} names paths outside the repository: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_named_python_objects_exist(doc):
    build_api = _build_api()
    bad = [name for name in DOTTED.findall(doc.read_text()) if not build_api._resolve_dotted(name)]
    assert not bad, f"{doc.name} names objects that do not exist: {bad}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_cite_nothing_outside_the_repository(doc):
    hits = OUTSIDE.findall(_strip_code_urls(doc.read_text()))
    assert not hits, f"{doc.name} cites something outside the repository: {hits}"


def test_code_cites_only_docs_that_exist():
    bad = []
    for src in sorted((ROOT / "ocp_resnet").rglob("*.py")):
        text = src.read_text()
        bad += [f"{src.relative_to(ROOT)}: {m}" for m in OUTSIDE.findall(text)]
        bad += [f"{src.relative_to(ROOT)}: {p}" for p in re.findall(r"docs/[\w.-]+\.md", text)
                if not (ROOT / p).exists()]
    assert not bad, "\n".join(bad)


SECTION = re.compile(r"(docs/[\w.-]+\.md),\s*\(?\"([^\"]+)\"")


def test_cited_sections_exist():
    """``docs/theory.md, "The objective"`` in code or docs names a heading of that page."""
    bad = []
    for src in sorted((ROOT / "ocp_resnet").rglob("*.py")) + DOCS:
        for page, title in SECTION.findall(src.read_text()):
            target = ROOT / page
            headings = [h.lstrip("#").strip() for h in target.read_text().splitlines() if h.startswith("#")] \
                if target.exists() else []
            if not any(h.startswith(title) for h in headings):
                bad.append(f"{src.relative_to(ROOT)}: {page}, \"{title}\"")
    assert not bad, "cited sections that do not exist:\n" + "\n".join(bad)



# --------------------------------------------------------------------------- docs/cli.md against --help
def _gen_cli():
    """docs/gen_cli.py as a module."""
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_md_flag_tables_are_those_of_the_parser():
    gen = _gen_cli()
    text = (ROOT / "docs" / "cli.md").read_text()
    assert not gen.missing_blocks(text), "docs/cli.md lacks generated flag tables"
    assert gen.generate(text) == text, "docs/cli.md differs from --help: run python docs/gen_cli.py"


def test_a_changed_flag_or_an_edited_table_is_caught():
    from ocp_resnet.cli import build_parser

    gen = _gen_cli()
    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    gen.subcommands(parser)["solve"].add_argument("--brand-new", default=3, help="a flag the docs do not know")
    assert "`--brand-new` | `3`" in gen.generate(text, parser)
    edited = text.replace("| `--tol` | `1e-08` |", "| `--tol` | `1e-6` |", 1)
    assert edited != text and gen.generate(edited) == text  # a hand edit inside a block is overwritten


def test_cli_md_names_every_dataset_the_loader_accepts():
    from ocp_resnet.data import BUILTIN

    text = (ROOT / "docs" / "cli.md").read_text()
    for name in (*BUILTIN, "synthetic-images", "CIFAR-10", "Fashion-MNIST", ".npz", ".csv"):
        assert name in text, name
