"""The store: partition files, coverage, metadata, lock and ledger. Classes are imported on first use, so that
``dataengine.storage.layout`` (the on-disk format) is cheap to import on its own."""

from typing import Any

__all__ = ["MetadataStore", "ParquetStorage"]


def __getattr__(name: str) -> Any:
    if name == "MetadataStore":
        from dataengine.storage.metadata_store import MetadataStore

        return MetadataStore
    if name == "ParquetStorage":
        from dataengine.storage.parquet_storage import ParquetStorage

        return ParquetStorage
    raise AttributeError(name)
