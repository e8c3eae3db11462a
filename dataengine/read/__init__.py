"""Reading a store: Polars frames (:mod:`.bars`), SQL through DuckDB views (:mod:`.views`, :mod:`.sql`), the
store a read happens in (:mod:`.root`). Nothing here writes to the store.

The names below are imported when first used: ``status`` and ``versions`` need only :mod:`.pins`, and importing
the package must not bring DuckDB and pyarrow with it (~0.2 s of a 1 s command).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataengine.lazy_names import lazy_getattr

_LAZY = {
    "adjust": "dataengine.read.bars",
    "partition_paths": "dataengine.read.bars",
    "read_bars": "dataengine.read.bars",
    "scan_bars": "dataengine.read.bars",
    "datasets_holding": "dataengine.read.quick",
    "latest_bars": "dataengine.read.quick",
    "current_version": "dataengine.read.root",
    "dataset_path": "dataengine.read.root",
    "store_root": "dataengine.read.root",
    "check_read_only": "dataengine.read.sql",
    "connect": "dataengine.read.sql",
    "error_message": "dataengine.read.sql",
    "query": "dataengine.read.sql",
}

if TYPE_CHECKING:
    from dataengine.read.bars import adjust, partition_paths, read_bars, scan_bars
    from dataengine.read.quick import datasets_holding, latest_bars
    from dataengine.read.root import current_version, dataset_path, store_root
    from dataengine.read.sql import check_read_only, connect, error_message, query

__all__ = [
    "adjust",
    "check_read_only",
    "connect",
    "current_version",
    "dataset_path",
    "datasets_holding",
    "error_message",
    "latest_bars",
    "partition_paths",
    "query",
    "read_bars",
    "scan_bars",
    "store_root",
]


__getattr__ = lazy_getattr("dataengine.read", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
