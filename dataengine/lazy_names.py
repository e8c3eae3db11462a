"""A package's names imported from their modules when first used (PEP 562), so importing the package costs
nothing: ``dataengine`` (Polars, DuckDB and the HTTP stack take half a second), ``dataengine.read`` (``status``
needs only its pins, not DuckDB and pyarrow) and ``dataengine.sources``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, modules: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The package's module-level ``__getattr__``: ``modules`` maps each name to the module defining it; a name
    once imported is kept in ``namespace`` (the package's ``globals()``), so it is looked up only once."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
