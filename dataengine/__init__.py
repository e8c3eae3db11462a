"""dataengine: historical US stock bars from Alpaca into an exactly-once, Hive-partitioned Parquet store.

Public API (names from the product description)::

    from dataengine import IngestionPipeline, AlpacaClient, ParquetStorage, MetadataStore, SymbolLoader
"""

from dataengine.api.alpaca_client import AlpacaClient
from dataengine.config import Settings
from dataengine.errors import (
    AuthError,
    ConfigError,
    DataEngineError,
    DatasetMismatchError,
    FatalRunError,
    SourceError,
    StorageError,
    UsageError,
)
from dataengine.loaders.symbol_loader import SymbolLoader
from dataengine.orchestration.ingestion_pipeline import IngestionPipeline
from dataengine.orchestration.result import IngestResult
from dataengine.reader import connect, read_bars, scan_bars
from dataengine.storage.metadata_store import MetadataStore
from dataengine.storage.parquet_storage import ParquetStorage

__version__ = "0.1.0"

__all__ = [
    "AlpacaClient",
    "AuthError",
    "ConfigError",
    "DataEngineError",
    "DatasetMismatchError",
    "FatalRunError",
    "IngestResult",
    "IngestionPipeline",
    "MetadataStore",
    "ParquetStorage",
    "Settings",
    "SourceError",
    "StorageError",
    "SymbolLoader",
    "UsageError",
    "__version__",
    "connect",
    "read_bars",
    "scan_bars",
]
