"""Reading versions: the files of a version (by number, by time, by tag), the current version, the history.

A reader that resolves a version once and scans exactly its files never mixes two runs, whatever a writer
does meanwhile: committed files are never rewritten, and a version's file list never changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl

from dataengine.storage.versions import log, retention
from dataengine.storage.versions.log import read_state
from dataengine.storage.versions.log_entries import list_log, read_commit_info
from dataengine.storage.versions.model import NoVersionAtError, VersionError, VersionFile, VersionInfo, VersionTable

_KEY = r"^symbol=([^/]+)/year=(\d+)/month=(\d+)/"


@dataclass(frozen=True)
class Snapshot:
    """The files of one version. ``frame``: ``symbol, year, month, path`` (store-relative), ``size``, ``rows``."""

    table: VersionTable
    version: int
    frame: pl.DataFrame

    @property
    def uri(self) -> str:
        """The table, as ``pl.scan_delta(uri, version=snapshot.version)`` opens the same files."""
        return self.table.uri

    def select(self, symbols: Iterable[str] | None = None, start: tuple[int, int] | None = None,
               end: tuple[int, int] | None = None) -> pl.DataFrame:
        """Rows of ``frame`` for these symbols and (year, month) bounds, both inclusive; None: no bound."""
        frame = self.frame
        if symbols is not None:
            frame = frame.filter(pl.col("symbol").is_in(list(symbols)))
        month = pl.col("year") * 12 + pl.col("month")
        if start is not None:
            frame = frame.filter(month >= start[0] * 12 + start[1])
        if end is not None:
            frame = frame.filter(month <= end[0] * 12 + end[1])
        return frame

    def files(self, symbols: Iterable[str] | None = None, start: tuple[int, int] | None = None,
              end: tuple[int, int] | None = None) -> list[VersionFile]:
        """The files of this version for these symbols and months, sorted by partition."""
        uri = self.table.files.uri
        return [VersionFile(s, y, m, p, uri(p), size, rows)
                for s, y, m, p, size, rows in self.select(symbols, start, end).iter_rows()]

    def changed(self, files: Sequence[VersionFile]) -> tuple[VersionFile, int | None] | None:
        """The first of ``files`` (this version's) that is not its recorded size any more, with the size it has
        (None: gone); None when every one is. A file changed after its commit (an editor or a tool writing over
        the dataset's path writes over this very file locally: a hard link) reads as valid Parquet of other
        bars, so a read checks this before it reads. One stat each (on S3, a listing of their common prefix)."""
        found = self.table.files.stat_many([f.path for f in files])
        for file, info in zip(files, found, strict=True):
            if info is None or info.size != file.size:
                return file, info.size if info is not None else None
        return None

    def scan(self, symbols: Iterable[str] | None = None, start: tuple[int, int] | None = None,
             end: tuple[int, int] | None = None) -> pl.LazyFrame:
        """A Polars scan of exactly these files, with ``symbol``, ``year``, ``month`` from their paths."""
        uris = [f.uri for f in self.files(symbols, start, end)]
        schema = {"symbol": pl.String(), "year": pl.Int32(), "month": pl.Int32()}
        if not uris:
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(uris, hive_partitioning=True, hive_schema=schema,
                               storage_options=self.table.files.storage_options)


def snapshot(table: VersionTable, *, version: int | None = None, as_of: datetime | None = None,
             tag: str | None = None) -> Snapshot:
    """The files of a version: ``version`` N, the version current at ``as_of``, the version ``tag`` pins, or
    (none given) the latest. Raises :class:`VersionError` for one that does not exist or was pruned."""
    if sum(x is not None for x in (version, as_of, tag)) > 1:
        raise VersionError("give one of version, as_of and tag")
    if tag is not None:
        version = retention.tagged_version(table, tag)
    elif as_of is not None:
        version = version_at(table, as_of)
    if version is not None:
        retention.check_not_pruned(table, version)
    if version is not None and (known := log.derived(table, version, "frame")) is not None:
        return Snapshot(table, version, known)
    state = read_state(table, version)
    if state is None:
        raise VersionError(f"{table.dataset} has no versions yet")
    frame = log.derived(table, state.version, "frame")
    if frame is None:
        frame = _frame(table, state.files)
        log.remember_derived(table, state.version, "frame", frame)  # a version's files never change
    return Snapshot(table, state.version, frame)


def _frame(table: VersionTable, files: pl.DataFrame) -> pl.DataFrame:
    key = pl.col("path").str.extract_groups(_KEY)
    return files.select(
        symbol=key.struct.field("1"),
        year=key.struct.field("2").cast(pl.Int32),
        month=key.struct.field("3").cast(pl.Int32),
        path=pl.lit(table.path + "/") + pl.col("path"),
        size=pl.col("size"),
        rows=pl.col("rows"),
    ).sort("symbol", "year", "month")


def latest_partitions(table: VersionTable, symbols: Iterable[str] | None = None) -> list[tuple[str, int, int]]:
    """(symbol, year, month) of every partition the latest version holds (of ``symbols``, if given); none
    before the first version. What a dataset held when its folder is gone whole (deleted by hand; on S3,
    every object of it deleted): the store's own record of it."""
    if current_version(table) is None:
        return []
    return [(f.symbol, f.year, f.month) for f in snapshot(table).files(symbols)]


def current_version(table: VersionTable) -> int | None:
    """The latest version's number (what a backtest records), or None when the table has none yet."""
    return list_log(table).latest


def kept_versions(table: VersionTable) -> list[int]:
    """Every version a pinned read can still open, oldest first: those a prune left, and the tagged ones."""
    before = retention.pruned_before(table)
    pinned = set(retention.tags(table).values())
    return [v for v in list_log(table).commits if not retention.was_pruned(v, before, tagged=v in pinned)]


def version_at(table: VersionTable, when: datetime) -> int:
    """The version current at ``when`` (the newest committed at or before it; naive times are UTC)."""
    commits = list(list_log(table).commits)
    if not commits:
        raise VersionError(f"{table.dataset} has no versions yet")
    when_ms = _ms(when)
    times = _LazyTimes(table, commits)
    index = bisect.bisect_right(times, when_ms) - 1  # commit times grow: one writer at a time, under the lock
    if index < 0:
        first = _as_datetime(times[0])
        raise NoVersionAtError(f"{table.dataset} has no version at {when.isoformat()}: the first is from "
                               f"{first.isoformat()}", first=first)
    return commits[index]


def history(table: VersionTable, *, limit: int | None = None) -> list[VersionInfo]:
    """Every version, newest first (``limit``: only the newest so many), with what made it."""
    commits = list(list_log(table).commits)[::-1]
    if limit is not None:
        commits = commits[:limit]
    pins: dict[int, list[str]] = {}
    for name, version in retention.tags(table).items():
        pins.setdefault(version, []).append(name)
    return [_info(version, read_commit_info(table, version), tuple(sorted(pins.get(version, ()))))
            for version in commits]


def _info(version: int, info: dict[str, Any], tags: tuple[str, ...]) -> VersionInfo:
    own = info.get("dataengine") or {}
    provenance = {k: v for k, v in own.items() if k not in ("partitions", "rows_added", "rows_removed", "txn")}
    return VersionInfo(version=version, timestamp=_as_datetime(int(info.get("timestamp", 0))),
                       run_id=own.get("run_id"), reason=own.get("reason"), partitions=own.get("partitions"),
                       rows_added=own.get("rows_added"), rows_removed=own.get("rows_removed"),
                       provenance=provenance, tags=tags)


class _LazyTimes:
    """Commit times read on demand, so a bisection reads ~log2(n) commit heads, not all of them."""

    def __init__(self, table: VersionTable, commits: list[int]) -> None:
        self.table = table
        self.commits = commits
        self.cache: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.commits)

    def __getitem__(self, index: int) -> int:
        if index not in self.cache:
            self.cache[index] = int(read_commit_info(self.table, self.commits[index]).get("timestamp", 0))
        return self.cache[index]


# Delta's commit times are whole milliseconds since the epoch: converted in integers, never through a float, so
# a time shown to the millisecond (dataengine versions) pins that very version when given back as as_of.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def _ms(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - _EPOCH) // _MS


def _as_datetime(ms: int) -> datetime:
    return _EPOCH + ms * _MS
