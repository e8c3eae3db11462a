"""The Delta log of a version table read: list it, parse a commit, replay it into the files of a version
(:mod:`.log_write` writes it).

Replay: the newest checkpoint at or below the version (Polars reads its ``add`` and ``txn`` columns: ~20 ms
for 54,000 files) plus the JSON commits after it (msgspec: ~2 ms for a 1,000-action nightly commit). States
are immutable, so they are cached per (table, version) and a newer version is replayed from a cached older one.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import msgspec
import polars as pl

from dataengine.storage.versions.model import DamagedLogError, VersionError, VersionTable, decode_path

logger = logging.getLogger(__name__)

LOG_DIR = "_delta_log"
LAST_CHECKPOINT = "_last_checkpoint"  # deltalake's hint naming the newest checkpoint
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
FILES_SCHEMA = {"path": pl.String(), "size": pl.Int64(), "rows": pl.Int64()}


class _Add(msgspec.Struct):
    path: str
    size: int
    stats: str | None = None


class _Remove(msgspec.Struct):
    path: str


class _Txn(msgspec.Struct):
    appId: str
    version: int


class _Action(msgspec.Struct):
    add: _Add | None = None
    remove: _Remove | None = None
    txn: _Txn | None = None
    commitInfo: dict[str, Any] | None = None


class _Stats(msgspec.Struct):
    numRecords: int | None = None


_ACTION = msgspec.json.Decoder(_Action)
_STATS = msgspec.json.Decoder(_Stats)


@dataclass(frozen=True)
class LogListing:
    """The versions a table's log holds (sorted), and those with a (single-file) checkpoint."""

    commits: tuple[int, ...]
    checkpoints: tuple[int, ...]

    @property
    def latest(self) -> int | None:
        return self.commits[-1] if self.commits else None


@dataclass(frozen=True)
class Commit:
    """One commit, parsed: its ``commitInfo``, the paths it added (with size and rows) and removed, its txns."""

    version: int
    info: dict[str, Any]
    adds: list[tuple[str, int, int | None]]
    removes: list[str]
    txns: dict[str, int]


@dataclass(frozen=True)
class TableState:
    """The files of one version (``path`` table-relative, ``size``, ``rows``) and its txn versions."""

    version: int
    files: pl.DataFrame
    txns: dict[str, int] = field(default_factory=dict)

    @cached_property
    def _keys(self) -> pl.Series:
        return self.files["path"].str.replace(r"/[^/]*$", "")

    def by_key(self, keys: Iterable[str]) -> dict[str, tuple[str, int, int | None]]:
        """The current (path, size, rows) of each partition directory in ``keys`` that has a file."""
        wanted = list(keys)
        if not wanted:
            return {}
        hits = self.files.filter(self._keys.is_in(wanted))
        return {p.rsplit("/", 1)[0]: (p, s, r) for p, s, r in hits.iter_rows()}


def log_path(table: VersionTable, name: str = "") -> str:
    return f"{table.path}/{LOG_DIR}/{name}" if name else f"{table.path}/{LOG_DIR}"


def commit_name(version: int) -> str:
    return f"{version:020d}.json"


def list_log(table: VersionTable) -> LogListing:
    commits, checkpoints = [], []
    prefix = log_path(table)
    for info in table.files.list(prefix):
        name = info.path[len(prefix) + 1 :]
        if match := _COMMIT.match(name):
            commits.append(int(match.group(1)))
        elif match := _CHECKPOINT.match(name):
            checkpoints.append(int(match.group(1)))
    commits.sort()
    checkpoints.sort()
    return LogListing(tuple(commits), tuple(checkpoints))


# -- reading ---------------------------------------------------------------------------------------------


def read_commit(table: VersionTable, version: int) -> Commit:
    """Commit ``version`` parsed; DamagedLogError when its file cannot be read whole (see :func:`parse_commit`)."""
    path = log_path(table, commit_name(version))
    try:
        data = table.files.read(path)
    except FileNotFoundError:
        raise VersionError(f"version {version} of {table.dataset} does not exist") from None
    return parse_commit(table, version, data)


def parse_commit(table: VersionTable, version: int, data: bytes) -> Commit:
    """The bytes of commit ``version`` parsed. Raises DamagedLogError naming the file when a line is not a Delta
    action (bytes cut or flipped), the file is empty, or a commit of dataengine's holds fewer ``add`` or
    ``remove`` actions than its ``commitInfo`` counts (cut at a line's end)."""
    path = log_path(table, commit_name(version))
    info: dict[str, Any] = {}
    adds: list[tuple[str, int, int | None]] = []
    removes: list[str] = []
    txns: dict[str, int] = {}
    if not data.strip():
        raise DamagedLogError(table.files.uri(path), path, "empty")
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            action = _ACTION.decode(line)
        except msgspec.DecodeError as exc:
            raise DamagedLogError(table.files.uri(path), path, f"line {number}: {exc}") from None
        if action.add is not None:
            adds.append((decode_path(action.add.path), action.add.size, _rows(action.add.stats)))
        elif action.remove is not None:
            removes.append(decode_path(action.remove.path))
        elif action.txn is not None:
            txns[action.txn.appId] = action.txn.version
        elif action.commitInfo is not None:
            info = action.commitInfo
    missing = _missing_actions(info, len(adds), len(removes))
    if missing:
        raise DamagedLogError(table.files.uri(path), path, f"cut short: {missing}")
    return Commit(version, info, adds, removes, txns)


