"""A version of a version table: its files, replayed from the Delta log's checkpoint and commits
(:mod:`.log_entries` reads each entry, :mod:`.log_write` writes them), and the states kept for the next replay.

Replay: the newest checkpoint at or below the version (Polars reads its ``add`` and ``txn`` columns: ~20 ms
for 54,000 files) plus the JSON commits after it (msgspec: ~2 ms for a 1,000-action nightly commit). States
are immutable, so they are cached per (table, version) and a newer version is replayed from a cached older one.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import polars as pl

from dataengine.storage import digests
from dataengine.storage.versions.log_entries import (
    Commit,
    LogListing,
    checkpoint_name,
    commit_name,
    list_log,
    log_path,
    read_commit,
)
from dataengine.storage.versions.model import DamagedLogError, VersionError, VersionTable, decode_path

logger = logging.getLogger(__name__)

FILES_SCHEMA = {"path": pl.String(), "size": pl.Int64(), "rows": pl.Int64()}
SHA256_SCHEMA = {"path": pl.String(), "sha256": pl.String()}
_TAGS = pl.List(pl.Struct({"key": pl.String(), "value": pl.String()}))  # a Parquet map, as any Polars reads it


@dataclass(frozen=True)
class TableState:
    """The files of one version (``path`` table-relative, ``size``, ``rows``), its txn versions, and the digest
    of each file's bytes where its commit recorded one (``sha256``: path, sha256; files committed before digests
    were kept, or taken in without being read, have none)."""

    version: int
    files: pl.DataFrame
    txns: dict[str, int] = field(default_factory=dict)
    sha256: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SHA256_SCHEMA))

    def digest_of(self, path: str) -> str | None:
        """The recorded digest of the bytes of ``path`` (table-relative), if its commit kept one."""
        return self._digests.get(path)

    @cached_property
    def _digests(self) -> dict[str, str]:
        # built on the first question (a repair asks once per partition), never by a run: a filter per question
        # would cost a scan of the whole table each
        return dict(self.sha256.iter_rows())

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
    sha256: dict[str, str] = {}
    txns = dict(base.txns) if base is not None else {}
    for commit in commits:
        for path in commit.removes:
            touched[path] = None
        for add in commit.adds:
            touched[add[0]] = add
            if add[0] in commit.sha256:
                sha256[add[0]] = commit.sha256[add[0]]
            else:
                sha256.pop(add[0], None)
        txns.update(commit.txns)
    frame = base.files if base is not None else pl.DataFrame(schema=FILES_SCHEMA)
    kept = frame.filter(~pl.col("path").is_in(list(touched)))
    added = pl.DataFrame([a for a in touched.values() if a is not None], schema=FILES_SCHEMA, orient="row")
    known = base.sha256 if base is not None else pl.DataFrame(schema=SHA256_SCHEMA)
    digests = pl.concat([
        known.filter(~pl.col("path").is_in(list(touched))),
        pl.DataFrame([(p, d) for p, d in sha256.items() if touched.get(p) is not None], schema=SHA256_SCHEMA, orient="row"),
    ], rechunk=True)
    return TableState(commits[-1].version, pl.concat([kept, added], rechunk=True), txns, digests)


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


def read_checkpoint(table: VersionTable, version: int) -> TableState:
    """The state a checkpoint holds; DamagedLogError naming it when it cannot be read."""
    path = log_path(table, checkpoint_name(version))
    try:
        frame = pl.read_parquet(io.BytesIO(table.files.read(path)), columns=["add", "txn"])
        add, txn = pl.col("add"), pl.col("txn")
        adds = frame.filter(add.is_not_null())
        files = adds.select(
            path=add.struct.field("path"),
            size=add.struct.field("size").cast(pl.Int64),
            rows=add.struct.field("stats").str.json_path_match("$.numRecords").cast(pl.Int64, strict=False),
        )
        txns = frame.filter(txn.is_not_null()).select(txn.struct.field("appId"), txn.struct.field("version"))
        sha256 = _checkpoint_digests(adds)
    except FileNotFoundError:
        raise DamagedLogError(table.files.uri(path), path, "missing") from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DamagedLogError(table.files.uri(path), path, str(exc) or type(exc).__name__) from None
    if files.filter(pl.col("path").str.contains("%", literal=True)).height:
        files = files.with_columns(pl.col("path").map_elements(decode_path, return_dtype=pl.String))
        sha256 = sha256.with_columns(pl.col("path").map_elements(decode_path, return_dtype=pl.String))
    return TableState(version, files, {a: int(v) for a, v in txns.iter_rows()}, sha256)


def _checkpoint_digests(adds: pl.DataFrame) -> pl.DataFrame:
    """(path, sha256) of the checkpoint's ``add`` rows whose ``tags`` map holds a digest; none when the
    checkpoint's writer left ``tags`` out of its schema."""
    add = pl.col("add")
    if not any(f.name == "tags" for f in adds.schema["add"].fields):  # type: ignore[attr-defined]
        return pl.DataFrame(schema=SHA256_SCHEMA)
    tags = add.struct.field("tags").cast(_TAGS)
    value = tags.list.eval(pl.element().filter(pl.element().struct.field("key") == digests.TAG).struct.field("value"))
    return adds.select(path=add.struct.field("path"), sha256=value.list.first()).drop_nulls("sha256")


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
