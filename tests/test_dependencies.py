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


def _split(requirements: list[str]) -> tuple[set[str], dict[str, set[str]]]:
    """(what installing brings on every system, each extra's additions) of requirement strings."""
    runtime: set[str] = set()
    extras: dict[str, set[str]] = {}
    for requirement in requirements:
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", requirement)
        if extra:
            extras.setdefault(extra.group(1), set()).add(_name(requirement))
        elif ";" not in requirement:  # a marker (a platform, a Python version) does not bring it everywhere
            runtime.add(_name(requirement))
    return runtime, extras


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """dataengine's own dependencies as pyproject.toml declares them (not an install's metadata, which an edit
    without a reinstall leaves stale); Python 3.10 has no tomllib: the installed metadata there."""
    try:
        import tomllib
    except ImportError:
        return _split(metadata.requires("dataengine") or [])
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project.get("optional-dependencies", {}).items()}
    return {_name(r) for r in project["dependencies"] if ";" not in r}, extras


def _providers() -> dict[str, set[str]]:
    """Top-level module -> the installed distributions that provide it, from each one's top_level.txt or its
    file list (Python 3.10's packages_distributions reads top_level.txt only, which alpaca-py does not ship)."""
    found: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        name = _name(dist.metadata["Name"] or "")
        tops = (dist.read_text("top_level.txt") or "").split()
        if not tops:
            tops = [f.parts[0].removesuffix(".py") for f in dist.files or []
                    if f.parts and not f.parts[0].endswith((".dist-info", ".egg-info", ".pth")) and f.parts[0] not in ("..", "__pycache__")]
        for top in tops:
            found.setdefault(top, set()).add(name)
    return found


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
    runtime, extras = _declared()
    brought = set(runtime)
    for requirement in runtime:
        brought |= _split(metadata.requires(requirement) or [])[0]
    optional = set().union(*(names for extra, names in extras.items() if extra not in ("test", "docs")))
    providers = _providers()
    missing, at_import = [], []
    for path in sorted((REPO / "dataengine").rglob("*.py")):
        for module, in_function in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module in sys.stdlib_module_names or module == "dataengine" or module.startswith("_"):
                continue
            names = providers.get(module, {_name(module)})
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
    assert {"numpy", "requests"} <= _declared()[0] and "alpaca-py" in _providers()["alpaca"]
