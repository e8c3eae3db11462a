"""Where a read happens: a location resolved into the root of an existing store, once, and a dataset in it.

Every reader (:mod:`.bars`, :mod:`.views`) asks here; nothing here reads a bar.
"""

from __future__ import annotations

from pathlib import Path

from dataengine.config import Settings
from dataengine.datasets import DatasetKey
from dataengine.errors import UsageError
from dataengine.read.pins import latest_version
from dataengine.storage import layout
from dataengine.storage.store import StorePath, open_store
from dataengine.storage.store_root import check_readable_root


def dataset_path(key: DatasetKey, storage_dir: str | StorePath | None = None) -> StorePath:
    """The directory of one dataset; :class:`UsageError` naming the datasets present if it does not exist."""
    root = store_root(storage_dir)
    path = layout.dataset_dir(root, key)
    if not path.is_dir():
        present = ", ".join(n[len(layout.DATASET_PREFIX) :] for n in layout.dataset_names(root)) or "none"
        raise UsageError(
            f"no {key.timeframe.label} bars with adjustment {key.adjustment!r} in {root} (datasets present: {present})"
        )
    return path


def current_version(
    timeframe: str = "minute", adjustment: str = "raw", storage_dir: str | Path | StorePath | None = None,
) -> int | None:
    """The number a backtest records: the latest version of the dataset ``read_bars(timeframe=...,
    adjustment=...)`` reads (bars adjusted at read time follow the raw dataset's); None before the first."""
    root = store_root(storage_dir)
    return latest_version(root, DatasetKey.of(timeframe, adjustment))


def store_root(storage_dir: str | Path | StorePath | None = None) -> StorePath:
    """The store's root (from settings when not given): the one place a reader resolves a location into a
    store; :class:`UsageError` if there is no store there."""
    if storage_dir is None:
        storage_dir = Settings.load().storage_dir
    return check_readable_root(open_store(storage_dir))
