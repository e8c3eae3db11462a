"""dataengine: historical US stock bars from Alpaca or Massive into an exactly-once, Hive-partitioned Parquet store
(``--source sample``: synthetic bars, no key).

Public API (names from the product description)::

    from dataengine import IngestionPipeline, AlpacaClient, ParquetStorage, MetadataStore, SymbolLoader

Names are imported on first use (PEP 562): Polars, DuckDB and the HTTP stack take about half a second to
import, and ``dataengine --help`` or a command that needs none of them should not pay for them. alpaca-py is
never imported: Alpaca's API is spoken directly (``dataengine.sources.alpaca_client``); its ``TimeFrame`` objects
are accepted where a bar size is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataengine.errors import (
    AuthError,
    ConfigError,
    DamagedPartitionError,
    DataEngineError,
    DatasetMismatchError,
    FatalRunError,
    LockError,
    MissingSymbolWarning,
    RequestRejectedError,
    SourceError,
    SourceUnreachableError,
    StorageError,
    UsageError,
)
from dataengine.lazy_names import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "AlpacaClient": "dataengine.sources.alpaca_client",
    "IngestionPipeline": "dataengine.orchestration.ingestion_pipeline",
    "MassiveClient": "dataengine.sources.massive_client",
    "IngestResult": "dataengine.orchestration.result",
    "MetadataStore": "dataengine.storage.metadata_store",
    "ParquetStorage": "dataengine.storage.parquet_storage",
    "Settings": "dataengine.config",
    "SymbolLoader": "dataengine.loaders.symbol_loader",
    "connect": "dataengine.read",
    "current_version": "dataengine.read",
    "read_bars": "dataengine.read",
    "scan_bars": "dataengine.read",
}

if TYPE_CHECKING:
    from dataengine.config import Settings
    from dataengine.loaders.symbol_loader import SymbolLoader
    from dataengine.orchestration.ingestion_pipeline import IngestionPipeline
    from dataengine.orchestration.result import IngestResult
    from dataengine.read import connect, current_version, read_bars, scan_bars
    from dataengine.sources.alpaca_client import AlpacaClient
    from dataengine.sources.massive_client import MassiveClient
    from dataengine.storage.metadata_store import MetadataStore
    from dataengine.storage.parquet_storage import ParquetStorage


__getattr__ = lazy_getattr("dataengine", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AlpacaClient",
    "AuthError",
    "ConfigError",
    "DamagedPartitionError",
    "DataEngineError",
    "DatasetMismatchError",
    "FatalRunError",
    "IngestResult",
    "IngestionPipeline",
    "LockError",
    "MassiveClient",
    "MetadataStore",
    "MissingSymbolWarning",
    "ParquetStorage",
    "RequestRejectedError",
    "Settings",
    "SourceError",
    "SourceUnreachableError",
    "StorageError",
    "SymbolLoader",
    "UsageError",
    "__version__",
    "connect",
    "current_version",
    "read_bars",
    "scan_bars",
]
