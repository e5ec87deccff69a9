"""Build the API reference of ocp_resnet from its docstrings (pdoc), warnings as errors.

    python docs/build_api.py                 # HTML into build/api (git-ignored)
    python docs/build_api.py --out DIR

Fails (exit status 1, each problem listed) when pdoc warns (an unimportable module, a name in
``__all__`` that does not resolve, an unparsable annotation, ...) or when a docstring's
cross-reference (``:func:`x```, ``:class:`x```, ``:meth:``, ``:mod:``, ``:attr:``, ``:exc:``)
names nothing: pdoc itself renders such a reference as plain code without a word, so this
script resolves every one the way Sphinx would (absolute, then relative to the module, its
class and its package, then a unique suffix match for a leading ``.``).
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# :role:`target`, :role:`~target` or :role:`title <target>`
ROLE = re.compile(r":(?:py:)?(func|class|meth|mod|attr|data|exc|obj):`(?:[^`<]*<)?~?([^`<>]+?)>?`")


def _modules() -> list[Any]:
    """Every module of the package, imported (lazy sub-packages included)."""
    import pkgutil

    import ocp_resnet

    mods = [ocp_resnet]
    for info in pkgutil.walk_packages(ocp_resnet.__path__, "ocp_resnet."):
        mods.append(importlib.import_module(info.name))
    return mods


def _specs(mods: list[Any]) -> list[str]:
    """Module specs for pdoc covering every public module once.

    pdoc walks a package's submodules but follows its ``__all__``, which names no submodules
    here; naming a module twice (directly and through its package) is a pdoc warning.
    """
    from pdoc.extract import walk_specs

    specs: list[str] = []
    covered: set[str] = set()
    for m in mods:
        name = m.__name__
        if name not in covered and not any(part.startswith("_") for part in name.split(".")):
            specs.append(name)
            covered.update(walk_specs([name]))
    return specs + [r"!.*\._"]  # private modules (a leading underscore) stay out of the reference


def _resolve_dotted(name: str) -> bool:
    """Whether ``a.b.c`` is an importable module or an attribute chain below one."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def _all_names(mods: list[Any]) -> set[str]:
    """Fully qualified names of every module, class, function and class member of the package."""
    names: set[str] = set()
    for m in mods:
        names.add(m.__name__)
        for k, v in vars(m).items():
            names.add(f"{m.__name__}.{k}")
            if isinstance(v, type):
                names.update(f"{m.__name__}.{k}.{a}" for a in dir(v))
    return names


def resolves(target: str, module: str, cls: str | None, known: set[str]) -> bool:
    """Whether a cross-reference ``target`` written in ``module`` (inside class ``cls``) names an object."""
    package = module if Path(importlib.import_module(module).__file__ or "").name == "__init__.py" \
        else module.rpartition(".")[0]
    rel = target.lstrip(".")
    candidates = [target, f"{module}.{rel}", f"{package}.{rel}"]
    if cls:
        candidates.append(f"{module}.{cls}.{rel}")
    if target.startswith("..") and package:
        candidates.append(f"{package.rpartition('.')[0]}.{target[2:]}")
    if any(c and not c.startswith(".") and _resolve_dotted(c) for c in candidates):
        return True
    # Sphinx's fuzzy search (``.name``): an object of the package whose qualified name ends in it
    return any(n.endswith("." + rel) for n in known)


def _docstrings(mods: list[Any]) -> Iterator[tuple[str, str | None, str, str]]:
    """(module, class or None, object name, docstring) of every documented object defined in the package."""
    import inspect

    for m in mods:
        yield m.__name__, None, m.__name__, m.__doc__ or ""
        for k, v in vars(m).items():
            if getattr(v, "__module__", None) != m.__name__:
                continue
            if inspect.isclass(v):
                yield m.__name__, k, f"{m.__name__}.{k}", v.__doc__ or ""
                for a, member in vars(v).items():
                    f = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                    if callable(f) or isinstance(member, property):
                        yield m.__name__, k, f"{m.__name__}.{k}.{a}", getattr(f, "__doc__", None) or ""
            elif inspect.isfunction(v):
                yield m.__name__, None, f"{m.__name__}.{k}", v.__doc__ or ""


def broken_references(mods: list[Any]) -> list[str]:
    """``object: :role:`target``` for every docstring cross-reference that names nothing."""
    known = _all_names(mods)
    bad = []
    for module, cls, name, doc in _docstrings(mods):
        for role, target in ROLE.findall(doc):
            if not resolves(target.strip(), module, cls, known):
                bad.append(f"{name}: :{role}:`{target}` does not resolve")
    return bad


def _strip_tilde_in_roles() -> None:
    """Let pdoc link Sphinx's ``:class:`~a.b.C``` (pdoc keeps the ``~`` and then links nothing)."""
    import pdoc.docstrings

    rst = pdoc.docstrings.rst
    if getattr(rst, "strips_tilde", False):
        return

    def rst_without_tilde(contents: str, source_file: Path | None) -> str:
        return rst(re.sub(r"(:(?:py:)?\w+:`)~", r"\1", contents), source_file)

    rst_without_tilde.strips_tilde = True  # type: ignore[attr-defined]
    pdoc.docstrings.rst = rst_without_tilde


def build(out: Path) -> list[str]:
    """Render the HTML reference into ``out``; return the problems (pdoc warnings, broken references)."""
    import pdoc
    import pdoc.render

    sys.path.insert(0, str(ROOT))
    import ocp_resnet
    import ocp_resnet.analysis

    # The public names are imported on first use (module __getattr__, so a command loads only what
    # it needs, and scikit-learn only with the estimator); pdoc reads module attributes directly,
    # so bind them all for the reference.
    for mod in (ocp_resnet, ocp_resnet.analysis):
        for name in mod.__all__:
            getattr(mod, name)
    _strip_tilde_in_roles()
    pdoc.render.configure(docformat="numpy", show_source=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mods = _modules()
        pdoc.pdoc(*_specs(mods), output_directory=out)
    problems = [f"pdoc: {w.category.__name__}: {w.message}" for w in caught
                if "pdoc" in w.filename or issubclass(w.category, UserWarning)]
    return problems + broken_references(mods)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "api", help="output directory (default build/api)")
    args = ap.parse_args(argv)
    problems = build(args.out)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"API reference: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"API reference: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
