"""Planning, the thread pool, progress. ``IngestionPipeline`` is imported on first use (it pulls in alpaca-py)."""

from typing import Any

__all__ = ["IngestionPipeline"]


def __getattr__(name: str) -> Any:
    if name == "IngestionPipeline":
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

        return IngestionPipeline
    raise AttributeError(name)
