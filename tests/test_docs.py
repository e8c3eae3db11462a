"""The documentation, checked rather than claimed.

- Every fenced Python block, every block with a ``dataengine ...`` command and every SQL block of README.md
  and docs/*.md runs, page by page in document order, against the local test servers and a small store
  (``tests/docs_store.py``); a block that cannot run here is marked ``<!-- not-run: REASON -->`` on the line
  before it. A command exits 0 unless ``<!-- exit-code: N -->`` before its block says otherwise.
- The CLI reference (docs/cli.md) is what ``scripts/gen_cli_reference.py`` prints today.
- The store-layout page names every path ``dataengine/storage/layout.py`` names; the configuration page every
  setting and environment variable ``dataengine.config`` reads.

The pages name a store as ``/data/stocks``, ``/home/me/.local/share/dataengine`` or ``s3://acme-research/bars``;
here those are the test's store (the last on the S3 test server).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import docs_store
from tests.conftest import REPO

PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
GENERATED = {REPO / "docs" / "cli.md"}  # checked against the code as a whole (test_the_cli_reference_is_current)
LOCAL_STORES = ("/home/me/.local/share/dataengine", "/data/stocks")
S3_STORE = "s3://acme-research/bars"

_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>```+|~~~+)(?P<lang>[\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|exit-code):\s*(?P<value>.*?)\s*-->\s*$")
_COMMAND = re.compile(r"(?:^|[;&|(]\s*)(?:\$\s+)?dataengine(?:\s|$)")  # the word dataengine where a shell runs it
_PYTHON = {"python", "py", "python3", "pycon"}
_SHELL = {"bash", "sh", "shell", "console", "shell-session", ""}


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    not_run: str | None = None  # the reason, when marked
    exit_code: int = 0
    markers: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def kind(self) -> str | None:
        """What running it means: python, sql, commands, or None (text, output, config: nothing to run)."""
        if self.lang in _PYTHON:
            return "python"
        if self.lang == "sql":
            return "sql"
        if self.lang == "ini":
            return "ini"
        lines = [line.strip() for line in self.text.splitlines() if not line.lstrip().startswith("#")]
        if self.lang in _SHELL and any(_COMMAND.search(line) for line in lines):
            return "commands"
        if any(line.startswith(("dataengine ", "$ dataengine ")) for line in lines):
            return "commands"  # a command in a block of another language (text, ...): runs too, or says why not
        return None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, with the markers on the line right before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence[:3])
                    and lines[j].strip().strip(fence[0]) == ""), None)
        assert end is not None, f"{page.relative_to(REPO)}:{i + 1}: a fence that never closes"
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in lines[i + 1 : end])
        block = Block(page, i + 1, opening["lang"].lower(), body)
        j = i - 1
        while j >= 0 and (marker := _MARKER.match(lines[j])):
            block.markers.append(marker["kind"])
            if marker["kind"] == "not-run":
                block.not_run = marker["value"]
            else:
                block.exit_code = int(marker["value"])
            j -= 1
        found.append(block)
        i = end + 1
    return found


def runnable_pages() -> list[Path]:
    return [p for p in PAGES if p not in GENERATED and any(b.kind and b.not_run is None for b in blocks(p))]


# -- every block is run or marked --------------------------------------------------------------------------


def test_every_block_is_run_or_says_why_not() -> None:
    """A marker names a reason and sits right before a block that would otherwise run; nothing else is left out."""
    problems = []
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        fences = {b.line for b in blocks(page)}
        for n, line in enumerate(lines):
            if _MARKER.match(line):
                after = next(m for m in range(n, len(lines) + 1) if m == len(lines) or not _MARKER.match(lines[m]))
                if after + 1 not in fences:
                    problems.append(f"{page.relative_to(REPO)}:{n + 1}: a marker that is not right before a block")
        for block in blocks(page):
            if block.not_run is not None and len(block.not_run) < 10:
                problems.append(f"{block.where}: not-run needs a reason, not {block.not_run!r}")
            if block.not_run is not None and block.kind is None:
                problems.append(f"{block.where}: marked not-run, but nothing in it would run")
    assert not problems, "\n".join(problems)


def test_the_pages_have_snippets_that_run() -> None:
    """The parser finds what it should: a guard against a change that would silently run nothing."""
    names = {p.name for p in runnable_pages()}
    assert {"README.md", "getting-started.md", "reading.md", "versions.md", "operations.md", "s3.md", "sources.md"} <= names
    assert sum(1 for p in PAGES for b in blocks(p) if b.kind and b.not_run is None) >= 40


# -- running them ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_servers() -> Iterator[tuple[Any, Any]]:
    """The Alpaca and Massive test servers of tests/docs_store.py, for the whole module."""
    with docs_store.server(rate_window_s=1.0) as alpaca, docs_store.massive_server(hang_s=5.0) as massive:
        yield alpaca, massive
        assert not alpaca.errors and not massive.errors, (alpaca.errors, massive.errors)


@pytest.fixture(scope="module")
def template_store(docs_servers: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The docs store, filled once; each page runs on a copy of it."""
    store = tmp_path_factory.mktemp("docs-template") / "store"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in docs_store.environment(docs_servers[0], store, docs_servers[1]).items():
            mp.setenv(name, value)
        docs_store.fill(store)
    return store


