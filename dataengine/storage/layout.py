"""The on-disk format of a store, in one place: every path under a root is named here, and every other module
asks here.

::

    {root}/[{source}_]equities_{label}[_{adjustment}]/symbol={S}/year={YYYY}/month={MM}/data.parquet
                                                 (no source prefix: Alpaca's; massive_, sample_ ...)
    {root}/corporate_actions/actions.parquet    every corporate action of the stored symbols, once per id
    {root}/corporate_actions/closes.parquet     the raw close before each cash dividend
    {root}/corporate_actions/fetched.json       which symbols' actions were asked for, from when
    {root}/metadata/store.json                  the store's marker (format version)
    {root}/metadata/datasets/{dataset}.json     which feed a dataset holds (before: equities_.../_dataset.json)
    {root}/metadata/coverage/{dataset}.jsonl    what each dataset holds completely (incremental runs)
    {root}/metadata/adjusted/{dataset}.json     per symbol, the actions an adjusted dataset was fetched under
    {root}/metadata/runs.jsonl                  the run ledger
    {root}/metadata/run.lock                    one writer per store (and indices.lock for index writes)
    {root}/metadata/indices/{name}.csv          index membership
    {root}/metadata/status-cache.arrow          Parquet footers, cached for ``status``
    {root}/metadata/versions/{dataset}/         each run a version: a Delta Lake table (storage/versions)
    {root}/metadata/quarantine/{time}/...       damaged files set aside by ``verify --repair``
    {root}/metadata/torn/                       torn log tails cut off after a crash
    {root}/metadata/staging/                    temp files of writes in progress (local stores)

On S3 (:mod:`dataengine.storage.s3_store`) the same names hold, except what needs appends: the coverage
ledgers and the run ledger are one object per commit under ``metadata/coverage/{dataset}/`` and
``metadata/runs/`` (:mod:`dataengine.storage.commit_log`), and the lock is an object with a lease
(:mod:`.lease_lock`).

Partitions are New York calendar months (an after-hours bar at 01:00Z on Feb 1 belongs to January), the month
directory is zero-padded, and the key columns live in the path only, not in the files. The bar schema here is
the stored one and the decoded one alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl

from dataengine.datasets import EQUITIES, DatasetKey, dataset_prefixes, split_dataset_name
from dataengine.storage.store import StorePath
from dataengine.timerange import NEW_YORK, next_month, ny_month_start

DATASET_PREFIX = EQUITIES  # Alpaca's datasets; other sources' are ``{source}_equities_...`` (dataset_prefixes)
DATA_FILE = "data.parquet"
DATASET_FILE = "_dataset.json"
METADATA_DIR = "metadata"
CACHE_FILE = "status-cache.arrow"
STORE_FILE = "store.json"
LOCK_FILE = "run.lock"
INDICES_LOCK_FILE = "indices.lock"
LEDGER_FILE = "runs.jsonl"
ACTIONS_DIR = "corporate_actions"
ACTIONS_FILE = "actions.parquet"
CLOSES_FILE = "closes.parquet"
FETCHED_FILE = "fetched.json"
QUARANTINE_DIR = "quarantine"
VERSIONS_DIR = "versions"

BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "trade_count": pl.Int64(),
    "vwap": pl.Float64(),
}
DATA_COLUMNS = [c for c in BAR_SCHEMA if c != "symbol"]  # what a partition file holds
PARTITION_KEYS = ("symbol", "year", "month")

_SYMBOL = "symbol="
_YEAR = "year="
_MONTH = "month="


@dataclass(frozen=True)
class Partition:
    """One stored partition file and its key."""

    symbol: str
    year: int
    month: int
    path: StorePath


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)


def with_partition_columns(bars: pl.DataFrame) -> pl.DataFrame:
    """Add ``year`` and ``month``: the bar's New York calendar month (an after-hours bar at 21:30 New York
    on Jan 31 is 02:30Z on Feb 1 and belongs to January)."""
    local = pl.col("timestamp").dt.convert_time_zone("America/New_York")
    return bars.with_columns(year=local.dt.year(), month=local.dt.month())


PartitionKey = tuple[str, int, int]  # (symbol, year, month)


def split_partitions(bars: pl.DataFrame) -> list[tuple[PartitionKey, pl.DataFrame]]:
    """``bars`` (stored schema with ``symbol``) cut into its partitions, in the order they come, without the
    ``symbol`` column: zero-copy slices found by a binary search of each symbol's New York month starts, so a
    page costs a few searches, not a time-zone conversion per bar. Bars not sorted by symbol, then time (no
    source sends them so, but a frame given to ``store`` may be anything) take the per-bar way instead."""
    if bars.is_empty():
        return []
    import numpy as np  # only where bars are written: read-only commands start without it

    runs = bars.get_column("symbol").rle()
    lengths = runs.struct.field("len").to_list()
    symbols = runs.struct.field("value").to_list()
    stamps = bars.get_column("timestamp").dt.epoch("us").to_numpy()
    if len(set(symbols)) != len(symbols) or not _sorted_runs(stamps, lengths):
        return _split_per_bar(bars)
    data = bars.drop("symbol")
    out: list[tuple[PartitionKey, pl.DataFrame]] = []
    offset = 0
    for symbol, length in zip(symbols, lengths, strict=True):
        run = stamps[offset : offset + length]
        year, month = _ny_month(int(run[0]))
        last = _ny_month(int(run[-1]))
        start = 0
        while (year, month) < last:
            following = next_month(year, month)
            stop = int(np.searchsorted(run, _epoch_us(ny_month_start(*following)), side="left"))
            if stop > start:
                out.append(((symbol, year, month), data.slice(offset + start, stop - start)))
            start, (year, month) = stop, following
        out.append(((symbol, year, month), data.slice(offset + start, length - start)))
        offset += length
    return out


def _sorted_runs(stamps: Any, lengths: list[int]) -> bool:
    """Each symbol's timestamps are non-decreasing (the whole array is not: symbols restart the clock)."""
    offset = 0
    for length in lengths:
        run = stamps[offset : offset + length]
        if run.size > 1 and bool((run[1:] < run[:-1]).any()):
            return False
        offset += length
    return True


