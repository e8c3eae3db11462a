"""The shape docs/architecture.md promises, checked rather than claimed: imports point down the list of rooms
(deferred imports included), the module map names every module, and only the two store implementations ask
which backend they run on."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "dataengine"
MAP_PAGE = REPO / "docs" / "architecture.md"

# The rooms, top to bottom, as docs/architecture.md "Where each thing lives" lists them. A module may import
# from its own room and from any room below it.
LAYERS: list[set[str]] = [
    {"__main__", "cli", "api", "alpaca_api_data"},
    {"commands"},
    {"reports"},
    {"orchestration"},
    {"read"},
    {"sources"},
    {"actions"},
    {"storage"},
    {"loaders"},
    {"config", "urls"},
    {"calendar"},
    {"timerange"},
    {"datasets"},
    {"timeframes"},
    {"counters", "outcome"},
    {"errors", "lazy_names"},
]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room(module: str) -> str:
    """``dataengine.storage.layout`` -> ``storage``; ``dataengine.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dataengine"


def imports(path: Path) -> list[tuple[str, int]]:
    """Every dataengine module ``path`` imports at run time (deferred imports too; not TYPE_CHECKING ones)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for guard in ast.walk(tree) if isinstance(guard, ast.If) and "TYPE_CHECKING" in ast.unparse(guard.test)
                   for node in ast.walk(guard)}
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dataengine":
            if node.module == "dataengine":  # from dataengine import X: the root's lazy names are their modules
                found += [(f"dataengine.{alias.name}", node.lineno) for alias in node.names if alias.name != "__version__"]
            else:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "dataengine"]
    return found


def test_imports_point_down_the_rooms() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        if importer == "dataengine":
            continue  # the package root names the public API lazily (PEP 562): nothing is imported at load
        for target, line in imports(path):
            a, b = room(importer), room(target)
            assert a in LEVEL, f"{importer}: room {a!r} is not in the module map's list"
            if b == "dataengine" or a == b:
                continue
            if LEVEL[b] < LEVEL[a]:
                upward.append(f"{path.relative_to(REPO)}:{line} {importer} -> {target} ({a} imports {b}, above it)")
    assert not upward, "imports pointing up:\n" + "\n".join(upward)


def test_the_module_map_names_every_module() -> None:
    page = MAP_PAGE.read_text(encoding="utf-8")
    section = page[page.index("## Where each thing lives"):]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    rows = [line for line in section.splitlines() if line.startswith("|")]
    named = " ".join(rows)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if f"`{rel.name}`" not in named and f"`{rel}`" not in named:
            missing.append(str(rel))
    assert not missing, f"modules the map in {MAP_PAGE.relative_to(REPO)} does not name: {missing}"
    for room_name in {r for rooms in LAYERS for r in rooms} - {"__main__", "cli", "api", "alpaca_api_data"}:
        assert f"`{room_name}" in named or f"{room_name}.py" in named, room_name


def test_only_the_store_implementations_ask_for_a_backend() -> None:
    """Local vs S3 is decided once (open_store) and known only inside the two implementations."""
    allowed = {"storage/store.py", "storage/local_store.py", "storage/s3_store.py", "storage/s3_client.py",
               "storage/lease_lock.py", "storage/commit_log.py"}
    backend_test = re.compile(r"\bis_s3\b|isinstance\([^)]*S3(Path|Store)\b|\bS3Path\b|startswith\(\"s3://\"\)")
    offenders = [f"{path.relative_to(PACKAGE)}:{n}" for path in sorted(PACKAGE.rglob("*.py"))
                 if str(path.relative_to(PACKAGE)) not in allowed
                 for n, line in enumerate(path.read_text().splitlines(), 1) if backend_test.search(line)]
    assert not offenders, offenders