@pytest.mark.slow
@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_the_snippets_of_a_page_run(page: Path, docs_servers: tuple[Any, Any], template_store: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    store = tmp_path / "store"
    shutil.copytree(template_store, store)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name, value in docs_store.environment(docs_servers[0], store, docs_servers[1]).items():
        monkeypatch.setenv(name, value)
    replace = dict.fromkeys(LOCAL_STORES, str(store))
    if S3_STORE in page.read_text(encoding="utf-8"):
        replace[S3_STORE] = _s3_store(request, monkeypatch)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.kind is None or block.not_run is not None:
            continue
        code = block.text
        for old, new in replace.items():
            code = code.replace(old, new)
        if block.kind == "python":
            exec(compile(code, block.where, "exec"), namespace)  # the page's own code, as written
        elif block.kind == "sql":
            import duckdb

            duckdb.sql(code).fetchall()
        elif block.kind == "ini":
            from dataengine import Settings

            settings_file = work / "settings-from-docs.ini"
            settings_file.write_text(code)
            Settings.load(config_path=settings_file)
        else:
            for command in _commands(block.text, console=_is_console(block)):
                for old, new in replace.items():
                    command = command.replace(old, new)
                code_, out, err = _run(command)
                assert code_ == block.exit_code, (f"{block.where}: `{command}` exited {code_}, expected "
                                                  f"{block.exit_code}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}")


def _s3_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the S3 test server, with the AWS environment pointing at it; its store URL."""
    import boto3

    from dataengine.storage.s3_client import forget_clients

    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in (("AWS_ACCESS_KEY_ID", "test-access"), ("AWS_SECRET_ACCESS_KEY", "test-secret"),
                        ("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    forget_clients()
    request.addfinalizer(forget_clients)
    bucket = f"docs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/bars"


def _is_console(block: Block) -> bool:
    return block.lang == "console" or any(line.startswith("$ ") for line in block.text.splitlines())


def _commands(text: str, *, console: bool) -> list[str]:
    """The command lines of a block: after ``$ `` in a console transcript, else every line that is not a
    comment (backslash continuations joined). Every one must be a dataengine command."""
    lines = text.splitlines()
    if console:
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + line.strip()
        elif line.strip() and not line.lstrip().startswith("#"):
            joined.append(line.strip())
    for command in joined:
        assert _COMMAND.search(command), f"not a dataengine command (mark the block not-run): {command}"
    return joined


def _run(command: str) -> tuple[int, str, str]:
    """A plain ``dataengine ARGS`` runs in this process (as tests/helpers.run_cli does); anything with shell
    syntax (a redirect, ``;``, ``$?``) runs in /bin/sh with this virtualenv's ``dataengine`` first on the PATH."""
    words = shlex.split(command, comments=True)
    shell_syntax = any(c in command.split("#", 1)[0] for c in "<>|;&$`")
    if words and words[0] == "dataengine" and not shell_syntax:
        from dataengine.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(words[1:])
        return code, out.getvalue(), err.getvalue()
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "dataengine").is_file(), f"no dataengine script beside {sys.executable}: pip install -e ."
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")
    done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


# -- the generated CLI reference -----------------------------------------------------------------------------


