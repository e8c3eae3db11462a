"""Every library dataengine imports comes with ``pip install .``: a declared dependency, or one a declared
dependency requires (urllib3 through requests, botocore through boto3). numpy and requests once came only
through alpaca-py's pandas and were lost when alpaca-py left the dependencies: the README's first command then
failed on a plain install while every test, in the test extra's environment, passed. Imports under
``TYPE_CHECKING`` do not count; an optional extra's library (alpaca-py) may be imported only inside a function,
where the feature that needs it is the one that fails without it."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ (]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _requirements(distribution: str) -> tuple[set[str], dict[str, set[str]]]:
    """(what installing ``distribution`` brings, each extra's additions)."""
    runtime: set[str] = set()
    extras: dict[str, set[str]] = {}
    for requirement in metadata.requires(distribution) or []:
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", requirement)
        if extra:
            extras.setdefault(extra.group(1), set()).add(_name(requirement))
        else:
            runtime.add(_name(requirement))
    return runtime, extras


def _imports(tree: ast.AST) -> Iterator[tuple[str, bool]]:
    """(top-level module, inside a function) of every import that runs: none under ``if TYPE_CHECKING``."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, bool]]:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (found for child in node.orelse for found in visit(child, in_function))
            return
        if isinstance(node, ast.Import):
            yield from ((alias.name.split(".")[0], in_function) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            yield from visit(child, inner)

    yield from visit(tree, False)


def test_every_library_dataengine_imports_is_installed_with_it() -> None:
    runtime, extras = _requirements("dataengine")
    brought = set(runtime)
    for requirement in runtime:
        brought |= _requirements(requirement)[0]
    optional = set().union(*(names for extra, names in extras.items() if extra not in ("test", "docs")))
    providers = metadata.packages_distributions()
    missing, at_import = [], []
    for path in sorted((REPO / "dataengine").rglob("*.py")):
        for module, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module in sys.stdlib_module_names or module == "dataengine" or module.startswith("_"):
                continue
            names = {_name(d) for d in providers.get(module, [module])}
            where = f"{path.relative_to(REPO)}: {module}"
            if names & optional and not names & brought:
                if not in_function:
                    at_import.append(where)
            elif not names & brought:
                missing.append(where)
    assert not missing, f"imported but not installed by `pip install .`: {missing}"
    assert not at_import, f"an optional extra's library imported when the module loads: {at_import}"


def test_the_check_sees_what_it_must(tmp_path: Path) -> None:
    """The walk finds lazy imports and skips TYPE_CHECKING ones (else the test above could pass on nothing)."""
    source = ("from typing import TYPE_CHECKING\nimport requests\nif TYPE_CHECKING:\n    import alpaca\n"
              "def f():\n    import numpy\n")
    assert sorted(_imports(ast.parse(source))) == [("numpy", True), ("requests", False), ("typing", False)]
    assert {"numpy", "requests"} <= _requirements("dataengine")[0]
