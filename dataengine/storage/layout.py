"""The on-disk format of a store, in one place: every other module asks here.

::

    {root}/equities_{label}[_{adjustment}]/symbol={S}/year={YYYY}/month={MM}/data.parquet
    {root}/metadata/datasets/{dataset}.json     which feed a dataset holds (before: equities_.../_dataset.json)
    {root}/metadata/coverage/{dataset}.jsonl    what each dataset holds completely (incremental runs)
    {root}/metadata/runs.jsonl                  the run ledger
    {root}/metadata/run.lock                    one writer per store
    {root}/metadata/indices/{name}.csv          index membership
    {root}/metadata/status-cache.arrow          Parquet footers, cached for ``status``

On S3 (:mod:`dataengine.storage.s3`) the same names hold, except what needs appends: the coverage ledgers and
the run ledger are one object per commit under ``metadata/coverage/{dataset}/`` and ``metadata/runs/``
(:mod:`dataengine.storage.commit_log`), and the lock is an object with a lease (:mod:`.lease_lock`).

Partitions are New York calendar months (an after-hours bar at 01:00Z on Feb 1 belongs to January), the month
directory is zero-padded, and the key columns live in the path only, not in the files. The bar schema here is
the stored one and the decoded one alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dataengine.datasets import DatasetKey, adjustment_from_suffix
from dataengine.storage.store_path import StorePath, is_s3, listdir, parquet_metadata

DATASET_PREFIX = "equities_"
DATA_FILE = "data.parquet"
DATASET_FILE = "_dataset.json"
METADATA_DIR = "metadata"
CACHE_FILE = "status-cache.arrow"

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
    if path.name != DATA_FILE:
        return None
    month_dir, year_dir, symbol_dir = path.parent, path.parent.parent, path.parent.parent.parent
    symbol = parse_symbol_dirname(symbol_dir.name)
    year = parse_year_dirname(year_dir.name)
    month = parse_month_dirname(month_dir.name)
    if symbol is None or year is None or month is None:
        return None
    return symbol, year, month


def coverage_path(root: StorePath, key: DatasetKey | str) -> StorePath:
    name = key if isinstance(key, str) else key.dirname
    return metadata_dir(root) / "coverage" / f"{name}.jsonl"


def metadata_dir(root: StorePath) -> StorePath:
    return root / METADATA_DIR


def staging_dir(root: StorePath, *, create: bool = False) -> StorePath:
    """Where every write of the store is staged before its file is renamed into place: on the store's file
    system (so the rename is atomic) and outside every dataset directory (so no reader ever lists it).
    ``create``: make it if missing (a user may delete ``metadata/`` between runs)."""
    path = root / METADATA_DIR / "staging"
    if create and not is_s3(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


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
    """``equities_1min_split_spinoff`` -> label ``1min``, adjustment ``split,spin-off`` (from the name alone)."""
    rest = name[len(DATASET_PREFIX) :] if name.startswith(DATASET_PREFIX) else name
    label, _, suffix = rest.partition("_")
    return {"label": label, "adjustment": adjustment_from_suffix(suffix)}


def temp_file_places(root: StorePath, *, partitions: bool = True) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """Every directory dataengine writes files into by temp-and-rename, with the names it writes there
    (``partitions``: also every partition directory, where older versions wrote their temp files). None on
    S3, where every write is one PUT and leaves no temp file."""
    if is_s3(root):
        return
    for name in dataset_names(root):
        directory = root / name
        yield directory, (DATASET_FILE,)
        if partitions:
            for part in iter_partition_dirs(directory):
                yield part, (DATA_FILE,)
    meta = root / METADATA_DIR
    if meta.is_dir():
        for dirpath, _dirs, _files in os.walk(meta):
            yield Path(dirpath), _METADATA_FILES


# what dataengine writes under metadata/ (a leading * matches any name with that ending)
_METADATA_FILES = ("*.jsonl", "*.csv", "*.json", CACHE_FILE, "*.parquet")


def is_our_target(target: str, patterns: tuple[str, ...]) -> bool:
    return any(target == p or (p.startswith("*") and target.endswith(p[1:]) and len(target) > len(p) - 1) for p in patterns)


def iter_partition_dirs(directory: Path) -> Iterator[Path]:
    """Every ``symbol=/year=/month=`` directory of one dataset directory (a file in it or not)."""
    for symbol in symbols_in(directory):
        symbol_dir = directory / symbol_dirname(symbol)
        for year_name in _listdir(symbol_dir):
            if parse_year_dirname(year_name) is None:
                continue
            for month_name in _listdir(symbol_dir / year_name):
                if parse_month_dirname(month_name) is not None:
                    yield symbol_dir / year_name / month_name


# -- listing --------------------------------------------------------------------------------------------


def dataset_names(root: StorePath) -> list[str]:
    """``equities_*`` directories under ``root``, sorted."""
    if is_s3(root):
        return sorted(n for n in root.subdirs() if n.startswith(DATASET_PREFIX))
    try:
        return sorted(e.name for e in os.scandir(root) if e.is_dir() and e.name.startswith(DATASET_PREFIX))
    except (FileNotFoundError, NotADirectoryError):
        return []


def symbols_in(directory: StorePath) -> list[str]:
    """Symbols with a directory in one dataset directory, sorted."""
    return sorted(s for s in (parse_symbol_dirname(n) for n in listdir(directory)) if s is not None)


def iter_partitions(directory: StorePath, symbol: str | None = None) -> Iterator[Partition]:
    """Every stored partition of one dataset directory (of one symbol, if given), sorted by key.

    Lists directories level by level (never a glob: a symbol is data, not a pattern) and skips anything that is
    not ours (stray folders, temp files)."""
    symbols = [symbol] if symbol is not None else symbols_in(directory)
    for sym in symbols:
        yield from _symbol_partitions(directory / symbol_dirname(sym), sym)


def _symbol_partitions(symbol_dir: StorePath, symbol: str) -> Iterator[Partition]:
    found: list[Partition] = []
    if is_s3(symbol_dir):  # one LIST for all of a symbol's months (not one per year directory)
        for obj, _ in symbol_dir.iter_objects():
            key = parse_partition_path(obj)
            if key is not None and key[0] == symbol and obj.parent.parent.parent == symbol_dir:
                found.append(Partition(symbol, key[1], key[2], obj))
        yield from sorted(found, key=lambda p: (p.year, p.month))
        return
    for year_name in _listdir(symbol_dir):
        year = parse_year_dirname(year_name)
        if year is None:
            continue
        for month_name in _listdir(symbol_dir / year_name):
            month = parse_month_dirname(month_name)
            path = symbol_dir / year_name / month_name / DATA_FILE
            if month is not None and path.is_file():
                found.append(Partition(symbol, year, month, path))
    yield from sorted(found, key=lambda p: (p.year, p.month))


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _int_after(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix):
        return None
    digits = name[len(prefix) :]
    return int(digits) if digits.isdigit() else None


def first_damaged(paths: Sequence[StorePath]) -> tuple[StorePath, str] | None:
    """The first of ``paths`` whose Parquet footer cannot be read, with the reason (a read failed: which file?)."""
    for path in paths:
        try:
            parquet_metadata(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read the footer is the answer
            return path, str(exc)
    return None
