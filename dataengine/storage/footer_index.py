"""The footer index: every partition's row count and first/last bar, read from Parquet footers and cached.

Row counts come from each file's footer (``num_rows``: what DuckDB's ``count(*)`` returns) and first/last bars
from the footer's min/max statistics of ``timestamp``. Reading 54,000 footers still takes seconds, so the
footers are cached in ``{root}/metadata/status-cache.arrow`` (Arrow IPC, not ``.parquet``, so no glob over
the store picks it up), keyed by partition and validated by inode, size and mtime: ``os.replace`` gives every
rewritten partition a new inode, so a stale entry is never used. A call lists the partition directories,
stats each ``data.parquet`` and reads only the footers that changed. ``status`` reads it; every ingest
refreshes the entries of what it wrote (:func:`refresh_cache`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl

from dataengine.errors import StorageError
from dataengine.storage import layout
from dataengine.storage.store import StorePath

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
KEY = ["dataset", "symbol", "year", "month"]

_SCHEMA = {
    "dataset": pl.String,
    "symbol": pl.String,
    "year": pl.Int32,
    "month": pl.Int32,
    "ino": pl.Int64,
    "size": pl.Int64,
    "mtime_ns": pl.Int64,
    "blocks": pl.Int64,
    "rows": pl.Int64,
    "first_us": pl.Int64,
    "last_us": pl.Int64,
    "gone": pl.Boolean,  # the file was indexed once and is not there any more (deleted by something else)
}
UNREADABLE = -1  # ``rows`` of a file whose footer cannot be read (truncated, garbage, not Parquet)
def _walk(root: StorePath, datasets: Sequence[str], symbols: Sequence[str] | None = None) -> tuple[dict[str, list[Any]], list[StorePath]]:
    """Every ``data.parquet`` of the given datasets (of the given symbols only, if any) and its stat, as
    columns plus the paths; no footer is read. One walk per dataset, or per symbol when symbols are given (a
    nightly run lists what it wrote, never the whole store); on S3 one LIST per 1,000 objects, sixteen at a
    time, and none for a prefix the running run listed already (the store keeps it, with its writes laid over)."""
    cols: dict[str, list[Any]] = {k: [] for k in ("dataset", "symbol", "year", "month", "ino", "size", "mtime_ns", "blocks")}
    paths: list[StorePath] = []
    for dataset in datasets:
        base = root / dataset
        prefixes = [base / layout.symbol_dirname(s) for s in symbols] if symbols is not None else [base]
        for listing in root.store.each(lambda prefix: prefix.walk(), prefixes):
            for path, st in listing:
                rel = path.key[len(base.key) + 1:]  # symbol=S/year=Y/month=M/data.parquet, four levels down
                key = layout.parse_partition_key(rel) if rel.count("/") == 3 else None
                if key is None:
                    continue
                for name, value in zip(("dataset", "symbol", "year", "month", "ino", "size", "mtime_ns", "blocks"),
                                       (dataset, *key, st.ino, st.size, st.mtime_ns, st.disk_bytes), strict=True):
                    cols[name].append(value)
                paths.append(path)
    return cols, paths


def _to_us(value: Any) -> int | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int((value - EPOCH) // timedelta(microseconds=1))
    return None


def _read_footer(path: StorePath) -> tuple[int, int | None, int | None]:
    """(rows, first timestamp in µs, last timestamp in µs) from one file's footer."""
    meta = path.store.parquet_metadata(path.key)
    first: int | None = None
    last: int | None = None
    column = next((i for i in range(meta.num_columns) if meta.schema.column(i).name == "timestamp"), None)
    if column is not None:
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max:
                continue
            lo, hi = _to_us(stats.min), _to_us(stats.max)
            if lo is not None:
                first = lo if first is None else min(first, lo)
            if hi is not None:
                last = hi if last is None else max(last, hi)
    return meta.num_rows, first, last


@dataclass(frozen=True, slots=True)
class WrittenFooter:
    """What a writer knows of a file it just wrote: its footer's facts and its stat right after the rename."""

    rows: int
    first_us: int | None
    last_us: int | None
    ino: int
    size: int
    mtime_ns: int
    disk_bytes: int = 0
    sha256: str | None = None  # the digest of the bytes placed (:mod:`dataengine.storage.digests`)

    @classmethod
    def of(cls, path: StorePath, rows: int, first_us: int | None, last_us: int | None,
           sha256: str | None = None) -> WrittenFooter:
        st = path.stat()  # the store answers from what it wrote, where a stat is a request
        return cls(rows, first_us, last_us, st.ino, st.size, st.mtime_ns, st.disk_bytes, sha256)


