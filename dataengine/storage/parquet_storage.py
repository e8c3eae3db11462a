"""Partitioned Parquet store: ``{root}/equities_{tf}/symbol=S/year=YYYY/month=MM/data.parquet``.

Exactly once per (symbol, timestamp): new bars are merged with the partition's existing file (new values win),
sorted, written by DuckDB to a local file and moved into place by the store atomically
(:meth:`~dataengine.storage.store.Store.write_with`, :meth:`~dataengine.storage.store.Store.place`: a temp
file, fsync, rename and directory fsync locally; one PUT on S3). A crash at any moment leaves the old file or
the new one, never a torn one. DuckDB's ``COPY ... PARTITION_BY`` modes are not used on the live tree:
OVERWRITE_OR_IGNORE replaces a partition's existing rows and OVERWRITE wipes the whole target directory. Paths
and the schema come from :mod:`dataengine.storage.layout`. Every write passes the store's fence: a run that
lost its lock writes nothing more.

Thread-safe: writes to the same partition are serialised by a per-partition lock, and every thread gets its
own DuckDB connection. Across processes, the run lock (``dataengine.storage.run_lock``) keeps one writer.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from dataengine.counters import WriteCounts
from dataengine.datasets import DEFAULT_SOURCE, DatasetKey, parse_feed
from dataengine.errors import StorageError, UsageError
from dataengine.storage import dataset_record, layout
from dataengine.storage.atomic import temp_path
from dataengine.storage.bar_merge import merge_sorted, normalise, read_partition, unique_sorted
from dataengine.storage.footer_index import WrittenFooter
from dataengine.storage.layout import DATA_COLUMNS, DATA_FILE, DATASET_FILE, with_partition_columns
from dataengine.storage.store import StorePath, open_store
from dataengine.timeframes import Timeframe
from dataengine.timerange import ny_month_start

if TYPE_CHECKING:
    import duckdb

    from dataengine.config import Settings

log = logging.getLogger(__name__)

__all__ = ["DATASET_FILE", "DATA_FILE", "ParquetStorage", "WriteStats", "with_partition_columns"]


WriteStats = WriteCounts  # the name the seed API's store_data returns
_BATCH_KEY = "_partition"  # the staging COPY's partition column: the index of the target path
_BATCH_TABLE = "staged_bars"


class ParquetStorage:
    """The bar store under one root directory."""

    def __init__(self, root: str | Path | StorePath | None = None, *, settings: Settings | None = None) -> None:
        """``root``: the store (default: the settings' store, the public API's promise)."""
        if root is None:
            from dataengine.config import Settings  # the seed API's ParquetStorage(): the one default, resolved here

            settings = settings or Settings.load()
            root = open_store(settings.storage_dir, create=settings.storage_dir_is_default)
        self.root = open_store(root)
        self._locks: dict[StorePath, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._local = threading.local()
        self._duckdb: duckdb.DuckDBPyConnection | None = None
        self._written: dict[str, WrittenFooter] = {}  # what this instance wrote, for the status cache

    # -- layout -------------------------------------------------------------------------------------------

    def dataset_dir(self, key: DatasetKey) -> StorePath:
        return layout.dataset_dir(self.root, key)

    def partition_path(self, key: DatasetKey, symbol: str, year: int, month: int) -> StorePath:
        return layout.partition_path(self.root, key, symbol, year, month)

    def iter_partitions(self, key: DatasetKey, symbol: str | None = None) -> Iterator[tuple[str, int, int, StorePath]]:
        """(symbol, year, month, path) of every stored partition, sorted."""
        for part in layout.iter_partitions(self.dataset_dir(key), symbol):
            yield part.symbol, part.year, part.month, part.path

    def coverage_path(self, key: DatasetKey) -> StorePath:
        return layout.coverage_path(self.root, key)

    def extent(self, key: DatasetKey, symbol: str) -> tuple[datetime, datetime, datetime] | None:
        """(start of the first stored month, last stored bar, when that file was written) or None."""
        parts = list(self.iter_partitions(key, symbol))
        if not parts:
            return None
        _, year, month, _ = parts[0]
        last_path = parts[-1][3]
        try:
            last = self.root.store.read_parquet(last_path.key, columns=["timestamp"])["timestamp"].max()
            written = datetime.fromtimestamp(last_path.stat().modified, timezone.utc)
        except (OSError, pl.exceptions.ComputeError) as exc:
            raise StorageError(f"cannot read {last_path}: {exc}") from None
        if not isinstance(last, datetime):
            return None
        return ny_month_start(year, month), last, written

    # -- dataset identity (storage/dataset_record.py) ---------------------------------------------------

    def dataset_info(self, key: DatasetKey) -> dict[str, Any] | None:
        return dataset_record.read(self.root, key)

    def check_feed(self, key: DatasetKey, feed: str, asof: str | None = None) -> None:
        """Refuse to mix feeds, or symbol mappings (``asof``), in one dataset (:class:`DatasetMismatchError`)."""
        dataset_record.check(self.root, key, feed, asof)

    def claim_dataset(self, key: DatasetKey, feed: str, asof: str | None = None) -> str:
        """Check feed and ``asof``, record them for a new dataset; return the dataset's ``asof``."""
        return dataset_record.claim(self.root, key, feed, asof)

    # -- writes -------------------------------------------------------------------------------------------

    def store(
        self,
        dataframe: pl.DataFrame,
        timeframe: str | Timeframe = "minute",
        *,
        adjustment: str = "raw",
        feed: str = "sip",
        source: str = DEFAULT_SOURCE,
    ) -> WriteStats:
        """Merge bars (columns ``symbol``, ``timestamp``, OHLCV, ``trade_count``, ``vwap``) from ``source`` into
        its dataset, under the store's run lock (waiting up to a minute for a run that holds it), as one version
        of the dataset. Another source's dataset records point-in-time tickers (asof ``-``): only Alpaca maps
        renamed symbols (``SourceInfo.maps_renamed_symbols``)."""
        from dataengine.storage.run_ledger import new_run_id
        from dataengine.storage.run_lock import RunLock
        from dataengine.storage.run_versions import DatasetVersion
        from dataengine.storage.versions import Provenance

        key = DatasetKey.of(timeframe, adjustment, source)
        feed = parse_feed(feed)
        missing = {"symbol", "timestamp"} - set(dataframe.columns)
        if missing:
            raise UsageError(f"cannot store a frame without column(s): {', '.join(sorted(missing))}")
        with RunLock(self.root, wait=True, timeout=60, command="ParquetStorage.store"):
            self.claim_dataset(key, feed, None if key.source == DEFAULT_SOURCE else "-")
            version = DatasetVersion(self.root, key.dirname, Provenance(
                run_id=new_run_id(), source=key.source, feed=feed, adjustment=key.adjustment, command="ParquetStorage.store"))
            version.begin()
            self.take_written()
            stats = self.write(dataframe, key)
            version.commit(self.take_written())
        return stats

    def write(self, bars: pl.DataFrame, key: DatasetKey) -> WriteStats:
        """Merge ``bars`` into every partition they touch (the dataset's feed must already be claimed)."""
        stats = WriteStats()
        if bars.is_empty():
            return stats
        return self.write_keyed(with_partition_columns(normalise(bars)), key)

    def write_keyed(self, keyed: pl.DataFrame, key: DatasetKey) -> WriteStats:
        """Like :meth:`write` for bars in the stored schema that already carry ``year``/``month`` columns
        (the pipeline computes them once per page).

        Every partition the bars touch is merged with its stored file, then all of them are written by one
        DuckDB ``COPY ... PARTITION_BY`` into a private staging directory and moved into place one atomic
        rename each: a daily backfill's page touches ~500 partitions of ~21 rows, and one COPY for all of them
        costs a sixth of the CPU of one COPY each (perf-notes; bench "daily backfill")."""
        parts = keyed.partition_by(["symbol", "year", "month"], as_dict=True, include_key=False, maintain_order=True)
        targets = {
            self.partition_path(key, str(symbol), int(year), int(month)): part
            for (symbol, year, month), part in parts.items()
        }
        if len(targets) == 1:
            (path, part), = targets.items()
            return self.merge_partition(path, part)
        stats = WriteStats()
        with contextlib.ExitStack() as held:
            for path in sorted(targets):  # one global order: two threads never wait on each other's locks
                held.enter_context(self._partition_lock(path))
            merged: dict[StorePath, pl.DataFrame] = {}
            done = self.root.store.each(lambda item: self._merged_with_stored(*item), list(targets.items()))
            for (path, part), (new, old_rows) in zip(targets.items(), done, strict=True):
                merged[path] = new
                stats.add(WriteStats(rows_written=part.height, rows_added=new.height - old_rows, partitions=1))
            self._write_batch(merged)
        return stats

    def merge_partition(self, path: StorePath, new: pl.DataFrame) -> WriteStats:
        """Merge one partition's new bars into ``path`` atomically; new values win on equal timestamps."""
        with self._partition_lock(path):
            merged, old_rows = self._merged_with_stored(path, new)
            try:
                self._write_atomically(merged, path)
                self._note_written(path, merged)
            except OSError as exc:
                raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
        return WriteStats(rows_written=new.height, rows_added=merged.height - old_rows, partitions=1)

    def take_written(self) -> dict[str, WrittenFooter]:
        """:meth:`written_footers`, forgotten: what was written since the last call (one run's partitions)."""
        with self._locks_guard:
            written, self._written = self._written, {}
        return written

    def written_footers(self) -> dict[str, WrittenFooter]:
        """Row count, first and last timestamp, and stat right after the rename of every partition this
        instance wrote, by key (the version commit and the status cache take them): the status cache takes them instead of reading those footers again (a daily
        backfill's 6,000 files took 3.3 s of CPU to read back)."""
        with self._locks_guard:
            return dict(self._written)

    def _note_batch(self, paths: list[StorePath], batch: pl.DataFrame) -> None:
        """:meth:`_note_written` for a whole batch, its rows counted and ends found in one pass."""
        stamps = pl.col("timestamp").dt.epoch("us")
        ends = batch.group_by(_BATCH_KEY).agg(pl.len(), stamps.first().alias("first"), stamps.last().alias("last"))
        for i, rows, first, last in ends.sort(_BATCH_KEY).iter_rows():
            footer = WrittenFooter.of(paths[i], rows, first, last)
            with self._locks_guard:
                self._written[paths[i].key] = footer

    def _note_written(self, path: StorePath, frame: pl.DataFrame) -> None:
        stamps = frame.get_column("timestamp").dt.epoch("us")
        first, last = (int(stamps[0]), int(stamps[-1])) if frame.height else (None, None)  # sorted
        footer = WrittenFooter.of(path, frame.height, first, last)
        with self._locks_guard:
            self._written[path.key] = footer

    def _merged_with_stored(self, path: StorePath, new: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """(the partition's bars after the merge, how many rows it held before); hold its lock."""
        new = unique_sorted(new if new.columns == DATA_COLUMNS else new.select(DATA_COLUMNS))
        try:
            old = read_partition(path)
        except FileNotFoundError:
            return new, 0
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
        return merge_sorted(old, new), old.height

    def _write_atomically(self, frame: pl.DataFrame, path: StorePath) -> None:
        con = self._connection()

        def copy_to(tmp: Path) -> None:
            target = str(tmp).replace("'", "''")
            try:
                con.execute(f"COPY (SELECT * FROM bars) TO '{target}' (FORMAT PARQUET, COMPRESSION zstd)")
            except _duckdb_error() as exc:
                raise StorageError(f"cannot write {path}: {exc}") from None

        con.register("bars", ArrowStream(frame))  # zero-copy Arrow hand-off
        try:
            self.root.store.write_with(path.key, copy_to)
        finally:
            con.unregister("bars")

    def _write_batch(self, frames: dict[StorePath, pl.DataFrame]) -> None:
        """Write each frame to its path with one ``COPY ... PARTITION_BY``; every path is replaced atomically.

        The COPY goes to a directory in the store's staging area (for a local store under ``metadata/staging``,
        on its file system, never inside a dataset directory), named after this process so a dead run's
        leftover is recognised and removed; the store then moves each file into place atomically. The staging
        partition key is the target's index, so no symbol ever needs escaping."""
        paths = list(frames)
        stage = temp_path(Path("batch"), self.root.store.staging())
        heights = [frame.height for frame in frames.values()]
        batch = pl.concat(list(frames.values())).with_columns(
            pl.Series(_BATCH_KEY, np.repeat(np.arange(len(heights), dtype=np.uint32), heights))
        )
        con = self._connection()
        con.register("bars", ArrowStream(batch))
        try:
            stage.mkdir(parents=True)
            target = str(stage).replace("'", "''")
            # Through a table: DuckDB 2.0's PARTITION_BY writer scanning an Arrow frame directly shuffles rows
            # within a partition (measured: files came out unsorted); from a table it keeps insertion order,
            # at the same cost. tests/storage checks every file stays sorted.
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_BATCH_TABLE} AS SELECT * FROM bars")
            con.execute(
                f"COPY {_BATCH_TABLE} TO '{target}' "
                f"(FORMAT PARQUET, COMPRESSION zstd, PARTITION_BY ({_BATCH_KEY}), FILENAME_PATTERN 'part{{i}}')"
            )
            staged = [stage / f"{_BATCH_KEY}={i}" / "part0.parquet" for i in range(len(paths))]  # one file each
            self.root.store.place(staged, [p.key for p in paths])
            self._note_batch(paths, batch)
        except _duckdb_error() as exc:
            raise StorageError(f"cannot write {len(paths)} partitions under {self.root}: {exc}") from None
        except OSError as exc:
            raise StorageError(f"cannot write under {self.root}: {exc.strerror or exc}") from None
        finally:
            con.execute(f"DROP TABLE IF EXISTS {_BATCH_TABLE}")
            con.unregister("bars")
            shutil.rmtree(stage, ignore_errors=True)

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the store's one in-memory DuckDB database.

        A cursor costs ~0.01 ms where a new database costs ~17 ms, which a 16-worker run paid per thread.
        Cursors run in parallel; each COPY is single-threaded (the workers are the parallelism)."""
        con = getattr(self._local, "con", None)
        if con is None:
            with self._locks_guard:
                if self._duckdb is None:
                    import duckdb  # ~0.1 s: only once something is written

                    self._duckdb = duckdb.connect()
                    self._duckdb.execute("SET threads=1")
                con = self._duckdb.cursor()
            self._local.con = con
        return con

    def _partition_lock(self, path: StorePath) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(path, threading.Lock())

    # -- housekeeping -------------------------------------------------------------------------------------

    def remove_stale_temp_files(self, *, deep: bool = False) -> int:
        """Delete temp files that dead dataengine processes left (killed mid-write). Returns how many.

        Only names this tool creates (``.{target}.{pid}.{random}.tmp`` for a file it writes), only where it
        writes them, and only when that pid is not alive: a user's ``.notes.tmp`` or an editor's swap file
        anywhere under the store is never touched. Writes are staged under ``metadata/staging``, so a run looks
        there, in ``metadata/`` and at the top of each dataset directory, whatever the store's size; ``deep``
        also walks every partition directory, where earlier versions staged them (``verify --repair``)."""
        removed = self.root.store.remove_stale_temp_files(layout.temp_file_places(self.root, partitions=deep))
        if removed:
            log.info("removed %d temp file(s) left by an interrupted run", removed)
        return removed


class ArrowStream:
    """A Polars frame as DuckDB should see it: only its Arrow C stream (the PyCapsule interface). DuckDB hands
    a Polars frame it is given to ``to_arrow()``, which imports pyarrow (~66 MiB of memory, ~0.15 s) only to
    pass the same buffers on; through the capsule the buffers go over directly. One scan per registration."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.frame.__arrow_c_stream__(requested_schema)


def _duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error
