"""Reading a store: Polars frames (:mod:`.bars`), SQL through DuckDB views (:mod:`.views`, :mod:`.sql`), the
store a read happens in (:mod:`.root`). Nothing here writes to the store."""

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