class FooterCache:
    """Footers of a store's partitions, cached under ``metadata/`` and refreshed from the files' stat."""

    def __init__(self, root: StorePath) -> None:
        self.root = root.root
        self.path = layout.status_cache_path(root)
        self.footers_read = 0  # how many footers the last :meth:`partitions` call had to read
        self.unreadable = pl.DataFrame(schema={**{k: _SCHEMA[k] for k in KEY}, "path": pl.String})
        self.gone = pl.DataFrame(schema={k: _SCHEMA[k] for k in KEY})

    def load(self) -> pl.DataFrame:
        try:
            frame = pl.read_ipc(io.BytesIO(self.path.read_bytes()))
            if dict(frame.schema) == _SCHEMA:
                return frame
        except (OSError, pl.exceptions.PolarsError):
            pass
        return pl.DataFrame(schema=_SCHEMA)

    def save(self, frame: pl.DataFrame) -> None:
        try:
            self.path.store.write_with(self.path.key, lambda tmp: frame.write_ipc(tmp, compression="uncompressed"))
        except (OSError, StorageError) as exc:  # a read-only store still answers, only slower next time
            log.info("cannot save the status cache %s: %s", self.path, exc)

    def partitions(
        self, datasets: Sequence[str], symbols: Sequence[str] | None = None, *, whole_store: bool = False,
        persist: bool = True, known: Mapping[str, WrittenFooter] | None = None,
    ) -> pl.DataFrame:
        """One row per readable partition of ``datasets`` (of ``symbols`` only, if given): key, sizes, rows,
        first/last. The cache is refreshed for that scope; ``whole_store`` also drops entries of datasets that
        no longer exist. Afterwards :attr:`unreadable` lists the files of that scope whose footer cannot be
        read, and :attr:`gone` the partitions indexed before whose file has disappeared. ``persist=False``
        leaves the cache file as it is (a dry run writes nothing). ``known``: footers this process wrote itself
        (by path), used instead of reading a file whose stat is still the one taken right after writing it."""
        columns, paths = _walk(self.root, datasets, symbols)
        current = pl.DataFrame(columns, schema={k: v for k, v in _SCHEMA.items() if k not in ("rows", "first_us", "last_us", "gone")})
        cache = self.load()
        joined = current.join(
            cache.filter(~pl.col("gone")).select(*KEY, pl.col("ino").alias("c_ino"), pl.col("size").alias("c_size"),
                                                 pl.col("mtime_ns").alias("c_mtime"), "rows", "first_us", "last_us"),
            on=KEY, how="left",
        )
        fresh = (pl.col("c_ino") == pl.col("ino")) & (pl.col("c_size") == pl.col("size")) & (pl.col("c_mtime") == pl.col("mtime_ns"))
        joined = joined.with_columns(fresh.fill_null(False).alias("fresh"))
        stale_idx = joined.with_row_index().filter(~pl.col("fresh"))["index"].to_list()
        rows = joined["rows"].to_list()
        firsts = joined["first_us"].to_list()
        lasts = joined["last_us"].to_list()
        if known:
            inos, sizes, mtimes = joined["ino"].to_list(), joined["size"].to_list(), joined["mtime_ns"].to_list()
            unknown = []
            for i in stale_idx:
                mine = known.get(paths[i].key)
                if mine is not None and (mine.ino, mine.size, mine.mtime_ns) == (inos[i], sizes[i], mtimes[i]):
                    rows[i], firsts[i], lasts[i] = mine.rows, mine.first_us, mine.last_us
                else:
                    unknown.append(i)
            stale_idx = unknown
        self.footers_read = len(stale_idx)
        if stale_idx:
            # pyarrow reads a footer without the GIL: four threads locally, and on S3 a GET each, sixteen at a time
            footers = self.root.store.each(_safe_footer, [paths[i] for i in stale_idx], local_threads=4)
            for i, footer in zip(stale_idx, footers, strict=False):
                rows[i], firsts[i], lasts[i] = footer
        listed = current.with_columns(
            pl.Series("rows", rows, pl.Int64), pl.Series("first_us", firsts, pl.Int64), pl.Series("last_us", lasts, pl.Int64),
            pl.lit(False).alias("gone"), pl.Series("path", [str(p) for p in paths], pl.String),
        ).filter(pl.col("rows").is_not_null())
        # the cache entries this call is the authority for: the whole store, or one symbol's partitions
        scope = pl.lit(True) if whole_store else pl.col("dataset").is_in(list(datasets))
        if symbols is not None:
            scope = scope & pl.col("symbol").is_in(list(symbols))
        present = [d for d in datasets if layout.dataset_dir(self.root, d).is_dir()]
        vanished = (
            cache.filter(scope & pl.col("dataset").is_in(present))
            .join(listed.select(KEY), on=KEY, how="anti")
            .with_columns(pl.lit(True).alias("gone"))
        )
        kept = cache.filter(~scope)
        updated = pl.concat([kept, listed.select(list(_SCHEMA)), vanished]).sort(KEY)
        if persist and (stale_idx or not updated.equals(cache)):
            self.save(updated)
        self.unreadable = listed.filter(pl.col("rows") == UNREADABLE).select(*KEY, "path")
        self.gone = vanished.select(KEY)
        return listed.filter(pl.col("rows") >= 0).drop("gone", "path")

    def record_written(self, known: Mapping[str, WrittenFooter]) -> int:
        """Lay what a run wrote (by store key) over the cache, without listing or reading anything: for a run whose
        plan brought the cache up to date for its symbols (:meth:`partitions`), only these files changed since.
        Returns how many entries were recorded."""
        keys: dict[str, list[Any]] = {k: [] for k in (*KEY, "ino", "size", "mtime_ns", "blocks", "rows", "first_us", "last_us")}
        for key_text, footer in known.items():
            path = self.root.at(key_text)
            key = layout.parse_partition_path(path)
            if key is None:
                continue
            for name, value in zip(keys, (path.parent.parent.parent.parent.name, *key, footer.ino, footer.size,
                                          footer.mtime_ns, footer.disk_bytes, footer.rows, footer.first_us,
                                          footer.last_us), strict=True):
                keys[name].append(value)
        written = pl.DataFrame(keys, schema={k: _SCHEMA[k] for k in keys}).with_columns(pl.lit(False).alias("gone"))
        if written.is_empty():
            return 0
        cache = self.load()
        self.save(pl.concat([cache.join(written.select(KEY), on=KEY, how="anti"), written.select(list(_SCHEMA))]).sort(KEY))
        return written.height

    def forget_gone(self, dataset: str, keys: Sequence[tuple[str, int, int]]) -> None:
        """Stop reporting these vanished partitions (they were repaired, or are known to hold nothing)."""
        cache = self.load()
        drop = pl.DataFrame({"dataset": [dataset] * len(keys), "symbol": [k[0] for k in keys],
                             "year": [k[1] for k in keys], "month": [k[2] for k in keys]},
                            schema={k: _SCHEMA[k] for k in KEY})
        self.save(cache.join(drop.with_columns(pl.lit(True).alias("gone")), on=[*KEY, "gone"], how="anti"))


