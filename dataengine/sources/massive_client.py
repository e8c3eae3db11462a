"""The only module that talks to Massive (ex-Polygon): raw bars from its aggregates REST API, and its splits and
dividends as corporate actions.

The requests are the ones Massive's official client (``massive``, ex ``polygon-api-client``) sends: the same
paths and query parameters, ``Authorization: Bearer KEY``, the same default host, and ``next_url`` followed by
its path and query on the configured host (as that client does: the key never goes to another host). The key
is only ever a header, never in a URL, so no URL a log holds (ours or urllib3's) carries it; an ``apiKey`` in a
``next_url`` is dropped. HTTP, timeouts, the retry policy, counters and the shared pacer are
:mod:`dataengine.sources.http`'s, as for Alpaca; this module is imported only when a Massive source is made.

Unlike Alpaca: one ticker per request (a multi-symbol :meth:`MassiveClient.iter_pages` asks for each symbol in
turn, so pages still come sorted by symbol, then time); ``limit`` counts *base* aggregates (minutes for intraday
sizes, days for longer ones), at most 50,000; bars are stamped in milliseconds; raw bars need ``adjusted=false``
(the API's default is split-adjusted); no rate-limit headers, so pacing is by ``requests_per_minute`` alone and a
429 backs off; the range's ends are sent as millisecond timestamps, so a UTC range is exact at both (inclusive)
ends, where a ``YYYY-MM-DD`` would be a New York day.

A ``MassiveClient`` owns one HTTP session and is **not** thread-safe: use one per worker thread (see
:meth:`MassiveClient.factory`); the :class:`RateLimiter` may (and should) be shared by all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import polars as pl

from dataengine.config import Settings
from dataengine.datasets import parse_adjustment, parse_feed
from dataengine.errors import (
    Interrupted,
    PagingLoopError,
    RequestRejectedError,
    TransientSourceError,
)
from dataengine.sources.http import HttpClient, RetryPolicy
from dataengine.sources.massive_wire import decode_aggs, refusal
from dataengine.sources.pages import PageDecodeError
from dataengine.sources.rate_limiter import RateLimiter
from dataengine.sources.source import MASSIVE, Page, SourceFactory, SourceInfo, WaitHook, one_symbols_bars
from dataengine.timeframes import DAY, HOUR, MINUTE, MONTH, WEEK, Timeframe, parse_timeframe

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame

log = logging.getLogger(__name__)
DEFAULT_URL = "https://api.massive.com"  # the official client's BASE; keys from the Polygon days also work there
AGGS_PATH = "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start}/{end}"
SPLITS_PATH = "/v3/reference/splits"
DIVIDENDS_PATH = "/v3/reference/dividends"
TIMESPANS = {MINUTE: "minute", HOUR: "hour", DAY: "day", WEEK: "week", MONTH: "month"}

_T = TypeVar("_T")


class MassiveClient(HttpClient):
    """Fetches raw historical stock bars and corporate actions from Massive, page by page, with timeouts,
    retries and shared pacing. Satisfies :class:`dataengine.sources.source.BarSource`."""

    _log = log

    info: SourceInfo = MASSIVE

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        settings: Settings | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        if api_key is None or settings is not None:
            # MassiveClient() reads its key, URL, timeout and retries from the settings, as AlpacaClient() does
            settings = settings or Settings.load()
            api_key = api_key or settings.massive_key()
            base_url = base_url or settings.massive_api_url
            timeout = timeout if timeout is not None else settings.request_timeout
            retry = retry or RetryPolicy(max_retries=settings.max_retries, base_s=settings.retry_backoff)
            rate_limiter = rate_limiter or RateLimiter(settings_pace(settings))
        super().__init__(
            base_url=base_url or DEFAULT_URL, headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout if timeout is not None else 30.0, retry=retry, rate_limiter=rate_limiter, stop=stop,
            on_wait=on_wait,
        )
        self._asof_noted = False
        self._rounded_noted: set[str] = set()  # symbols whose fractional volumes were said to be rounded

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        requests_per_minute: int | None = None,
        rate_limiter: RateLimiter | None = None,
        stop: threading.Event | None = None,
        on_wait: WaitHook | None = None,
    ) -> MassiveClient:
        """The one place settings become a client: key (``MASSIVE_API_KEY``; a ConfigError when missing), URL
        (``MASSIVE_API_URL``), timeout and retry policy. ``requests_per_minute``: the pace when no shared
        ``rate_limiter`` is given (default: :data:`MASSIVE`'s, the free plan's 5)."""
        return cls(settings=settings, rate_limiter=rate_limiter or RateLimiter(_pace(requests_per_minute)), stop=stop,
                   on_wait=on_wait)

    @classmethod
    def factory(cls, settings: Settings, *, requests_per_minute: int | None = None) -> SourceFactory:
        """A source factory for one run: every client it makes shares one pacer, as Massive's limit is per key."""
        settings.massive_key()  # a missing key is a usage error now, not in a worker
        limiter = RateLimiter(_pace(requests_per_minute))

        def make(*, stop: threading.Event, on_wait: WaitHook | None) -> MassiveClient:
            return cls.from_settings(settings, rate_limiter=limiter, stop=stop, on_wait=on_wait)

        return make

    # -- bars -----------------------------------------------------------------------------------------------

    def fetch_bars(
        self,
        symbol: str,
        start: str | date | datetime,
        end: str | date | datetime,
        timeframe: str | TimeFrame | Timeframe = "minute",
        *,
        feed: str = "sip",
        adjustment: str = "raw",
    ) -> pl.DataFrame:
        """All raw bars of one symbol in ``[start, end]`` (New York days, inclusive) as one Polars frame, as
        :meth:`AlpacaClient.fetch_bars <dataengine.sources.alpaca_client.AlpacaClient.fetch_bars>` gives them
        (:data:`~dataengine.storage.layout.BAR_SCHEMA`, symbol included; SIP's last 16 minutes not asked for).

        ``symbol`` is spelled as ``ingest`` spells it (``aapl`` -> ``AAPL``); a list, or a symbol ``ingest``
        refuses, raises :class:`~dataengine.errors.UsageError` before any request. ``feed`` ``sip`` and
        ``adjustment`` ``raw`` only (:meth:`iter_pages`). The free plan serves a day once it is over and about
        two years back: a range it refuses (HTTP 403) raises FatalRunError. For several symbols, use the pipeline."""
        return one_symbols_bars(self.iter_pages, symbol, start, end, parse_timeframe(timeframe), feed=feed,
                                adjustment=adjustment, several="IngestionPipeline().ingest_symbols(..., source='massive')")

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
        """Yield every page of raw bars for ``symbols`` in ``[start, end]`` (UTC instants, inclusive): one
        ticker after another in symbol order, each from its first page to its last, so pages come sorted by
        symbol, then time. ``feed`` must be ``sip`` and ``adjustment`` ``raw`` (a RequestRejectedError
        otherwise: what a source serves is in :attr:`info`); ``asof`` is ignored (tickers are point-in-time).

        A ``next_url`` already followed for this ticker raises :class:`PagingLoopError` naming the symbol, so the
        run fails that symbol alone instead of looping forever."""
        tf = parse_timeframe(timeframe)
        self._check_request(tf, feed, adjustment, asof)
        lo, hi = _utc(start), _utc(end)
        for symbol in sorted(dict.fromkeys(symbols)):
            path = self.aggs_path(symbol, tf, lo, hi)
            if path is None:
                continue  # no whole millisecond in the range: no bar can start in it

            def decode(body: bytes, symbol: str = symbol) -> tuple[Page, str | None]:
                return self._decode_bars(body, symbol, lo, hi)

            params = {"adjusted": "false", "sort": "asc", "limit": str(self.info.page_bars)}
            yield from self._pages(path, params, decode, symbol=symbol, what="bars")

    @staticmethod
    def aggs_path(symbol: str, timeframe: Timeframe, start: datetime, end: datetime) -> str | None:
        """``/v2/aggs/ticker/{T}/range/{n}/{span}/{from}/{to}`` with ``from``/``to`` in whole milliseconds that
        cover exactly ``[start, end]`` (UTC, inclusive); None when no millisecond lies in it."""
        first, last = -(-_micros(start) // 1000), _micros(end) // 1000  # ceil, floor
        if first > last:
            return None
        return AGGS_PATH.format(
            ticker=quote(symbol, safe=""), multiplier=timeframe.amount, timespan=TIMESPANS[timeframe.unit],
            start=first, end=last,
        )

    def _check_request(self, tf: Timeframe, feed: str, adjustment: str, asof: str | None) -> None:
        if not self.info.serves(tf):
            raise RequestRejectedError(f"Massive: no {tf.name} bars here")
        if parse_adjustment(adjustment) not in self.info.adjustments:
            raise RequestRejectedError(
                f"Massive bars are fetched raw only, not {adjustment!r}: read adjusted prices with "
                "read_bars(..., adjustment=...), computed from the stored corporate actions"
            )
        if parse_feed(feed) not in self.info.feeds:
            raise RequestRejectedError(f"Massive serves the consolidated tape (feed sip) only, not {feed!r}")
        if asof not in (None, "", "-") and not self._asof_noted:
            self._asof_noted = True
            log.info("Massive does not map renamed tickers: asof %s ignored (point-in-time tickers)", asof)

    def _decode_bars(self, body: bytes, symbol: str, start: datetime, end: datetime) -> tuple[Page, str | None]:
        def rounded(count: int) -> None:
            if symbol not in self._rounded_noted:  # once a symbol per client: a long minute history has many pages
                self._rounded_noted.add(symbol)
                log.warning("%s: %d bar(s) of a page with a fractional volume (fractional-share trades), stored "
                            "rounded to whole shares", symbol, count)

        try:
            bars, next_url = decode_aggs(body, symbol, rounded=rounded)
        except PageDecodeError as exc:
            raise TransientSourceError(f"malformed page ({exc})", status=200) from None
        inside = bars.filter(pl.col("timestamp").is_between(start, end))
        if inside.height != bars.height:  # never sent out of range by the server as documented; never stored
            log.debug("%s: %d bar(s) outside the range asked for dropped", symbol, bars.height - inside.height)
        self.stats.bars += inside.height
        return Page(inside, next_url), next_url

    # -- corporate actions ----------------------------------------------------------------------------------

    def fetch_actions(self, symbols: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Splits with an execution date and cash dividends with an ex-date in ``[start, end]``, of each symbol
        (two requests per symbol at least: Massive filters these endpoints by one ticker), as rows of
        :data:`dataengine.actions.schema.ACTION_SCHEMA` with ``massive:`` ids. Paced, retried and counted
        like bar pages."""
        from dataengine.actions.schema import empty_actions
        from dataengine.actions.wire import decode_massive_dividends, decode_massive_splits

        frames: list[pl.DataFrame] = []
        endpoints = ((SPLITS_PATH, "execution_date", decode_massive_splits),
                     (DIVIDENDS_PATH, "ex_dividend_date", decode_massive_dividends))
        for symbol in sorted(dict.fromkeys(symbols)):
            for path, field, decode in endpoints:
                params = {
                    "ticker": symbol, f"{field}.gte": start.isoformat(), f"{field}.lte": end.isoformat(),
                    "limit": str(self.info.action_page_limit), "sort": field, "order": "asc",
                }
                frames.extend(self._pages(path, params, _checked(decode), symbol=symbol, what="corporate actions"))
        return pl.concat(frames) if frames else empty_actions()

    # -- paging, retries, one HTTP exchange -----------------------------------------------------------------

    def _pages(
        self, path: str, params: dict[str, str], decode: Callable[[bytes], tuple[_T, str | None]], *,
        symbol: str, what: str,
    ) -> Iterator[_T]:
        """Every page from ``path?params`` on, following ``next_url`` as given (path and query, on our host)."""
        target = f"{path}?{urlencode(params)}"
        seen = {target}
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Interrupted("stopped")

            def exchange(target: str = target) -> tuple[_T, str | None]:
                return decode(self._send(target))

            page, next_url = self._with_retries(exchange)
            yield page
            if not next_url:
                return
            target = _relative(next_url)
            if target in seen:
                raise PagingLoopError(
                    f"{symbol}: Massive repeated a next_url after {len(seen)} pages of {what}: paging stopped "
                    "advancing, so these were skipped instead of looping forever", symbol=symbol,
                )
            seen.add(target)

    def _send(self, target: str) -> bytes:
        """One paced GET of ``target`` (path and query) on our host; the body of a 200, else the exception its
        status means. Logs the path without its query (cursors are long; no key is ever in either)."""
        answer = self._paced_get(self._base + target)
        path, _, query = target.partition("?")
        log.debug("GET %s cursor=%s -> %d in %.0f ms", path, "cursor=" in query, answer.status, answer.elapsed_ms)
        if answer.status == 200:
            return answer.body
        raise refusal(answer.status, answer.body)


def _checked(decode: Callable[[bytes], tuple[pl.DataFrame, str | None]]) -> Callable[[bytes], tuple[pl.DataFrame, str | None]]:
    """A corporate-actions decoder whose malformed pages are transient (retried), as for Alpaca's."""

    def run(body: bytes) -> tuple[pl.DataFrame, str | None]:
        try:
            return decode(body)
        except (ValueError, TypeError, KeyError) as exc:
            raise TransientSourceError(f"malformed corporate-actions page ({exc})", status=200) from None

    return run


def _relative(next_url: str) -> str:
    """A ``next_url`` as path and query for our host, without any ``apiKey`` it might carry."""
    parts = urlsplit(next_url)
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name.lower() == "apikey" for name, _ in pairs):
        query = urlencode([(name, value) for name, value in pairs if name.lower() != "apikey"])
    return f"{parts.path}?{query}" if query else parts.path


def _pace(requests_per_minute: int | None) -> int:
    """The pace asked for, else the plan :data:`MASSIVE` assumes (the free plan's 5 a minute)."""
    return requests_per_minute or MASSIVE.requests_per_minute or 1


PAID_REQUESTS_PER_MINUTE = 6_000  # paid plans have no per-minute cap; Massive asks to stay under ~100/s


def settings_pace(settings: Settings) -> int:
    """Requests per minute a Massive run or client is paced at: ``massive_requests_per_minute``, else what the
    ``massive_plan`` allows (free: 5)."""
    return settings.massive_requests_per_minute or (
        PAID_REQUESTS_PER_MINUTE if settings.massive_plan == "paid" else _pace(None))


def _utc(instant: datetime) -> datetime:
    """An instant in UTC (a naive one is taken as UTC, as the Alpaca client does)."""
    if instant.tzinfo is None or instant.tzinfo.utcoffset(instant) is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(timezone.utc)


def _micros(instant: datetime) -> int:
    delta = _utc(instant) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
