"""What a Massive (ex-Polygon) answer means: an aggregates page decoded straight into the stored bar schema, and
the :mod:`dataengine.errors` exception a non-200 status and body stand for.

An aggregates page is ``{"ticker", "queryCount", "resultsCount", "adjusted", "results": [{"t", "o", "h", "l",
"c", "v", "vw", "n"}...], "status", "request_id", "count", "next_url"}``: one ticker, ``t`` the bar's start in
milliseconds UTC, ``v`` a JSON number that may be written as a float (``70790813.0``). ``results`` is absent
when there is nothing and ``next_url`` on the last page; ``status`` is ``OK`` or, on delayed plans, ``DELAYED``.
Errors are ``{"status": "ERROR"|"NOT_AUTHORIZED", "request_id", "error"|"message": ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import msgspec
import polars as pl

from dataengine.errors import (
    AuthError,
    DataEngineError,
    FatalRunError,
    RequestRejectedError,
    TransientSourceError,
)
from dataengine.sources.pages import FractionalVolumeError, PageDecodeError
from dataengine.storage.layout import BAR_SCHEMA, empty_bars

__all__ = ["decode_aggs", "error_message", "refusal"]

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class _Agg(msgspec.Struct, gc=False):
    t: int  # start of the bar, milliseconds since the epoch (UTC)
    o: float
    h: float
    l: float  # noqa: E741 - Massive's field name
    c: float
    v: float = 0.0  # a float on the wire; whole shares are checked below
    n: int | None = None
    vw: float | None = None


class _AggPage(msgspec.Struct, gc=False):
    results: list[_Agg] | None = None
    next_url: str | None = None
    status: str | None = None


_DECODER = msgspec.json.Decoder(_AggPage)
_VALUES: dict[str, pl.DataType] = {
    "t": pl.Int64(), "open": pl.Float64(), "high": pl.Float64(), "low": pl.Float64(), "close": pl.Float64(),
    "volume": pl.Float64(), "trade_count": pl.Int64(), "vwap": pl.Float64(),
}


def decode_aggs(raw: bytes, symbol: str, *, rounded: Callable[[int], None] | None = None) -> tuple[pl.DataFrame, str | None]:
    """(bars of ``symbol`` in :data:`BAR_SCHEMA`, the page's ``next_url`` or None) for one aggregates page.

    A fractional volume raises :class:`FractionalVolumeError` (never truncated silently), unless ``rounded`` is
    given: then volumes are rounded to the nearest whole share (halves up) and ``rounded`` is told how many
    bars of the page were. Massive's volumes can be fractional in recent data (fractional-share trades), and the
    stored volume is whole shares. A body that is not a page, or says ``ERROR``, raises :class:`PageDecodeError`."""
    try:
        page = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PageDecodeError(str(exc)) from None
    if page.status is not None and page.status.upper() == "ERROR":
        raise PageDecodeError(f"status ERROR in a 200 answer: {error_message(raw)}")
    bars = page.results or []
    if not bars:
        return empty_bars(), page.next_url or None
    values = pl.DataFrame(
        {
            "t": [b.t for b in bars], "open": [b.o for b in bars], "high": [b.h for b in bars],
            "low": [b.l for b in bars], "close": [b.c for b in bars], "volume": [b.v for b in bars],
            "trade_count": [b.n for b in bars], "vwap": [b.vw for b in bars],
        },
        schema=_VALUES,
    )
    fractional = values.get_column("volume") % 1 != 0
    if fractional.any():
        if rounded is None:
            first = int(fractional.arg_true()[0])
            raise FractionalVolumeError(symbol, bars[first].v)
        rounded(int(fractional.sum()))
        values = values.with_columns((pl.col("volume") + 0.5).floor())
    frame = values.select(
        pl.lit(symbol, dtype=pl.String).alias("symbol"),
        (pl.col("t") * 1000).cast(pl.Datetime("us", "UTC")).alias("timestamp"),  # ms -> µs, UTC
        "open", "high", "low", "close",
        pl.col("volume").cast(pl.Int64),
        "trade_count", "vwap",
    )
    assert dict(frame.schema) == BAR_SCHEMA
    return frame, page.next_url or None


def error_message(body: bytes) -> str:
    """Massive sends ``{"status", "request_id", "error"}`` or ``{..., "message"}`` (or plain text from a proxy);
    keep it one line."""
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
        if isinstance(payload, dict):
            said = payload.get("error") or payload.get("message")
            if said:
                text = str(said)
    except ValueError:
        pass
    return " ".join(text.split())[:300]


def refusal(status: int, body: bytes) -> DataEngineError:
    """The exception a non-200 Massive answer stands for. Massive sends no rate-limit headers, so a 429 carries
    no reset instant: it is retried with backoff."""
    message = error_message(body)
    if status in RETRYABLE_STATUS:
        return TransientSourceError(f"HTTP {status} {message}", status=status)
    if status == 401:
        return AuthError(f"Massive rejected the API key (HTTP 401: {message}); check MASSIVE_API_KEY")
    if status == 403:
        # NOT_AUTHORIZED: the plan lacks this data (its history window, a recent range, an endpoint). Every
        # request of the run asks for the same kind of data, so stop with Massive's words.
        return FatalRunError(f"Massive refused the request for this plan (HTTP 403): {message}")
    # 400/404/...: about the request itself (Massive answers an unknown ticker with an empty 200, never naming
    # a symbol here), so every other request would be refused too.
    return RequestRejectedError(f"Massive rejected the request (HTTP {status}): {message}")