def _script(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_current() -> None:
    """docs/cli.md is what the commands' --help prints today (run scripts/gen_cli_reference.py when not)."""
    generator = _script("gen_cli_reference")
    page = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert page == generator.render(), "docs/cli.md is stale: run python scripts/gen_cli_reference.py"


def test_the_cli_reference_has_every_command() -> None:
    page = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for path in _script("gen_cli_reference").command_paths():
        assert f"## `{' '.join(['dataengine', *path])}`" in page
    assert "\x1b[" not in page and "╭" not in page, "help with colours or Rich boxes"


# -- the layout page and the configuration page --------------------------------------------------------------


def _layout_tree() -> set[str]:
    """Every path the tree on the storage page draws, relative to the root; directories end in '/'."""
    page = (REPO / "docs" / "storage.md").read_text(encoding="utf-8")
    tree = page[page.index("## The layout"):]
    tree = tree[tree.index("```text\n") + 8:]
    tree = tree[: tree.index("```")]
    paths: set[str] = set()
    parents: list[str] = []
    for line in tree.splitlines()[1:]:  # the first line is {storage_dir}/
        name_at = next(i for i, c in enumerate(line) if c not in " │├└─")
        depth = name_at // 4 - 1
        name = line[name_at:].split("  #", 1)[0].strip()
        parents[depth:] = [name]
        path = "".join(p if p.endswith("/") else p + "/" for p in parents[:-1]) + name
        paths.add(path)
        parts = path.rstrip("/").split("/")
        paths.update("/".join(parts[:k]) + "/" for k in range(1, len(parts)))
    return paths


def test_the_layout_page_names_every_path_layout_owns(tmp_path: Path) -> None:
    from dataengine.storage import layout
    from dataengine.storage.store import StorePath, open_store

    tree = _layout_tree()
    root = open_store(str(tmp_path))
    examples = {"root": root, "key": "equities_1min", "dataset": "equities_1min", "symbol": "AAPL", "year": 2024,
                "month": 1, "stamp": "{time}"}
    named = []
    for name, function in inspect.getmembers(layout, inspect.isfunction):
        if function.__module__ != layout.__name__ or name.startswith("_"):
            continue
        if str(inspect.signature(function).return_annotation) != "StorePath":
            continue  # names a path: every function that returns one (lookups and listings return more)
        params = inspect.signature(function).parameters
        if name == "adjusted_record_path":
            args = {"root": root, "dataset": "equities_1day_split"}
        elif name == "lock_path":
            for lock in (layout.LOCK_FILE, layout.INDICES_LOCK_FILE):
                named.append((f"{name}({lock})", function(root, lock)))
            continue
        else:
            missing = [p for p in params if p not in examples and params[p].default is inspect.Parameter.empty]
            assert not missing, f"layout.{name}: no example value for {missing}: add one to this test"
            args = {p: examples[p] for p in params if p in examples}
        named.append((name, function(**args)))
    assert len(named) >= 15
    absent = []
    for name, path in named:
        assert isinstance(path, StorePath)
        rel = path.key[len(root.key):].lstrip("/")
        if rel not in tree and rel + "/" not in tree:
            absent.append(f"layout.{name}: {rel}")
    for constant in ("DATA_FILE", "DATASET_FILE", "METADATA_DIR", "CACHE_FILE", "STORE_FILE", "LOCK_FILE",
                     "INDICES_LOCK_FILE", "LEDGER_FILE", "ACTIONS_DIR", "ACTIONS_FILE", "CLOSES_FILE", "FETCHED_FILE",
                     "QUARANTINE_DIR", "VERSIONS_DIR"):
        value = getattr(layout, constant)
        if not any(value in p.split("/") or value + "/" in p for p in tree):
            absent.append(f"layout.{constant}: {value}")
    # the paths the module's own docstring lists, placeholders as any name
    for line in (layout.__doc__ or "").splitlines():
        if not line.strip().startswith("{root}/"):
            continue
        listed = line.split()[0][len("{root}/"):].replace("/...", "/")
        pattern = re.escape(listed).replace(r"\[", "(?:").replace(r"\]", ")?")  # [optional parts]
        pattern = re.sub(r"\\\{[A-Za-z]+\\\}", "[^/]+", pattern)  # {placeholders}: any name
        if not any(re.fullmatch(pattern, p) for p in tree):
            absent.append(f"layout's docstring: {listed}")
    assert not absent, "paths layout.py owns that docs/storage.md does not draw:\n" + "\n".join(absent)


def test_the_configuration_page_names_every_setting() -> None:
    from dataengine import config

    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = page[page.index("## Every setting"):]
    missing = [f"settings.ini key {key}" for key in config._KEYS if f"`{key}`" not in table]
    missing += [f"environment variable {var}" for _, _, var in config._KEYS.values() if var and f"`{var}`" not in table]
    for aliases in config._KEY_ALIASES.values():
        missing += [f"misnamed variable {alias}" for alias in aliases if f"`{alias}`" not in table]
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "dataengine").rglob("*.py"))
    for var in sorted(set(re.findall(r"[\"'](DATAENGINE_[A-Z_]+)[\"']", source))):
        if f"`{var}`" not in table:
            missing.append(f"environment variable {var} (read in dataengine/)")
    assert not missing, "docs/configuration.md does not name:\n" + "\n".join(missing)


# -- the pictures ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_screens_script_still_draws_every_picture(tmp_path: Path) -> None:
    """scripts/gen_screens.py runs against the test server and writes the three SVGs docs/assets/ holds."""
    pytest.importorskip("matplotlib", reason="the plot needs the docs extra: pip install -e '.[docs]'")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_screens.py"), "--out", str(tmp_path),
                           "--latency", "0.05"], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "NO_COLOR"})
    assert done.returncode == 0, done.stderr[-3000:]
    svgs = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.svg")}
    assert sorted(svgs) == sorted(p.name for p in (REPO / "docs" / "assets").glob("*.svg"))
    assert all(text.lstrip().startswith(("<svg", "<?xml")) for text in svgs.values())
    assert "worker-8" in svgs["live-progress.svg"] and "overall" in svgs["live-progress.svg"]
    assert "equities_1day" in svgs["status.svg"] and "/data/stocks" in svgs["status.svg"]
    assert "NVDA" in svgs["split-adjusted.svg"]
