"""Variants of the engine that the bench measures beside it and that were not kept, installed in a contestant's
process before its clock starts (``Entry(..., request={"variant": NAME})``).

``nogil``: pages decoded by Polars' JSON reader, which releases the GIL, instead of msgspec, which holds it: the
"decode path that releases the GIL" of issue 26. The page's skeleton is read by msgspec without building the
bars (each symbol's list as raw bytes), the bars of all symbols are parsed as one JSON array by
``pl.read_json``, the timestamps by Polars. Worker threads then decode in parallel, at about 1.4-1.7x the CPU
per page of the msgspec decoder (measured on this machine); the decode processes were faster, so this is here
to be measured, not shipped.
"""

from __future__ import annotations

import msgspec
import numpy as np
import polars as pl

from dataengine.sources import pages


class _Skeleton(msgspec.Struct, gc=False):
    bars: dict[str, msgspec.Raw] | None = None  # each symbol's list as it is on the wire (or null)
    next_page_token: str | None = None


_SKELETON = msgspec.json.Decoder(_Skeleton)
_WIRE = {"t": pl.String(), "o": pl.Float64(), "h": pl.Float64(), "l": pl.Float64(), "c": pl.Float64(),
         "v": pl.Float64(), "n": pl.Float64(), "vw": pl.Float64()}
_NAMES = {"o": "open", "h": "high", "l": "low", "c": "close", "v": "volume", "n": "trade_count", "vw": "vwap"}
_STRICT = pages.decode_page


def decode_page_released(raw: bytes) -> tuple[pl.DataFrame, str | None]:
    """The bars parsed without the GIL; anything unusual goes to the shipped decoder, which says what is wrong."""
    try:
        skeleton = _SKELETON.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return _STRICT(raw)
    names: list[str] = []
    counts: list[int] = []
    lists: list[bytes] = []
    for symbol, value in (skeleton.bars or {}).items():
        segment = bytes(value).strip()
        if segment == b"null":
            continue
        if not segment.startswith(b"["):
            return _STRICT(raw)
        bars = segment.count(b"{")  # flat objects whose only string is a timestamp
        if bars:
            names.append(symbol)
            counts.append(bars)
            lists.append(segment[1:-1])
    if not names:
        return _STRICT(raw)
    try:
        wire = pl.read_json(b"[" + b",".join(lists) + b"]", schema=_WIRE)
        whole = (pl.col("v") % 1 == 0) & ((pl.col("n") % 1 == 0) | pl.col("n").is_null())
        missing = any(wire.get_column(c).null_count() for c in ("t", "o", "h", "l", "c", "v"))
        if wire.height != sum(counts) or missing or not wire.select(whole.all()).item():
            return _STRICT(raw)
        stamps = pages._timestamps(wire.get_column("t"))  # type: ignore[arg-type]  # a Series serves as well
    except pl.exceptions.PolarsError:
        return _STRICT(raw)
    index = pl.Series(np.repeat(np.arange(len(names), dtype=np.uint32), counts))
    frame = wire.drop("t").rename(_NAMES).with_columns(pl.col("volume", "trade_count").cast(pl.Int64))
    frame = frame.insert_column(0, stamps).insert_column(0, pl.Series("symbol", names, pl.String).gather(index))
    return frame, skeleton.next_page_token


def install(name: str) -> None:
    if name != "nogil":
        raise ValueError(f"unknown variant {name!r}")
    pages.decode_page = decode_page_released  # AlpacaClient.decode looks it up at each page
