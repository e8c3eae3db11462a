"""Where a read happens: a location resolved into the root of an existing store, once, and a dataset in it.

Every reader (:mod:`.bars`, :mod:`.views`) asks here; nothing here reads a bar.
"""

from __future__ import annotations

from pathlib import Path

from dataengine.config import Settings
from dataengine.datasets import DatasetKey, parse_source
from dataengine.errors import UsageError
from dataengine.read.pins import latest_version, versioned_key
from dataengine.storage import layout
from dataengine.storage.store import StorePath, open_store
from dataengine.storage.store_root import check_readable_root


def dataset_path(key: DatasetKey, storage_dir: str | StorePath | None = None) -> StorePath:
    """The directory of one dataset; :class:`UsageError` naming the datasets present if it does not exist."""
    root = store_root(storage_dir)
    path = layout.dataset_dir(root, key)
    if not path.is_dir():
        prefix = key.dirname[: key.dirname.index(layout.DATASET_PREFIX) + len(layout.DATASET_PREFIX)]
        mine = [n[len(prefix) :] for n in layout.dataset_names(root, key.source)]  # this source's, by size
        others = [n for n in layout.dataset_names(root) if layout.describe_dataset(n)["source"] != key.source]
        present = ", ".join(mine + others) or "none"
        whose = "" if key.source == "alpaca" else f"{key.source} "
        raise UsageError(
            f"no {whose}{key.timeframe.label} bars with adjustment {key.adjustment!r} in {root} (datasets present: {present})"
        )
    return path


def source_of(source: str | None) -> str:
    """The source a read names, else the ``source`` setting (Alpaca unless set)."""
    return parse_source(source) if source is not None else Settings.load().source


def current_version(
    timeframe: str = "minute", adjustment: str = "raw", storage_dir: str | Path | StorePath | None = None, *,
    source: str | None = None,
) -> int | None:
    """The number a backtest records: the latest version of the dataset ``read_bars(timeframe=...,
    adjustment=..., source=...)`` reads (bars adjusted at read time follow the raw dataset's); None for a dataset
    that has no version yet. :class:`UsageError` naming the datasets present, as ``read_bars`` raises, when the
    store holds no such dataset."""
    root = store_root(storage_dir)
    key = DatasetKey.of(timeframe, adjustment, source_of(source))
    number = latest_version(root, key)
    if number is None and not layout.dataset_dir(root, versioned_key(key, root)).is_dir():
        dataset_path(key, root)  # raises, naming the datasets there are
    return number


def store_root(storage_dir: str | Path | StorePath | None = None) -> StorePath:
    """The store's root (from settings when not given): the one place a reader resolves a location into a
    store; :class:`UsageError` if there is no store there."""
    if storage_dir is None:
        storage_dir = Settings.load().location
    return check_readable_root(open_store(storage_dir))
