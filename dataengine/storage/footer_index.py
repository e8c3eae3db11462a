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
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from dataengine.config import storage_path
from dataengine.storage import layout
from dataengine.storage.atomic import write_atomic
from dataengine.storage.layout import CACHE_FILE, DATA_FILE
from dataengine.storage.s3 import S3Path
from dataengine.storage.store_path import StorePath, each_file, is_s3, parquet_metadata

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
def _walk(root: Path, datasets: Sequence[str], symbols: Sequence[str] | None = None) -> tuple[dict[str, list[Any]], list[str]]:
    """Every ``data.parquet`` of the given datasets (of the given symbols only, if any) and its stat, as
    columns plus the paths; no footer is read. Written for speed: 54,000 partitions take ~0.3 s."""
    cols: dict[str, list[Any]] = {k: [] for k in ("dataset", "symbol", "year", "month", "ino", "size", "mtime_ns", "blocks")}
    paths: list[str] = []
    sep, stat, listdir = os.sep, os.stat, os.listdir
    has_blocks = hasattr(os.stat_result, "st_blocks")
    for dataset in datasets:
        base = str(root) + sep + dataset
        try:
            symbol_dirs = (
                [layout.symbol_dirname(s) for s in symbols]
                if symbols is not None
                else [n for n in listdir(base) if layout.parse_symbol_dirname(n) is not None]
            )
        except OSError:
            continue
        for sdir in symbol_dirs:
            spath = base + sep + sdir
            symbol = layout.parse_symbol_dirname(sdir)
            try:
                years = listdir(spath)
            except OSError:
                continue
            for ydir in years:
                ypath = spath + sep + ydir
                year = layout.parse_year_dirname(ydir)
                try:
                    months = listdir(ypath) if year is not None else []
                except OSError:
                    continue
                for mdir in months:
                    month = layout.parse_month_dirname(mdir)
                    path = ypath + sep + mdir + sep + DATA_FILE
                    if month is None:
                        continue
                    try:
                        st = stat(path)
                    except OSError:
                        continue
                    cols["dataset"].append(dataset)
                    cols["symbol"].append(symbol)
                    cols["year"].append(year)
                    cols["month"].append(month)
                    cols["ino"].append(st.st_ino)
                    cols["size"].append(st.st_size)
                    cols["mtime_ns"].append(st.st_mtime_ns)
                    cols["blocks"].append(st.st_blocks * 512 if has_blocks else st.st_size)
                    paths.append(path)
    return cols, paths


# A listing of S3 objects: path -> (ino, size, mtime_ns), the identity the cache compares.
Listing = dict[str, tuple[int, int, int]]


def _walk_s3(
    root: S3Path, datasets: Sequence[str], symbols: Sequence[str] | None,
    listings: dict[str, Listing] | None = None, known: Mapping[str, WrittenFooter] | None = None,
) -> tuple[dict[str, list[Any]], list[str]]:
    """:func:`_walk` on S3: one LIST per 1,000 objects of each dataset, or of each symbol when symbols are
    given (a nightly run lists what it wrote, never the whole store), sixteen LISTs at a time. ``ino`` is
    derived from the ETag.

    ``listings``: the listings a run made before (its plan's check), kept by prefix. A prefix listed there is
    not listed again: what the run wrote since (``known``, from its PUT answers) is laid over it. Valid only
    under the run lock, where nobody else writes; a nightly update then costs one LIST per symbol, not two."""
    cols: dict[str, list[Any]] = {k: [] for k in ("dataset", "symbol", "year", "month", "ino", "size", "mtime_ns", "blocks")}
    paths: list[str] = []
    for dataset in datasets:
        base = root / dataset
        prefixes = [base / layout.symbol_dirname(s) for s in symbols] if symbols is not None else [base]
        for listing in each_file(root, lambda prefix: _listing(prefix, listings, known), prefixes):
            for path, (ino, size, mtime_ns) in sorted(listing.items()):
                obj = S3Path.from_url(path)
                key = layout.parse_partition_path(obj)
                if key is None or obj.parent.parent.parent.parent != base:
                    continue
                for name, value in zip(("dataset", "symbol", "year", "month", "ino", "size", "mtime_ns", "blocks"),
                                       (dataset, *key, ino, size, mtime_ns, size), strict=True):
                    cols[name].append(value)
                paths.append(path)
    return cols, paths


def _listing(prefix: S3Path, listings: dict[str, Listing] | None, known: Mapping[str, WrittenFooter] | None) -> Listing:
    remembered = listings.get(str(prefix)) if listings is not None else None
    if remembered is not None and known is not None:
        inside = str(prefix) + "/"
        return remembered | {p: (w.ino, w.size, w.mtime_ns) for p, w in known.items() if p.startswith(inside)}
    listing = {str(obj): (st.st_ino, st.st_size, st.st_mtime_ns) for obj, st in prefix.iter_objects()}
    if listings is not None:
        listings[str(prefix)] = listing
    return listing