def _missing_actions(info: dict[str, Any], adds: int, removes: int) -> str:
    """What a commit dataengine wrote lacks against the counts in its ``commitInfo`` ("" when whole, or when
    another writer's commit does not say)."""
    metrics = info.get("operationMetrics") if isinstance(info.get("dataengine"), dict) else None
    if not isinstance(metrics, dict):
        return ""
    try:
        want_adds, want_removes = int(metrics["numFiles"]), int(metrics["numRemovedFiles"])
    except (KeyError, TypeError, ValueError):
        return ""
    if (adds, removes) == (want_adds, want_removes):
        return ""
    return f"{adds} of {want_adds} add and {removes} of {want_removes} remove actions"


@dataclass
class Salvaged:
    """What the readable lines of a (possibly damaged) commit say, by partition directory: ``adds`` the file it
    added (path, size, rows), ``removes`` the file it removed (path, size: None when the action does not say);
    ``table`` its ``protocol``/``metaData`` actions as written; ``whole`` whether every line was readable and
    nothing is missing against its ``commitInfo``'s counts."""

    info: dict[str, Any] | None = None
    table: list[dict[str, Any]] = field(default_factory=list)
    txns: dict[str, int] = field(default_factory=dict)
    adds: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)
    removes: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    whole: bool = True

    @property
    def touched(self) -> set[str]:
        return set(self.adds) | set(self.removes)


def salvage_commit(data: bytes) -> Salvaged:
    """Every action of a commit's bytes that can still be read, line by line; never raises."""
    found = Salvaged(whole=bool(data.strip()))
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            action = msgspec.json.decode(line)
            kind, body = next(iter(action.items())) if isinstance(action, dict) and len(action) == 1 else ("", None)
            if not isinstance(body, dict):
                raise ValueError("not one Delta action")
            if kind == "commitInfo":
                found.info = body
            elif kind in ("protocol", "metaData"):
                found.table.append(action)
            elif kind == "txn":
                found.txns[str(body["appId"])] = int(body["version"])
            elif kind == "add":
                path = decode_path(str(body["path"]))
                found.adds[path.rsplit("/", 1)[0]] = (path, int(body["size"]), _rows(body.get("stats")))
            elif kind == "remove":
                path = decode_path(str(body["path"]))
                size = body.get("size")
                found.removes[path.rsplit("/", 1)[0]] = (path, int(size) if size is not None else None)
        except (msgspec.DecodeError, ValueError, KeyError, TypeError):
            found.whole = False
    if found.info is not None and _missing_actions(found.info, len(found.adds), len(found.removes)):
        found.whole = False
    return found


def read_commit_info(table: VersionTable, version: int) -> dict[str, Any]:
    """A commit's ``commitInfo``, reading only the head of the file (:mod:`.log_write` writes it first)."""
    path = log_path(table, commit_name(version))
    try:
        head = table.files.read(path, limit=64 * 1024)
    except FileNotFoundError:
        raise VersionError(f"version {version} of {table.dataset} does not exist") from None
    first, newline, _ = head.partition(b"\n")
    if newline or len(head) < 64 * 1024:
        try:
            action = _ACTION.decode(first)
        except msgspec.DecodeError as exc:
            raise DamagedLogError(table.files.uri(path), path, f"line 1: {exc}") from None
        if action.commitInfo is not None:
            return action.commitInfo
    return read_commit(table, version).info  # written by someone else: commitInfo may be anywhere


def _rows(stats: str | None) -> int | None:
    if not stats:
        return None
    try:
        return _STATS.decode(stats).numRecords
    except msgspec.DecodeError:
        return None


_CACHE: OrderedDict[tuple[str, int], TableState] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def read_state(table: VersionTable, version: int | None = None, listing: LogListing | None = None) -> TableState | None:
    """The files of ``version`` (default: the latest); None when the table has no version yet."""
    listing = listing or list_log(table)
    if listing.latest is None:
        if version is not None:
            raise VersionError(f"{table.dataset} has no versions yet")
        return None
    target = listing.latest if version is None else version
    if target not in listing.commits:
        raise VersionError(f"version {target} of {table.dataset} does not exist (versions 0..{listing.latest})")
    base = _base(table, listing, target)
    start = base.version + 1 if base is not None else 0
    present = set(listing.commits)
    missing = [v for v in range(start, target + 1) if v not in present]
    if missing:
        path = log_path(table, commit_name(missing[0]))
        raise DamagedLogError(table.files.uri(path), path, "missing: the log has versions after it and no checkpoint")
    state = apply_commits(base, [read_commit(table, v) for v in range(start, target + 1)])
    remember(table, state)
    return state


