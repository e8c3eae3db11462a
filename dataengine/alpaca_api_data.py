"""[DEPRECATED] The original module's functions, kept so old scripts keep working.

Use ``dataengine.AlpacaClient`` and ``dataengine.ParquetStorage`` instead; importing this module warns.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime

import polars as pl

from dataengine.sources.alpaca_client import AlpacaClient
from dataengine.storage.parquet_storage import ParquetStorage, WriteStats

warnings.warn(
    "dataengine.alpaca_api_data is deprecated; use dataengine.AlpacaClient and dataengine.ParquetStorage",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["fetch_data", "store_data"]


def fetch_data(
    symbol: str, start_date: str | date | datetime, end_date: str | date | datetime, timeframe: object = "minute"
) -> pl.DataFrame:
    """Deprecated: ``AlpacaClient().fetch_bars(symbol, start_date, end_date, timeframe)``."""
    warnings.warn("fetch_data is deprecated; use AlpacaClient().fetch_bars", DeprecationWarning, stacklevel=2)
    client = AlpacaClient()
    try:
        return client.fetch_bars(symbol, start_date, end_date, timeframe)  # type: ignore[arg-type]
    finally:
        client.close()


def store_data(dataframe: pl.DataFrame, timeframe: object = "minute", storage_dir: str | None = None) -> WriteStats:
    """Deprecated: ``ParquetStorage(storage_dir).store(dataframe, timeframe=timeframe)``."""
    warnings.warn("store_data is deprecated; use ParquetStorage().store", DeprecationWarning, stacklevel=2)
    return ParquetStorage(storage_dir).store(dataframe, timeframe)  # type: ignore[arg-type]
