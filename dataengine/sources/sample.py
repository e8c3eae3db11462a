"""The ``sample`` source: deterministic synthetic bars with no key and no network, so a newcomer can watch the
whole tool work (ingest, status, show, read_bars, SQL) before signing up with any vendor.

Every bar is a function of (symbol, New York day) alone: the same symbol and range give the same bars on every
machine, whatever range a request asks for (a month fetched in one request or in thirty days of requests is the
same month). The model, per symbol: a mean-reverting daily close around a level drawn from the symbol's name;
each session's minute path a Brownian bridge from its open (the previous close, gapped) to its close; 04:00-20:00
New York (17:00 on early closes) with every regular-hours minute traded and about a third of the extended-hours
minutes; U-shaped volume. Longer bars are aggregates of the minute bars (N-minute and N-hour buckets aligned in
UTC, as Alpaca aligns them; day, week and month bars stamped at New York midnight of their first session). Bars
never start after now. None of it is a market: its datasets are named ``sample_equities_*`` and every output
that shows them says they are synthetic.

A :class:`SampleSource` satisfies :class:`~dataengine.sources.source.BarSource`; it keeps no connection, so one
per worker thread costs nothing (see :meth:`SampleSource.factory`).
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone

import numpy as np
import polars as pl

from dataengine import calendar
from dataengine.counters import RequestCounts
from dataengine.errors import Interrupted, RequestRejectedError, TerminalSourceError
from dataengine.sources.source import SAMPLE, Page, SourceFactory, SourceInfo, WaitHook
from dataengine.storage.layout import BAR_SCHEMA, empty_bars
from dataengine.timeframes import DAY, HOUR, MINUTE, MONTH, WEEK, Timeframe, parse_timeframe
from dataengine.timerange import NEW_YORK

_FIRST_DAY = date(2000, 1, 1)  # the calendar's first day: the daily path starts here, so any range is the same
_CHUNK_DAYS = 20  # sessions generated at a time (about 20,000 minute bars per symbol)
_MIN_US = 60_000_000
_SESSION_MINUTES = 960  # 04:00-20:00 New York
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# What a US stock ticker looks like to Alpaca (a letter, then letters, digits and share-class dots): the sample
# refuses the rest as Alpaca does ("invalid symbol: X", that symbol alone), so a typo such as AAPL$ is caught
# in the tour and not first on the day real keys arrive.
_TICKER = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")


class SampleSource:
    """Synthetic bars for any symbol, offline. Thread-safe apart from its counters (one per worker thread)."""

    info: SourceInfo = SAMPLE

    def __init__(self, *, stop: threading.Event | None = None, now: datetime | None = None) -> None:
        self._stop = stop
        self._now = now
        self.stats = RequestCounts()

    @classmethod
    def factory(cls, *, now: datetime | None = None) -> SourceFactory:
        """A source factory for one run (no key, no pacing). ``now``: the instant no bar may start after
        (default: the clock at each request)."""

        def make(*, stop: threading.Event, on_wait: WaitHook | None) -> SampleSource:
            return cls(stop=stop, now=now)

        return make

    def close(self) -> None:
        pass

    def iter_pages(
        self,
        symbols: Sequence[str],
        timeframe: str | Timeframe,
        start: datetime,
        end: datetime,
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        asof: str | None = None,
    ) -> Iterator[Page]:
        """Pages of up to :attr:`SourceInfo.page_bars` bars across ``symbols``, sorted by symbol then time, of
        the bars starting in ``[start, end]`` (UTC, inclusive). Each page counts as one request."""
        tf = parse_timeframe(timeframe)
        if adjustment != "raw":
            raise RequestRejectedError("the sample source serves raw bars only (read_bars adjusts them)")
        for symbol in symbols:
            if not _TICKER.match(symbol):
                raise TerminalSourceError(
                    f"invalid symbol: {symbol} (a ticker is a letter, then letters, digits and dots)", status=400,
                    symbol=symbol,
                )
        now = self._now or datetime.now(timezone.utc)
        end = min(end.astimezone(timezone.utc), now - timedelta(minutes=1) if tf.intraday else now)
        start = start.astimezone(timezone.utc)
        held: list[pl.DataFrame] = []
        rows = 0
        for symbol in sorted(dict.fromkeys(symbols)):
            for frame in _symbol_bars(symbol, tf, start, end):
                while frame.height:
                    if self._stop is not None and self._stop.is_set():
                        raise Interrupted("stopped")
                    take = frame.head(self.info.page_bars - rows)
                    held.append(take)
                    rows += take.height
                    frame = frame.slice(take.height)
                    if rows == self.info.page_bars:
                        yield self._page(held, more=True)
                        held, rows = [], 0
        yield self._page(held, more=False)

    def _page(self, frames: list[pl.DataFrame], *, more: bool) -> Page:
        bars = pl.concat(frames) if frames else empty_bars()
        self.stats.requests += 1
        self.stats.bars += bars.height
        return Page(bars, "more" if more else None)

    def fetch_actions(self, symbols: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """The sample has no corporate actions: an empty table (so "asked, none exist", and adjusted reads of
        sample bars equal the raw ones)."""
        from dataengine.actions.schema import empty_actions

        self.stats.requests += 1
        return empty_actions()


# -- the model ------------------------------------------------------------------------------------------


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


@functools.lru_cache(maxsize=256)
def _daily_path(symbol: str) -> tuple[dict[date, int], np.ndarray, np.ndarray, np.ndarray]:
    """(session -> row, open, close, volume) of every session the calendar knows, for one symbol."""
    days = tuple(calendar.sessions(_FIRST_DAY, calendar.last_day()))
    rng = np.random.default_rng(_seed("daily", symbol))
    level = np.log(rng.uniform(20.0, 400.0))
    sigma = rng.uniform(0.01, 0.025)
    shocks = rng.standard_normal(len(days)) * sigma
    log_close = np.empty(len(days))
    x = level + rng.normal(0.0, 0.3)
    for i, shock in enumerate(shocks.tolist()):  # mean-reverting: prices stay plausible for decades
        x += 0.003 * (level - x) + shock
        log_close[i] = x
    gaps = rng.standard_normal(len(days)) * sigma * 0.25
    log_open = np.concatenate(([log_close[0] - shocks[0]], log_close[:-1])) + gaps
    volume = np.exp(np.log(rng.uniform(5e5, 3e7)) + rng.standard_normal(len(days)) * 0.35)
    return {d: i for i, d in enumerate(days)}, np.exp(log_open), np.exp(log_close), volume


def _minute_bars(symbol: str, days: Sequence[date]) -> pl.DataFrame:
    """The minute bars of ``symbol`` on the sessions ``days`` (no symbol column), sorted by time: one row of
    960 minutes per session (04:00-20:00 New York; an early close's last three hours are never traded), each
    session drawn from its own seed, so any range gives the same bars."""
    if not days:
        return empty_bars().drop("symbol")
    index, opens, closes, volumes = _daily_path(symbol)
    rows = np.array([index[d] for d in days])
    k, n = len(days), _SESSION_MINUTES
    steps, wick, spread, traded_draw = (np.empty((k, n)) for _ in range(4))
    wick2, size = np.empty((k, n)), np.empty(k)
    for j, day in enumerate(days):
        rng = np.random.default_rng(_seed("minutes", symbol, day.isoformat()))
        steps[j], wick[j], wick2[j], spread[j], traded_draw[j] = (
            rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n), rng.uniform(0.5, 1.5, n), rng.random(n))
        size[j] = rng.integers(60, 140)
    walk = np.concatenate((np.zeros((k, 1)), np.cumsum(steps * 0.0009, axis=1)), axis=1)
    t = np.linspace(0.0, 1.0, n + 1)[None, :]
    log_open, log_close = np.log(opens[rows])[:, None], np.log(closes[rows])[:, None]
    path = log_open + (walk - t * walk[:, -1:]) + t * (log_close - log_open)  # a bridge: open to close
    first = np.array([_us(datetime.combine(d, calendar.EXTENDED_OPEN, NEW_YORK)) for d in days], dtype=np.int64)
    stamps = first[:, None] + np.arange(n, dtype=np.int64)[None, :] * _MIN_US
    hours = [calendar.regular_hours(d) for d in days]
    r_open = np.array([_us(a) for a, _ in hours], dtype=np.int64)[:, None]
    r_close = np.array([_us(b) for _, b in hours], dtype=np.int64)[:, None]
    last = np.array([calendar.extended_minutes(d) for d in days])[:, None]
    regular = (stamps >= r_open) & (stamps < r_close)
    traded = (regular | (traded_draw < 0.35)) & (np.arange(n)[None, :] < last)
    o, c = np.exp(path[:, :-1]), np.exp(path[:, 1:])
    h, lo = np.maximum(o, c) * (1 + np.abs(wick) * 0.0004), np.minimum(o, c) * (1 - np.abs(wick2) * 0.0004)
    x = (stamps - r_open) / np.maximum(r_close - r_open, 1)
    weight = np.where(traded, np.where(regular, 1.0 + 3.0 * (2 * x - 1) ** 2, 0.04) * spread, 0.0)
    vol = np.maximum(np.round(volumes[rows][:, None] * weight / weight.sum(axis=1, keepdims=True)), 1).astype(np.int64)
    o, h, lo, c = (np.round(a, 2) for a in (o, h, lo, c))
    h, lo = np.maximum.reduce([h, o, c]), np.minimum.reduce([lo, o, c])
    keep = traded.ravel()
    vol = vol.ravel()[keep]
    return pl.DataFrame({
        "timestamp": pl.Series(stamps.ravel()[keep], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
        "open": o.ravel()[keep], "high": h.ravel()[keep], "low": lo.ravel()[keep], "close": c.ravel()[keep],
        "volume": vol,
        "trade_count": np.maximum(vol // np.repeat(size, n)[keep].astype(np.int64), 1),
        "vwap": np.round((h.ravel()[keep] + lo.ravel()[keep] + c.ravel()[keep]) / 3, 4),
    })


def _us(instant: datetime) -> int:
    return (instant - _EPOCH) // timedelta(microseconds=1)


def _symbol_bars(symbol: str, tf: Timeframe, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
    """Frames (stored bar schema, sorted by time) of ``symbol``'s ``tf`` bars starting in ``[start, end]``."""
    if start > end:
        return
    first_day, last_day = start.astimezone(NEW_YORK).date(), end.astimezone(NEW_YORK).date()
    if tf.unit == WEEK:  # a period's bar is built from all its sessions
        first_day, last_day = first_day - timedelta(days=first_day.weekday()), last_day + timedelta(days=7)
    elif tf.unit == MONTH:
        months = (first_day.year * 12 + first_day.month - 1) // tf.amount * tf.amount
        first_day = date(months // 12, months % 12 + 1, 1)
        months = (last_day.year * 12 + last_day.month - 1) // tf.amount * tf.amount + tf.amount
        last_day = date(months // 12, months % 12 + 1, 1)
    days = calendar.sessions(max(first_day, _FIRST_DAY), min(last_day, calendar.last_day()))
    for chunk in _chunks(days, tf):
        bars = _aggregate(_minute_bars(symbol, chunk), tf)
        bars = bars.filter(pl.col("timestamp").is_between(start, end))
        if bars.height:
            yield bars.select(pl.lit(symbol, dtype=pl.String).alias("symbol"), pl.all())


def _chunks(days: list[date], tf: Timeframe) -> Iterator[list[date]]:
    """``days`` in runs of about a month of minute bars (a year for daily and longer bars), never cutting a
    week's or a month's sessions apart."""
    size = _CHUNK_DAYS if tf.intraday else 250
    start = 0
    for i in range(1, len(days) + 1):
        if i == len(days) or (i - start >= size and _period(days[i], tf) != _period(days[i - 1], tf)):
            yield days[start:i]
            start = i


def _period(day: date, tf: Timeframe) -> object:
    if tf.unit == WEEK:
        return day - timedelta(days=day.weekday())
    if tf.unit == MONTH:
        return (day.year * 12 + day.month - 1) // tf.amount
    return day


def _aggregate(minutes: pl.DataFrame, tf: Timeframe) -> pl.DataFrame:
    """Minute bars of whole sessions into ``tf`` bars (the stored schema without ``symbol``)."""
    stamp = pl.col("timestamp")
    if tf.unit == MINUTE and tf.amount == 1:
        return minutes
    if tf.unit in (MINUTE, HOUR):
        size = f"{tf.amount * (60 if tf.unit == HOUR else 1)}m"
        key = stamp.dt.truncate(size)  # aligned to multiples since the epoch, in UTC
    else:
        local = stamp.dt.convert_time_zone(str(NEW_YORK))
        if tf.unit == DAY:
            period = local.dt.date()
        elif tf.unit == WEEK:
            period = local.dt.truncate("1w").dt.date()
        else:
            months = (local.dt.year() * 12 + local.dt.month() - 1) // tf.amount * tf.amount
            period = pl.date(months // 12, months % 12 + 1, 1)
        key = period.alias("_period")
    grouped = minutes.with_columns(_key=key).group_by("_key", maintain_order=True).agg(
        pl.col("timestamp").first().alias("_first"),
        pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
        pl.col("volume").sum(), pl.col("trade_count").sum(),
        ((pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()).round(4).alias("vwap"),
    )
    if tf.unit in (MINUTE, HOUR):
        timestamp = pl.col("_key")
    else:  # New York midnight of the period's first session
        timestamp = (pl.col("_first").dt.convert_time_zone(str(NEW_YORK)).dt.truncate("1d")
                     .dt.convert_time_zone("UTC"))
    out = grouped.select(timestamp.alias("timestamp"), "open", "high", "low", "close", "volume", "trade_count", "vwap")
    return out.cast({k: v for k, v in BAR_SCHEMA.items() if k != "symbol"})


__all__ = ["SAMPLE", "SampleSource"]
