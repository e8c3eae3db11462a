"""A run: validate, plan, fetch on the pool, write, record. ``IngestionPipeline`` is imported on first use (it
pulls in Polars and the storage layer; ``dataengine --help`` should not pay for them)."""

from typing import Any

__all__ = ["IngestionPipeline"]


def __getattr__(name: str) -> Any:
    if name == "IngestionPipeline":
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

        return IngestionPipeline
    raise AttributeError(name)
