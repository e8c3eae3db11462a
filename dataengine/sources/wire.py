"""One Alpaca bars page (wire JSON) decoded into flat columns, with msgspec and the standard library only.

This is the part of a page's decode that builds Python objects (msgspec's typed structs, then one list per
field), so it holds the GIL; decode processes run it (:mod:`dataengine.sources.fetch_process`) and send the
columns to the run's main process, which turns them into a Polars frame without touching a bar in Python
(:meth:`WireColumns.frame`). Nothing here imports Polars: a decode process stays small (~25 MiB) and starts
in a tenth of a second. :func:`dataengine.sources.pages.decode_page` is the same decode in one process.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import msgspec

if TYPE_CHECKING:
    import polars as pl

__all__ = ["FractionalVolumeError", "PageDecodeError", "WireColumns", "decode_columns"]

TS_WIDTH = 20  # Alpaca's canonical instant, 2024-01-02T14:31:00Z
_NAN = float("nan")  # a missing vwap on the way to the main process (JSON has no NaN, so it means nothing else)


class PageDecodeError(ValueError):
    """The body was not a bars page (truncated or not JSON)."""


class FractionalVolumeError(PageDecodeError):
    """A stock bar with a fractional volume: stored volumes are whole shares, and truncating would be silent
    data loss, so the page is refused for that symbol instead."""

    def __init__(self, symbol: str, volume: float) -> None:
        super().__init__(f"{symbol}: fractional volume {volume} in a bar; refusing to store it truncated")
        self.symbol = symbol


class _Bar(msgspec.Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741 - Alpaca's field name
    c: float
    v: float = 0.0  # an integer on the wire (alpaca-py models it as a float); checked whole on the way to a frame
    n: int | None = None
    vw: float | None = None


class _Page(msgspec.Struct, gc=False):
    bars: dict[str, list[_Bar] | None] | None = None
    next_page_token: str | None = None


_DECODER = msgspec.json.Decoder(_Page)


@dataclass
class WireColumns:
    """A page's bars as flat columns: ``symbols[i]`` has the next ``counts[i]`` bars. Floats and integers are
    machine arrays (``array`` buffers), the timestamps one ASCII string of fixed-width instants (or a list
    when some are not in the canonical form); ``trade_count_missing`` marks null counts (None: none is),
    and a missing vwap is NaN. Picklable: this is what a decode process sends."""

    symbols: list[str]
    counts: list[int]
    timestamps: bytes | list[str]
    open: array[float]
    high: array[float]
    low: array[float]
    close: array[float]
    volume: array[float]
    trade_count: array[int]
    trade_count_missing: bytes | None
    vwap: array[float]

    @property
    def height(self) -> int:
        return len(self.open)

    def frame(self) -> pl.DataFrame:
        """The bars as a frame of the stored schema with ``symbol`` (``storage.layout.BAR_SCHEMA``), built from
        the buffers without a Python object per bar. Raises :class:`FractionalVolumeError` naming the first
        symbol with a fractional volume, :class:`PageDecodeError` for a timestamp that is no instant."""
        from dataengine.sources.pages import columns_frame  # Polars: only where frames are made

        return columns_frame(self)


def decode_columns(raw: bytes) -> tuple[WireColumns, str | None]:
    """(the page's bars as columns, next_page_token); :class:`PageDecodeError` for a body that is not a page."""
    try:
        page = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PageDecodeError(str(exc)) from None
    symbols: list[str] = []
    counts: list[int] = []
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
        symbols.append(symbol)
        counts.append(len(bars))
        t += [b.t for b in bars]
        o += [b.o for b in bars]
        h += [b.h for b in bars]
        lo += [b.l for b in bars]
        c += [b.c for b in bars]
        v += [b.v for b in bars]
        n += [b.n for b in bars]
        vw += [b.vw for b in bars]
    stamps = "".join(t)
    missing = bytes(x is None for x in n) if None in n else None
    trade_count = array("q", [0 if x is None else x for x in n] if missing else cast("list[int]", n))
    vwap = array("d", [_NAN if x is None else x for x in vw] if None in vw else cast("list[float]", vw))
    columns = WireColumns(
        symbols, counts, stamps.encode() if len(stamps) == TS_WIDTH * len(t) and stamps.isascii() else t,
        array("d", o), array("d", h), array("d", lo), array("d", c), array("d", v), trade_count, missing, vwap,
    )
    return columns, page.next_page_token
