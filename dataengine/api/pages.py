"""Decode one Alpaca bars page (wire JSON) straight into a Polars frame, without per-bar Python models.

msgspec's typed decoder is the fastest single-thread path measured (perf-notes §1: ~1 µs/bar to a frame,
against ~25 µs/bar for alpaca-py's ``BarSet.df``).
"""

from __future__ import annotations

import msgspec
import polars as pl

BAR_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "timestamp": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Int64(),
    "trade_count": pl.Int64(),
    "vwap": pl.Float64(),
}
DATA_COLUMNS = [c for c in BAR_SCHEMA if c != "symbol"]


class _Bar(msgspec.Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's field name
    c: float
    v: int | float = 0
    n: int | None = None
    vw: float | None = None


class _Page(msgspec.Struct, gc=False):
    bars: dict[str, list[_Bar] | None] | None = None
    next_page_token: str | None = None


_DECODER = msgspec.json.Decoder(_Page)


class PageDecodeError(ValueError):
    """The body was not a bars page (truncated or not JSON)."""


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_SCHEMA)


def decode_page(raw: bytes) -> tuple[pl.DataFrame, str | None]:
    """Return (bars with ``symbol`` column, next_page_token) for one multi-symbol page."""
    try:
        page = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PageDecodeError(str(exc)) from None
    columns: dict[str, list] = {name: [] for name in BAR_SCHEMA}
    for symbol, bars in (page.bars or {}).items():
        if not bars:
            continue
        bars = [b for b in bars if b is not None]
        columns["symbol"].extend([symbol] * len(bars))
        columns["timestamp"].extend([b.t for b in bars])
        columns["open"].extend([b.o for b in bars])
        columns["high"].extend([b.h for b in bars])
        columns["low"].extend([b.l for b in bars])
        columns["close"].extend([b.c for b in bars])
        columns["volume"].extend([int(b.v) for b in bars])
        columns["trade_count"].extend([b.n for b in bars])
        columns["vwap"].extend([b.vw for b in bars])
    if not columns["symbol"]:
        return empty_bars(), page.next_page_token
    raw_ts = columns.pop("timestamp")
    frame = pl.DataFrame(columns, schema={k: v for k, v in BAR_SCHEMA.items() if k != "timestamp"})
    timestamps = pl.Series("timestamp", raw_ts, dtype=pl.String).str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC", strict=False
    )
    if timestamps.null_count():
        # Not the canonical Z form (an explicit offset, say): let Polars infer, still strict.
        timestamps = pl.Series("timestamp", raw_ts).str.to_datetime(time_unit="us").dt.convert_time_zone("UTC")
    return frame.insert_column(1, timestamps), page.next_page_token
