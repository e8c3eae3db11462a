"""A small local store for the version-table tests: partitions written as the dataset writer writes them
(a temp file renamed over ``data.parquet``), runs committed through the real API, and every engine's read of
a version."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from dataengine.storage import digests
from dataengine.storage import versions as v
from dataengine.storage.store import open_store

Key = tuple[str, int, int]
COLUMNS = ["symbol", "year", "month", "timestamp", "open", "high", "low", "close", "volume", "trade_count", "vwap"]


class Clock:
    """A clock the tests move by hand."""

    def __init__(self, start: datetime = datetime(2025, 1, 6, 2, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def bars(year: int, month: int, closes: Iterable[float]) -> pl.DataFrame:
    """A partition's bars, one minute apart from the 2nd of the month, as the store keeps them."""
    closes = list(closes)
    start = datetime(year, month, 2, 15, 0, tzinfo=timezone.utc)
    return pl.DataFrame({
        "timestamp": [start + timedelta(minutes=i) for i in range(len(closes))],
        "open": closes, "high": [c + 1 for c in closes], "low": [c - 1 for c in closes], "close": closes,
        "volume": [100 * (i + 1) for i in range(len(closes))], "trade_count": [i + 1 for i in range(len(closes))],
        "vwap": closes,
    }).with_columns(pl.col("timestamp").dt.cast_time_unit("us"))


class Store:
    """A dataset directory and its version table under ``root``."""

    def __init__(self, root: Path, dataset: str = "equities_1min", clock: Clock | None = None,
                 checkpoint_interval: int = 10) -> None:
        self.root, self.dataset = root, dataset
        self.clock = clock or Clock()
        self.table = v.VersionTable.of(open_store(root), dataset, clock=self.clock, checkpoint_interval=checkpoint_interval)

    def relpath(self, symbol: str, year: int, month: int) -> str:
        return f"{self.dataset}/symbol={symbol}/year={year:04d}/month={month:02d}/data.parquet"

    def write(self, symbol: str, year: int, month: int, closes: Iterable[float]) -> v.PartitionFile:
        """Replace a partition by rename, never in place, and hash its bytes (as the dataset writer does)."""
        target = self.root / self.relpath(symbol, year, month)
        target.parent.mkdir(parents=True, exist_ok=True)
        frame = bars(year, month, closes)
        tmp = self.root / f".{uuid.uuid4().hex}.tmp"
        frame.write_parquet(tmp, compression="zstd")
        os.replace(tmp, target)
        return v.PartitionFile(symbol, year, month, self.relpath(symbol, year, month), target.stat().st_size,
                               frame.height, digests.of_file(target))

    def provenance(self, run_id: str, reason: v.model.Reason = "run") -> v.Provenance:
        return v.Provenance(run_id, reason=reason, feed="sip", adjustment="raw", asof="2025-01-02",
                            command="dataengine ingest TEST")

    def run(self, run_id: str, partitions: Mapping[Key, Iterable[float]], reason: v.model.Reason = "run",
            advance_hours: float = 24) -> v.CommitResult:
        """One whole run: begin, write its partitions, commit; the clock moves on first."""
        self.clock.advance(hours=advance_hours)
        provenance = self.provenance(run_id, reason)
        ticket = v.begin_run(self.table, provenance)
        changes = [self.write(*key, closes) for key, closes in partitions.items()]
        return v.commit_run(self.table, ticket, changes, provenance)

    def directory(self) -> pl.DataFrame:
        """The dataset directory as a plain Hive reader sees it now."""
        frame = pl.scan_parquet(self.root / self.dataset, hive_partitioning=True).collect()
        return normal(frame)


def normal(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns in one order, partition columns as integers, rows sorted: frames from any engine compare."""
    return frame.with_columns(pl.col("year").cast(pl.Int32), pl.col("month").cast(pl.Int32),
                              pl.col("timestamp").dt.convert_time_zone("UTC")).select(COLUMNS).sort(
        "symbol", "timestamp")


def same(frame: pl.DataFrame, expected: pl.DataFrame, label: str, check_dtypes: bool = True) -> None:
    """assert_frame_equal, saying which version and engine differ."""
    try:
        assert_frame_equal(frame, expected, check_dtypes=check_dtypes)
    except AssertionError as exc:
        raise AssertionError(f"{label}: {exc}") from None


def read_every_way(table: v.VersionTable, version: int) -> dict[str, pl.DataFrame]:
    """Version ``version`` through dataengine's snapshot, Polars' scan_delta, and DuckDB over deltalake's
    Arrow dataset (DuckDB's delta extension cannot be installed offline)."""
    dataset = DeltaTable(table.uri, version=version).to_pyarrow_dataset()
    duck = duckdb.connect()
    duck.register("version_table", dataset)
    return {
        "snapshot": normal(v.snapshot(table, version=version).scan().collect()),
        "scan_delta": normal(pl.scan_delta(table.uri, version=version).collect()),
        "duckdb": normal(duck.sql("select * from version_table").pl()),
    }


def unique_bytes(root: Path) -> int:
    """Bytes the files under ``root`` take, each inode counted once (hard links are one file)."""
    seen: dict[tuple[int, int], int] = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())