def apply_commits(base: TableState | None, commits: Sequence[Commit]) -> TableState:
    """``base`` with ``commits`` applied in order: for each path the last action (add or remove) wins."""
    if not commits:
        assert base is not None
        return base
    touched: dict[str, tuple[str, int, int | None] | None] = {}
    txns = dict(base.txns) if base is not None else {}
    for commit in commits:
        for path in commit.removes:
            touched[path] = None
        for add in commit.adds:
            touched[add[0]] = add
        txns.update(commit.txns)
    frame = base.files if base is not None else pl.DataFrame(schema=FILES_SCHEMA)
    kept = frame.filter(~pl.col("path").is_in(list(touched)))
    added = pl.DataFrame([a for a in touched.values() if a is not None], schema=FILES_SCHEMA, orient="row")
    return TableState(commits[-1].version, pl.concat([kept, added], rechunk=True), txns)


def _base(table: VersionTable, listing: LogListing, target: int) -> TableState | None:
    """Where a replay up to ``target`` starts: the newest readable checkpoint at or below it, or a cached state
    at least as new. A damaged checkpoint only costs speed (every commit is kept): the one before it is used,
    with a warning naming it."""
    cached = _cached_base(table.uri, target)
    for checkpoint in sorted((c for c in listing.checkpoints if c <= target), reverse=True):
        if cached is not None and checkpoint <= cached.version:
            break
        try:
            return read_checkpoint(table, checkpoint)
        except DamagedLogError as exc:
            logger.warning("%s; replaying the commits before it instead", exc)
    return cached


def checkpoint_name(version: int) -> str:
    return f"{version:020d}.checkpoint.parquet"


def read_checkpoint(table: VersionTable, version: int) -> TableState:
    """The state a checkpoint holds; DamagedLogError naming it when it cannot be read."""
    path = log_path(table, checkpoint_name(version))
    try:
        frame = pl.read_parquet(io.BytesIO(table.files.read(path)), columns=["add", "txn"])
        add, txn = pl.col("add"), pl.col("txn")
        files = frame.filter(add.is_not_null()).select(
            path=add.struct.field("path"),
            size=add.struct.field("size").cast(pl.Int64),
            rows=add.struct.field("stats").str.json_path_match("$.numRecords").cast(pl.Int64, strict=False),
        )
        txns = frame.filter(txn.is_not_null()).select(txn.struct.field("appId"), txn.struct.field("version"))
    except FileNotFoundError:
        raise DamagedLogError(table.files.uri(path), path, "missing") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DamagedLogError(table.files.uri(path), path, str(exc) or type(exc).__name__) from None
    if files.filter(pl.col("path").str.contains("%", literal=True)).height:
        files = files.with_columns(pl.col("path").map_elements(decode_path, return_dtype=pl.String))
    return TableState(version, files, {a: int(v) for a, v in txns.iter_rows()})


def _cached_base(uri: str, target: int) -> TableState | None:
    with _CACHE_LOCK:
        best = max((v for (u, v) in _CACHE if u == uri and v <= target), default=None)
        if best is None:
            return None
        _CACHE.move_to_end((uri, best))
        return _CACHE[(uri, best)]


def remember(table: VersionTable, state: TableState) -> None:
    """Cache ``state`` (a writer that just made it saves the next reader a replay)."""
    key = (table.uri, state.version)
    with _CACHE_LOCK:
        _CACHE[key] = state
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


_DERIVED: OrderedDict[tuple[str, int, str], Any] = OrderedDict()


def derived(table: VersionTable, version: int, name: str) -> Any:
    """Something a reader built from version ``version`` and kept (:func:`remember_derived`), or None."""
    with _CACHE_LOCK:
        return _DERIVED.get((table.uri, version, name))


def remember_derived(table: VersionTable, version: int, name: str, value: Any) -> None:
    key = (table.uri, version, name)
    with _CACHE_LOCK:
        _DERIVED[key] = value
        _DERIVED.move_to_end(key)
        while len(_DERIVED) > _CACHE_SIZE:
            _DERIVED.popitem(last=False)


def forget(table: VersionTable) -> None:
    """Drop everything cached of this table (a table made anew, tests, the benchmark's cold runs)."""
    with _CACHE_LOCK:
        for key in [k for k in _CACHE if k[0] == table.uri]:
            del _CACHE[key]
        for dkey in [k for k in _DERIVED if k[0] == table.uri]:
            del _DERIVED[dkey]
