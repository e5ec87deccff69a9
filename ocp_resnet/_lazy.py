"""Module attributes imported on first use (PEP 562), for the package and its sub-packages: so
that ``import ocp_resnet`` (which every ``ocp-resnet`` command runs first) loads no module the
command does not need."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(package: str, namespace: dict[str, Any], exports: Mapping[str, str],
                    submodules: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` (whose globals are
    ``namespace``): a name of ``exports`` is imported from the module it maps to, a name of
    ``submodules`` is that submodule; each is kept in ``namespace`` once loaded."""
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
        elif name in subs:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value  # later look-ups find it without this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports, *subs})

    return __getattr__, __dir__