def _to_us(value: Any) -> int | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int((value - EPOCH) // timedelta(microseconds=1))
    return None


def _read_footer(path: str) -> tuple[int, int | None, int | None]:
    """(rows, first timestamp in µs, last timestamp in µs) from one file's footer."""
    meta = parquet_metadata(path)
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


@dataclass(frozen=True)
class WrittenFooter:
    """What a writer knows of a file it just wrote: its footer's facts and its stat right after the rename."""

    rows: int
    first_us: int | None
    last_us: int | None
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: StorePath, rows: int, first_us: int | None, last_us: int | None) -> WrittenFooter:
        st = path.written_stat() if is_s3(path) else os.stat(path)
        return cls(rows, first_us, last_us, st.st_ino, st.st_size, st.st_mtime_ns)


class FooterCache:
    """Footers of a store's partitions, cached under ``metadata/`` and refreshed from the files' stat."""

    def __init__(self, root: StorePath, *, threads: int = 4, listings: dict[str, Listing] | None = None) -> None:
        self.root = root
        self.listings = listings  # S3: listings to keep and reuse within one locked run (see _walk_s3)
        self.path = layout.metadata_dir(root) / CACHE_FILE
        self.threads = max(threads, 16) if is_s3(root) else threads  # on S3 a footer is a GET: a round trip
        self.footers_read = 0  # how many footers the last :meth:`partitions` call had to read
        self.unreadable = pl.DataFrame(schema={**{k: _SCHEMA[k] for k in KEY}, "path": pl.String})
        self.gone = pl.DataFrame(schema={k: _SCHEMA[k] for k in KEY})

    def load(self) -> pl.DataFrame:
        try:
            frame = pl.read_ipc(io.BytesIO(self.path.read_bytes()) if is_s3(self.path) else self.path)
            if dict(frame.schema) == _SCHEMA:
                return frame
        except (OSError, pl.exceptions.PolarsError):
            pass
        return pl.DataFrame(schema=_SCHEMA)

    def save(self, frame: pl.DataFrame) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, lambda tmp: frame.write_ipc(tmp, compression="uncompressed"))
        except OSError as exc:  # a read-only store still answers, only slower next time
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
        if is_s3(self.root):
            columns, paths = _walk_s3(self.root, datasets, symbols, self.listings, known)
        else:
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
                mine = known.get(paths[i])
                if mine is not None and (mine.ino, mine.size, mine.mtime_ns) == (inos[i], sizes[i], mtimes[i]):
                    rows[i], firsts[i], lasts[i] = mine.rows, mine.first_us, mine.last_us
                else:
                    unknown.append(i)
            stale_idx = unknown
        self.footers_read = len(stale_idx)
        if stale_idx:
            with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="footer") as pool:
                footers = list(pool.map(_safe_footer, [paths[i] for i in stale_idx], chunksize=256))
            for i, footer in zip(stale_idx, footers, strict=False):
                rows[i], firsts[i], lasts[i] = footer
        listed = current.with_columns(
            pl.Series("rows", rows, pl.Int64), pl.Series("first_us", firsts, pl.Int64), pl.Series("last_us", lasts, pl.Int64),
            pl.lit(False).alias("gone"), pl.Series("path", paths, pl.String),
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

    def forget_gone(self, dataset: str, keys: Sequence[tuple[str, int, int]]) -> None:
        """Stop reporting these vanished partitions (they were repaired, or are known to hold nothing)."""
        cache = self.load()
        drop = pl.DataFrame({"dataset": [dataset] * len(keys), "symbol": [k[0] for k in keys],
                             "year": [k[1] for k in keys], "month": [k[2] for k in keys]},
                            schema={k: _SCHEMA[k] for k in KEY})
        self.save(cache.join(drop.with_columns(pl.lit(True).alias("gone")), on=[*KEY, "gone"], how="anti"))


def _safe_footer(path: str) -> tuple[int | None, int | None, int | None]:
    try:
        return _read_footer(path)
    except FileNotFoundError:
        return None, None, None  # replaced or removed since the listing: left out of this answer
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not fatal to the whole status
        log.warning("damaged partition %s (%s): run dataengine verify --repair", path, " ".join(str(exc).split())[:200])
        return UNREADABLE, None, None


def refresh_cache(
    root: str | StorePath, dataset: str, symbols: Sequence[str], known: Mapping[str, WrittenFooter] | None = None,
    listings: dict[str, Listing] | None = None,
) -> int:
    """Bring the footer cache up to date for the partitions of ``symbols`` in ``dataset`` (what a run just
    wrote), so the next ``status`` reads no footer; ``known``: what the run wrote (no file is read for those);
    ``listings``: what the run listed before writing (S3: not listed again). Returns how many footers were read."""
    root = storage_path(root)
    if not (root / dataset).is_dir():
        return 0
    cache = FooterCache(root, listings=listings)
    cache.partitions([dataset], list(symbols), known=known)
    return cache.footers_read
