from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

__all__ = ["IngestionPipeline"]