def _safe_footer(path: StorePath) -> tuple[int | None, int | None, int | None]:
    try:
        return _read_footer(path)
    except FileNotFoundError:
        return None, None, None  # replaced or removed since the listing: left out of this answer
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not fatal to the whole status
        log.warning("damaged partition %s (%s): run dataengine verify --repair", path, " ".join(str(exc).split())[:200])
        return UNREADABLE, None, None


def refresh_cache(
    root: StorePath, dataset: str, symbols: Sequence[str], known: Mapping[str, WrittenFooter] | None = None,
    *, indexed: bool = False,
) -> int:
    """Bring the footer cache up to date for the partitions of ``symbols`` in ``dataset`` (what a run just
    wrote), so the next ``status`` reads no footer; ``known``: what the run wrote (no file is read for those).
    ``indexed``: the run's plan brought the cache up to date for these symbols, so only what it wrote changed:
    that is laid over the cache without listing the symbols' partitions again (a daily backfill's 6,000 files).
    Returns how many footers were read."""
    if not (root / dataset).is_dir():
        return 0
    cache = FooterCache(root)
    if indexed and known is not None:
        cache.record_written(known)
        return 0
    cache.partitions([dataset], list(symbols), known=known)
    return cache.footers_read


def first_damaged(paths: Sequence[StorePath]) -> tuple[StorePath, str] | None:
    """The first of ``paths`` whose Parquet footer cannot be read, with the reason (a read failed: which file?)."""
    for path in paths:
        try:
            path.store.parquet_metadata(path.key)
        except Exception as exc:  # noqa: BLE001 - any failure to read the footer is the answer
            return path, str(exc)
    return None
