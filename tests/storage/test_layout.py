"""The on-disk format has one owner: names built and parsed back, New York months, listing that skips what is
not ours."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from dataengine.datasets import DatasetKey
from dataengine.storage import layout
from dataengine.storage.store import open_store


def test_a_partition_path_is_built_and_parsed_back(tmp_path: Path) -> None:
    root = open_store(tmp_path)
    path = layout.partition_path(root, DatasetKey.of("minute"), "BRK.B", 2024, 3)
    assert path.key == "equities_1min/symbol=BRK.B/year=2024/month=03/data.parquet"
    assert layout.parse_partition_path(path) == ("BRK.B", 2024, 3)
    assert layout.parse_partition_path(root / "equities_1min" / "symbol=A" / "year=2024" / "month=13" / "data.parquet") is None
    assert layout.partition_relpath("equities_1day", "A", 2024, 1) == "equities_1day/symbol=A/year=2024/month=01"


def test_every_metadata_path_is_named_here(tmp_path: Path) -> None:
    root = open_store(tmp_path)
    names = {
        layout.store_marker(root): "metadata/store.json", layout.lock_path(root): "metadata/run.lock",
        layout.ledger_path(root): "metadata/runs.jsonl", layout.indices_dir(root): "metadata/indices",
        layout.status_cache_path(root): "metadata/status-cache.arrow",
        layout.coverage_path(root, "equities_1min"): "metadata/coverage/equities_1min.jsonl",
        layout.dataset_record_path(root, "equities_1min"): "metadata/datasets/equities_1min.json",
        layout.versions_dir(root, "equities_1min"): "metadata/versions/equities_1min",
        layout.actions_path(root): "corporate_actions/actions.parquet",
        layout.closes_path(root): "corporate_actions/closes.parquet",
    }
    assert {path.key: key for path, key in names.items()} == {key: key for key in names.values()}


def test_an_after_hours_bar_belongs_to_its_new_york_month() -> None:
    bars = pl.DataFrame({"timestamp": [datetime(2024, 2, 1, 2, 30, tzinfo=timezone.utc)]})  # 21:30 Jan 31 New York
    assert layout.with_partition_columns(bars).select("year", "month").row(0) == (2024, 1)


def test_listing_skips_what_is_not_ours(tmp_path: Path) -> None:
    root = open_store(tmp_path)
    base = tmp_path / "equities_1min"
    for rel in ("symbol=A/year=2024/month=01/data.parquet", "symbol=A/year=2024/month=02/data.parquet",
                "symbol=A/year=2024/month=02/.data.parquet.1.abcdef12.tmp", "symbol=A/notes/x.txt", "stray/y"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(b"x")
    assert layout.dataset_names(root) == ["equities_1min"]
    assert layout.symbols_in(root / "equities_1min") == ["A"]
    assert [(p.year, p.month) for p in layout.iter_partitions(root / "equities_1min")] == [(2024, 1), (2024, 2)]
