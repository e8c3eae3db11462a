"""Decode one Alpaca bars page (wire JSON) straight into a Polars frame, without per-bar Python models.

msgspec's typed decoder builds no Python object per bar field: measured at ~0.6 µs/bar to a frame, against
~25 µs/bar for alpaca-py's ``BarSet.df``. The frame has the stored bar schema (``storage.layout``).
"""

from __future__ import annotations

import msgspec
import polars as pl

from dataengine.storage.layout import BAR_SCHEMA, DATA_COLUMNS, empty_bars

__all__ = ["BAR_SCHEMA", "DATA_COLUMNS", "FractionalVolumeError", "PageDecodeError", "decode_page", "empty_bars"]



class _Bar(msgspec.Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's field name
    c: float
    v: float = 0.0  # an integer on the wire (alpaca-py models it as a float); cast once per page below
    n: int | None = None
    vw: float | None = None


class _Page(msgspec.Struct, gc=False):
    bars: dict[str, list[_Bar] | None] | None = None
    next_page_token: str | None = None


_DECODER = msgspec.json.Decoder(_Page)
_VALUE_SCHEMA: dict[str, pl.DataType] = {
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "trade_count": pl.Int64(),
    "vwap": pl.Float64(),
}
# Alpaca's canonical form, e.g. 2024-01-02T14:31:00Z: an exact format is ~4x cheaper to parse than one with
# optional fractions, so try it first and fall back only for pages that need it.
_TS_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%.fZ")


class PageDecodeError(ValueError):
    """The body was not a bars page (truncated or not JSON)."""


class FractionalVolumeError(PageDecodeError):
    """A stock bar with a fractional volume: stored volumes are whole shares, and truncating would be silent
    data loss, so the page is refused for that symbol instead."""

    def __init__(self, symbol: str, volume: float) -> None:
        super().__init__(f"{symbol}: fractional volume {volume} in a bar; refusing to store it truncated")
        self.symbol = symbol


def decode_page(raw: bytes) -> tuple[pl.DataFrame, str | None]:
    """Return (bars with ``symbol`` column, next_page_token) for one multi-symbol page."""
    try:
        page = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PageDecodeError(str(exc)) from None
    symbols: list[str] = []
    t: list[str] = []
    o: list[float] = []
    h: list[float] = []
    lo: list[float] = []
    c: list[float] = []
    v: list[float] = []
    n: list[int | None] = []
    vw: list[float | None] = []
    for symbol, bars in (page.bars or {}).items():
        if not bars:
            continue
        symbols += [symbol] * len(bars)
        t += [b.t for b in bars]
        o += [b.o for b in bars]
        h += [b.h for b in bars]
        lo += [b.l for b in bars]
        c += [b.c for b in bars]
        v += [b.v for b in bars]
        n += [b.n for b in bars]
        vw += [b.vw for b in bars]
    if not symbols:
        return empty_bars(), page.next_page_token
    values = pl.DataFrame(
        {"open": o, "high": h, "low": lo, "close": c, "volume": v, "trade_count": n, "vwap": vw}, schema=_VALUE_SCHEMA
    )
    fractional = values.get_column("volume") % 1 != 0
    if fractional.any():
        first = int(fractional.arg_true()[0])
        raise FractionalVolumeError(symbols[first], v[first])
    frame = values.with_columns(pl.col("volume").cast(pl.Int64)).insert_column(0, _timestamps(t))
    return frame.insert_column(0, pl.Series("symbol", symbols, dtype=pl.String)), page.next_page_token


def _timestamps(raw: list[str]) -> pl.Series:
    text = pl.Series("timestamp", raw, dtype=pl.String)
    for fmt in _TS_FORMATS:
        parsed = text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False, cache=False)  # all distinct
        if not parsed.null_count():
            return parsed
    # Not the canonical Z form (an explicit offset, say): let Polars infer, still strict.
    return text.str.to_datetime(time_unit="us").dt.convert_time_zone("UTC")
