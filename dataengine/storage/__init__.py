from dataengine.storage.metadata_store import MetadataStore
from dataengine.storage.parquet_storage import ParquetStorage

__all__ = ["MetadataStore", "ParquetStorage"]