def _split_per_bar(bars: pl.DataFrame) -> list[tuple[PartitionKey, pl.DataFrame]]:
    keyed = with_partition_columns(bars)
    parts = keyed.partition_by(["symbol", "year", "month"], as_dict=True, include_key=False, maintain_order=True)
    return [((str(s), int(y), int(m)), part) for (s, y, m), part in parts.items()]


def _ny_month(epoch_us: int) -> tuple[int, int]:
    local = (_EPOCH + timedelta(microseconds=epoch_us)).astimezone(NEW_YORK)
    return local.year, local.month


def _epoch_us(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- names ----------------------------------------------------------------------------------------------


def dataset_dir(root: StorePath, key: DatasetKey | str) -> StorePath:
    return root / (key if isinstance(key, str) else key.dirname)


def symbol_dirname(symbol: str) -> str:
    return f"{_SYMBOL}{symbol}"


def year_dirname(year: int) -> str:
    return f"{_YEAR}{year:04d}"


def month_dirname(month: int) -> str:
    return f"{_MONTH}{month:02d}"


def partition_path(root: StorePath, key: DatasetKey | str, symbol: str, year: int, month: int) -> StorePath:
    return dataset_dir(root, key) / symbol_dirname(symbol) / year_dirname(year) / month_dirname(month) / DATA_FILE


def partition_relpath(dataset: str, symbol: str, year: int, month: int) -> str:
    """``equities_1min/symbol=AAPL/year=2024/month=01``: a partition named relative to the store root."""
    return "/".join((dataset, symbol_dirname(symbol), year_dirname(year), month_dirname(month)))


def parse_symbol_dirname(name: str) -> str | None:
    return name[len(_SYMBOL) :] if name.startswith(_SYMBOL) and len(name) > len(_SYMBOL) else None


def parse_year_dirname(name: str) -> int | None:
    return _int_after(name, _YEAR)


def parse_month_dirname(name: str) -> int | None:
    month = _int_after(name, _MONTH)
    return month if month is not None and 1 <= month <= 12 else None


def parse_partition_path(path: StorePath) -> tuple[str, int, int] | None:
    """(symbol, year, month) of a ``.../symbol=S/year=Y/month=M/data.parquet`` path, or None if it is not one."""
    return parse_partition_key(path.key)


def parse_partition_key(key: str) -> tuple[str, int, int] | None:
    """:func:`parse_partition_path` of a key: one split of the string, no path object per level (a status
    of 500 symbols x a year parses 6,000 of them)."""
    parts = key.rsplit("/", 4)
    if len(parts) < 4 or parts[-1] != DATA_FILE:
        return None
    symbol = parse_symbol_dirname(parts[-4])
    year = parse_year_dirname(parts[-3])
    month = parse_month_dirname(parts[-2])
    if symbol is None or year is None or month is None:
        return None
    return symbol, year, month


def coverage_path(root: StorePath, key: DatasetKey | str) -> StorePath:
    """A dataset's coverage ledger (on S3 the prefix of its commits, without ``.jsonl``)."""
    name = key if isinstance(key, str) else key.dirname
    return metadata_dir(root) / "coverage" / f"{name}.jsonl"


def metadata_dir(root: StorePath) -> StorePath:
    return root.root / METADATA_DIR


def store_marker(root: StorePath) -> StorePath:
    return metadata_dir(root) / STORE_FILE


def lock_path(root: StorePath, name: str = LOCK_FILE) -> StorePath:
    return metadata_dir(root) / name


def ledger_path(root: StorePath) -> StorePath:
    """The run ledger (on S3 its records are objects under ``metadata/runs/``)."""
    return metadata_dir(root) / LEDGER_FILE


def indices_dir(root: StorePath) -> StorePath:
    return metadata_dir(root) / "indices"


def status_cache_path(root: StorePath) -> StorePath:
    return metadata_dir(root) / CACHE_FILE


def adjusted_record_path(root: StorePath, dataset: str) -> StorePath:
    """Per symbol, the actions an adjusted dataset's bars were fetched under."""
    return metadata_dir(root) / "adjusted" / f"{dataset}.json"


def versions_dir(root: StorePath, dataset: str | None = None) -> StorePath:
    """Where the datasets' version tables live (Delta Lake, one per dataset: ``metadata/versions/{dataset}``),
    outside every dataset directory so a directory reader never counts a kept version's rows."""
    base = metadata_dir(root) / VERSIONS_DIR
    return base / dataset if dataset is not None else base


def kept_actions_dir(root: StorePath) -> StorePath:
    """Immutable copies of the corporate-actions files, one per content, that versions name."""
    return versions_dir(root) / "_corporate_actions"


def quarantine_dir(root: StorePath, stamp: str) -> StorePath:
    """Where ``verify --repair`` sets damaged files aside (never deleted), one directory per repair."""
    return metadata_dir(root) / QUARANTINE_DIR / stamp


def actions_path(root: StorePath) -> StorePath:
    return root.root / ACTIONS_DIR / ACTIONS_FILE


def closes_path(root: StorePath) -> StorePath:
    return root.root / ACTIONS_DIR / CLOSES_FILE


def fetched_actions_path(root: StorePath) -> StorePath:
    return root.root / ACTIONS_DIR / FETCHED_FILE


def dataset_record_path(root: StorePath, key: DatasetKey | str) -> StorePath:
    """Where a dataset's record (feed, asof, ...) lives: in ``metadata/``, so that a dataset directory holds
    nothing but partitions and every engine reads it as a directory with no glue (Polars refused a directory
    with a ``.json`` among the ``.parquet`` files)."""
    name = key if isinstance(key, str) else key.dirname
    return metadata_dir(root) / "datasets" / f"{name}.json"


def legacy_dataset_record_path(root: StorePath, key: DatasetKey | str) -> StorePath:
    """Where stores written by earlier versions keep the record: ``_dataset.json`` inside the dataset directory. It is
    read when the new place has none, and moved by the next run that writes to the dataset."""
    return dataset_dir(root, key) / DATASET_FILE


def read_dataset_record(root: StorePath, key: DatasetKey | str) -> StorePath | None:
    """The existing record file of a dataset (the new place first), or None."""
    for path in (dataset_record_path(root, key), legacy_dataset_record_path(root, key)):
        if path.is_file():
            return path
    return None


def describe_dataset(name: str) -> dict[str, str]:
    """``massive_equities_1min_split_spinoff`` -> source ``massive``, label ``1min``, adjustment
    ``split,spin-off`` (from the name alone)."""
    source, label, adjustment = split_dataset_name(name)
    return {"label": label, "adjustment": adjustment, "source": source}


def view_name(dataset: str) -> str:
    """A dataset's SQL view: ``equities_1min`` -> ``bars_1min``, ``massive_equities_1day`` -> ``massive_bars_1day``."""
    for prefix in sorted(dataset_prefixes(), key=len, reverse=True):
        if dataset.startswith(prefix):
            return prefix[: -len(DATASET_PREFIX)] + "bars_" + dataset[len(prefix) :]
    return "bars_" + dataset


def temp_file_places(root: StorePath, *, partitions: bool = True) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every directory (as a key) where earlier versions wrote temp files beside their targets, with the
    names written there: the top of each dataset directory, every directory under ``metadata/`` and
    (``partitions``) every partition directory. Lazy: a store whose writes leave no temp file never asks."""
    for name in dataset_names(root):
        dataset = root / name
        yield dataset.key, (DATASET_FILE,)
        if partitions:  # any file at partition depth: a first write left its temp file in an empty month
            parts = {p.parent.key for p, _ in dataset.walk() if p.parent.parent.parent.parent == dataset}
            for part in sorted(parts):
                yield part, (DATA_FILE,)
    meta = metadata_dir(root)
    tables = versions_dir(root)  # version tables: their own temp names, and a directory per partition: not walked
    kept = {meta.key}
    for name in meta.subdirs():
        if meta / name != tables:
            kept |= {path.parent.key for path, _ in (meta / name).walk()}
    for directory in sorted(kept):
        yield directory, _METADATA_FILES


# what dataengine writes under metadata/ (a leading * matches any name with that ending)
_METADATA_FILES = ("*.jsonl", "*.csv", "*.json", CACHE_FILE, "*.parquet")


# -- listing --------------------------------------------------------------------------------------------


def dataset_names(root: StorePath, source: str | None = None) -> list[str]:
    """Dataset directories under ``root`` (``equities_*``, ``massive_equities_*``, ...; of ``source`` only
    when given), sorted."""
    prefixes = dataset_prefixes()
    names = sorted(n for n in root.root.subdirs() if n.startswith(prefixes))
    return names if source is None else [n for n in names if split_dataset_name(n)[0] == source]


def symbols_in(directory: StorePath) -> list[str]:
    """Symbols with a directory in one dataset directory, sorted."""
    return sorted(s for s in (parse_symbol_dirname(n) for n in directory.subdirs()) if s is not None)


def iter_partitions(directory: StorePath, symbol: str | None = None) -> Iterator[Partition]:
    """Every stored partition of one dataset directory (of one symbol, if given), sorted by key.

    Lists directories level by level (never a glob: a symbol is data, not a pattern) and skips anything that is
    not ours (stray folders, temp files)."""
    symbols = [symbol] if symbol is not None else symbols_in(directory)
    for sym in symbols:
        yield from _symbol_partitions(directory / symbol_dirname(sym), sym)


def _symbol_partitions(symbol_dir: StorePath, symbol: str) -> Iterator[Partition]:
    """One walk of the symbol's directory (on S3 one LIST for all its months, not one per year)."""
    found: list[Partition] = []
    for path, _ in symbol_dir.walk():
        key = parse_partition_path(path)
        if key is not None and key[0] == symbol and path.parent.parent.parent == symbol_dir:
            found.append(Partition(symbol, key[1], key[2], path))
    yield from sorted(found, key=lambda p: (p.year, p.month))


def _int_after(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix) :]
    return int(digits) if digits.isdigit() else None
