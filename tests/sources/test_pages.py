"""The page decoder against real bodies published by Alpaca and its SDKs (tests/data/alpaca_samples)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from dataengine.sources.pages import PageDecodeError, decode_page
from dataengine.storage.layout import BAR_SCHEMA

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "alpaca_samples"
STOCK_PAGES = sorted(
    p for p in SAMPLES.glob("*.json")
    if p.name != "SOURCES.json" and "crypto" not in p.name and "corporate_actions" not in p.name  # bars pages only
)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


@pytest.mark.parametrize("sample", STOCK_PAGES, ids=lambda p: p.stem)
def test_every_field_of_every_published_page_decodes_exactly(sample: Path) -> None:
    raw = sample.read_bytes()
    body = json.loads(raw)
    frame, token = decode_page(raw)
    assert token == body["next_page_token"]
    assert dict(frame.schema) == BAR_SCHEMA
    wanted = [(symbol, bar) for symbol, bars in (body["bars"] or {}).items() for bar in bars or [] if bar is not None]
    assert frame.height == len(wanted)
    for row, (symbol, bar) in zip(frame.iter_rows(named=True), wanted, strict=True):
        assert row["symbol"] == symbol
        assert row["timestamp"] == _utc(bar["t"])
        assert (row["open"], row["high"], row["low"], row["close"]) == (bar["o"], bar["h"], bar["l"], bar["c"])
        assert row["volume"] == bar["v"] and isinstance(row["volume"], int)
        assert row["trade_count"] == bar.get("n") and row["vwap"] == bar.get("vw")


def test_integer_prices_become_floats() -> None:
    frame, _ = decode_page(b'{"bars":{"TSLA":[{"t":"2022-03-09T05:00:00Z","o":839,"h":860,"l":832,"c":858,"v":5,"n":1,"vw":850}]},"next_page_token":null}')
    assert frame["open"].dtype == pl.Float64 and frame["open"][0] == 839.0


def test_null_and_empty_symbol_entries_are_skipped() -> None:
    frame, token = decode_page(b'{"bars":{"A":null,"B":[],"C":[{"t":"2024-01-02T14:30:00Z","o":1,"h":1,"l":1,"c":1,"v":1}]},"next_page_token":"x"}')
    assert frame["symbol"].to_list() == ["C"] and token == "x"
    assert frame["trade_count"][0] is None and frame["vwap"][0] is None


def test_fractional_seconds_and_offsets_parse_to_the_same_instant() -> None:
    frame, _ = decode_page(b'{"bars":{"A":[{"t":"2024-01-02T14:30:00.500Z","o":1,"h":1,"l":1,"c":1,"v":1},'
                           b'{"t":"2024-01-02T09:31:00-05:00","o":1,"h":1,"l":1,"c":1,"v":1}]},"next_page_token":null}')
    assert frame["timestamp"].to_list() in (
        [datetime(2024, 1, 2, 14, 30, 0, 500000, tzinfo=timezone.utc), datetime(2024, 1, 2, 14, 31, tzinfo=timezone.utc)],
    )


@pytest.mark.parametrize("body", [b"", b'{"bars":', b"<html>502</html>", b'{"bars":{"A":[{"t":"x"}]}}'])
def test_a_body_that_is_not_a_page_is_refused(body: bytes) -> None:
    with pytest.raises(PageDecodeError):
        decode_page(body)
