"""The on-disk format has one owner: names built and parsed back, New York months, listing that skips what is
not ours, and a page cut into its partitions by binary search equal to the per-bar way."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from dataengine.datasets import DatasetKey
from dataengine.storage import layout
from dataengine.storage.layout import BAR_SCHEMA, _split_per_bar, split_partitions
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


# -- cutting a page into partitions -----------------------------------------------------------------------


def bars(rows: list[tuple[str, datetime]]) -> pl.DataFrame:
    n = len(rows)
    return pl.DataFrame(
        {"symbol": [s for s, _ in rows], "timestamp": [t for _, t in rows], "open": [1.0] * n, "high": [1.0] * n,
         "low": [1.0] * n, "close": [float(i) for i in range(n)], "volume": [1] * n, "trade_count": [1] * n,
         "vwap": [1.0] * n},
        schema=BAR_SCHEMA,
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def as_lists(parts: list[tuple[tuple[str, int, int], pl.DataFrame]]) -> list[tuple[tuple[str, int, int], list[float]]]:
    return [(key, frame["close"].to_list()) for key, frame in parts]


def test_months_are_cut_where_new_york_months_begin() -> None:
    # 2024-02-01 00:30Z is still January 31 in New York (19:30): January; 05:00Z on Feb 1 is February
    rows = [("AAPL", utc("2024-01-31 15:00")), ("AAPL", utc("2024-02-01 00:30")), ("AAPL", utc("2024-02-01 05:00")),
            ("AAPL", utc("2024-04-02 14:00")), ("MSFT", utc("2023-12-29 20:00")), ("MSFT", utc("2024-01-02 14:30"))]
    parts = split_partitions(bars(rows))
    assert as_lists(parts) == [(("AAPL", 2024, 1), [0.0, 1.0]), (("AAPL", 2024, 2), [2.0]), (("AAPL", 2024, 4), [3.0]),
                               (("MSFT", 2023, 12), [4.0]), (("MSFT", 2024, 1), [5.0])]
    assert all("symbol" not in frame.columns for _, frame in parts)


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_split_equals_the_per_bar_way(shuffle: bool) -> None:
    start = utc("2023-10-30 08:00")
    rows = [(s, start + timedelta(hours=7 * i)) for s in ("A", "BRK.B", "Z") for i in range(400)]
    frame = bars(rows)
    if shuffle:  # not sorted: the per-bar way is taken, with the same answer
        frame = frame.sample(fraction=1.0, shuffle=True, seed=1)
    got = {key: part["close"].sort().to_list() for key, part in split_partitions(frame)}
    want = {key: part["close"].sort().to_list() for key, part in _split_per_bar(frame)}
    assert got == want and len(got) == 3 * 5


def test_an_empty_frame_has_no_partitions() -> None:
    assert split_partitions(bars([])) == []
