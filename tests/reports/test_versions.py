"""Versions as a user handles them: pins and prunes per dataset key (dataengine.reports.versions)."""

from __future__ import annotations

from pathlib import Path

from dataengine import IngestionPipeline
from dataengine.datasets import DatasetKey
from dataengine.reports.versions import prune_versions, table_of
from dataengine.storage.store import open_store


def test_prune_by_key_reaches_a_dataset_stored_with_alpacas_adjustment(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day", adjustment="split").ok
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-02-29", "day", adjustment="split", full_refresh=True).ok
    root, key = open_store(tmp_path / "store"), DatasetKey.of("day", "split")  # no raw day dataset in this store
    report = prune_versions(root, [key], keep_days=0)
    assert list(report.datasets) == [table_of(root, key).dataset] == [key.dirname]
    assert report.datasets[key.dirname]["kept_versions"] == [1] and report.datasets[key.dirname]["files_deleted"] == 1
