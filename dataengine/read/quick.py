"""A quick look without SQL: a symbol's latest bars (``dataengine show``) and which datasets hold a symbol."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from dataengine.datasets import DatasetKey
from dataengine.errors import UsageError
from dataengine.loaders.symbol_loader import clean_symbols
from dataengine.read.bars import read_bars
from dataengine.read.pins import Pin, resolve, versioned_key
from dataengine.read.root import source_of, store_root
from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.timeframes import Timeframe


def latest_bars(
    symbol: str,
    last: int = 10,
    timeframe: str | Timeframe = "day",
    storage_dir: str | Path | StorePath | None = None,
    *,
    adjustment: str = "raw",
    source: str | None = None,
) -> pl.DataFrame:
    """The ``last`` most recent bars of one symbol from ``source`` (None: the ``source`` setting), oldest first
    (what ``dataengine show`` prints). Only the newest partitions are opened: their footers say how many bars
    each holds. A symbol the dataset holds no bar of is a :class:`UsageError` naming the datasets that do hold
    it."""
    if last < 1:
        raise UsageError(f"--last must be 1 or more, got {last}")
    (wanted,) = clean_symbols([symbol], source="symbol")
    key = DatasetKey.of(timeframe, adjustment, source_of(source))
    root = store_root(storage_dir)
    located = versioned_key(key, root)
    base = layout.dataset_dir(root, located)
    parts = _partitions(root, located, base, wanted)
    if not parts:
        holding = datasets_holding(wanted, root)
        whose = "" if key.source == "alpaca" else f" --source {key.source}"
        raise UsageError(f"no {key.timeframe.label} bars of {wanted} in {root}{' from ' + key.source if whose else ''} "
                         f"(datasets holding it: {', '.join(holding) or 'none'}; fetch with: dataengine ingest "
                         f"{wanted} -t {key.timeframe.name}{whose})")
    rows, first = 0, parts[-1]
    for part in reversed(parts):
        first = part
        try:
            rows += part.path.store.parquet_metadata(part.path.key).num_rows
        except Exception:  # noqa: BLE001 - a damaged file: read_bars below names it with the verify hint
            break
        if rows >= last:
            break
    start = date(first.year, first.month, 1)
    frame = read_bars(wanted, start, None, key.timeframe, root, adjustment=key.adjustment, missing="raise",
                      source=key.source)
    return frame.tail(last)


def datasets_holding(symbol: str, storage_dir: str | Path | StorePath | None = None) -> list[str]:
    """The datasets (``equities_1day``, ``massive_equities_1day``, ...) that hold bars of ``symbol``, in name order."""
    root = store_root(storage_dir)
    (wanted,) = clean_symbols([symbol], source="symbol")
    return [n for n in layout.dataset_names(root) if (layout.dataset_dir(root, n) / layout.symbol_dirname(wanted)).is_dir()]


def _partitions(root: StorePath, key: DatasetKey, base: StorePath, symbol: str) -> list[layout.Partition]:
    """The symbol's partitions that ``read_bars`` reads, oldest first: the latest version's (the directory may
    also hold a month a run is writing, or one a killed run wrote, that no version names yet: counting it,
    the read below started at a month it then had no bar of), else the directory's for a dataset without
    versions."""
    if not base.is_dir():
        return []
    snap = resolve(root, key, Pin())
    if snap is None:
        return list(layout.iter_partitions(base, symbol))
    return [layout.Partition(f.symbol, f.year, f.month, root.at(f.path)) for f in snap.files([symbol])]
