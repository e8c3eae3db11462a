"""The layout's partition split: a page cut into New York months by binary search equals the per-bar way."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from dataengine.storage.layout import BAR_SCHEMA, _split_per_bar, split_partitions


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
