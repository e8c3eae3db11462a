"""The only module that talks to Alpaca (its HTTP, pacing and retries are :mod:`dataengine.sources.http`'s).

The requests are the ones alpaca-py would send: the query parameters of its ``StockBarsRequest`` (a test holds
them equal), the session, auth headers and default data URL its client uses. alpaca-py itself is not imported
on this path: with pandas and pydantic it costs ~0.6 s and ~130 MiB per process. We drive the pages ourselves
because ``get_stock_bars`` loops over every page inside one call, keeps the whole range in memory, has no
timeout and retries only 429/504 with a fixed 3 s sleep.
Each page is decoded straight into a Polars frame and handed on, so memory does not grow with the range.

An ``AlpacaClient`` owns one HTTP session and is **not** thread-safe: use one per worker thread.
The :class:`RateLimiter` passed in may (and should) be shared by all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from dataengine.config import Settings
from dataengine.counters import RequestCounts
from dataengine.datasets import parse_adjustment, parse_feed, wire_feed
from dataengine.errors import Interrupted, PagingLoopError, TerminalSourceError, TransientSourceError
from dataengine.sources.answers import rate_headers, refusal
from dataengine.sources.http import HttpClient, RetryPolicy
from dataengine.sources.rate_limiter import RateLimiter
from dataengine.sources.source import PAGE_BARS, Pacer, Page, ProcessSpec, SourceFactory, WaitHook, one_symbols_bars
from dataengine.sources.wire import FractionalVolumeError, PageDecodeError
from dataengine.timeframes import Timeframe, parse_timeframe

if TYPE_CHECKING:
    import polars as pl
    from alpaca.data.timeframe import TimeFrame

log = logging.getLogger(__name__)
DEFAULT_DATA_URL = "https://data.alpaca.markets"  # alpaca-py's BaseURL.DATA

# RetryPolicy lived here before sources/http.py owned it: still importable from here for scripts that did
__all__ = ["DEFAULT_DATA_URL", "AlpacaClient", "AlpacaFactory", "ClientStats", "RetryPolicy", "client_arguments"]
ClientStats = RequestCounts  # counters of one client; the run sums them over its workers


class AlpacaClient(HttpClient):
    """Fetches historical stock bars page by page, with timeouts, retries and shared pacing."""

    _log = log

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        base_url: str | None = None,
        settings: Settings | None = None,
        rate_limiter: Pacer | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        on_wait: WaitHook | None = None,
    ) -> None:
        if api_key is None or secret_key is None or settings is not None:
            # The seed API's AlpacaClient() reads everything from settings, as from_settings does.
            settings = settings or Settings.load()
            api_key, secret_key = (api_key, secret_key) if api_key and secret_key else settings.credentials()
            base_url = base_url or settings.data_url
            timeout = timeout if timeout is not None else settings.request_timeout
            retry = retry or RetryPolicy(max_retries=settings.max_retries, base_s=settings.retry_backoff)
            rate_limiter = rate_limiter or RateLimiter(settings.requests_per_minute)
        # The headers alpaca-py's client would send (the APCA-API-* keys) on a requests.Session as it makes one,
        # without importing alpaca-py here: with pandas it costs ~0.6 s, and a run that only asks for corporate
        # actions (a nightly with nothing new) never needs it.
        super().__init__(
            base_url=base_url or DEFAULT_DATA_URL,
            headers={"APCA-API-KEY-ID": api_key, "APCA-API-SECRET-KEY": secret_key},
            timeout=timeout if timeout is not None else 30.0,
            retry=retry, rate_limiter=rate_limiter, stop=stop, on_wait=on_wait, rate_of=rate_headers,
        )
        self._bars_url = f"{self._base}/v2/stocks/bars"
        self._actions_url = f"{self._base}/v1/corporate-actions"

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        rate_limiter: RateLimiter | None = None,
        stop: threading.Event | None = None,
        on_wait: WaitHook | None = None,
    ) -> AlpacaClient:
        """The one place settings become a client: keys, data URL, timeout, retry policy and pacing."""
        return cls(
            **client_arguments(settings),
            rate_limiter=rate_limiter or RateLimiter(settings.requests_per_minute),
            stop=stop,
            on_wait=on_wait,
        )

    @classmethod
    def factory(cls, settings: Settings) -> SourceFactory:
        """A source factory for one run: every client it makes shares one pacer, as Alpaca's limit is per key."""
        return AlpacaFactory(settings)

    # -- public ---------------------------------------------------------------------------------------------

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
        """All bars of one symbol in ``[start, end]`` (New York days, inclusive) as one Polars frame.

        ``symbol`` is spelled as ``ingest`` and ``read_bars`` spell it (``aapl`` -> ``AAPL``, ``BRK-B`` ->
        ``BRK.B``); a list, or a symbol ``ingest`` refuses (``AAPL,MSFT``), raises
        :class:`~dataengine.errors.UsageError` before any request. Convenient for small ranges; for several
        symbols or bulk work use :meth:`iter_pages` or the pipeline, which stream.
        """
        return one_symbols_bars(self.iter_pages, symbol, start, end, timeframe, feed=feed, adjustment=adjustment,
                                several="IngestionPipeline().ingest_symbols(...) or iter_pages")

    def iter_pages(
        self,
        symbols: Sequence[str],
        timeframe: str | TimeFrame | Timeframe,
        start: datetime,
        end: datetime,
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        asof: str | None = None,
        page_token: str | None = None,
    ) -> Iterator[Page]:
        """Yield every page of bars for ``symbols`` in ``[start, end]`` (UTC instants, inclusive).

        Pages come sorted by symbol, then timestamp; one symbol may span pages. A failed request is retried
        with the same page token, so a retry never restarts the range. A server that hands back a token it
        already gave for this range (a proxy cache, a server bug) would loop forever: that raises
        :class:`PagingLoopError` instead, which the run isolates like a bad symbol.
        """
        params = self.build_params(symbols, timeframe, start, end, feed=feed, adjustment=adjustment, asof=asof)
        token = page_token
        seen: set[str] = set()
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Interrupted("stopped")
            page = self.request_page(params, token)
            yield page
            if not page.next_page_token:
                return
            token = page.next_page_token
            if token in seen:
                raise PagingLoopError(
                    f"Alpaca repeated page token {token[:24]}... after {len(seen) + 1} pages: paging stopped "
                    "advancing, so these bars were skipped instead of looping forever"
                )
            seen.add(token)

    @staticmethod
    def build_params(
        symbols: Sequence[str],
        timeframe: str | TimeFrame | Timeframe,
        start: datetime,
        end: datetime,
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        asof: str | None = None,
    ) -> dict[str, str]:
        """Query parameters for ``/v2/stocks/bars``: exactly what alpaca-py's ``StockBarsRequest(...)
        .to_request_fields()`` gives for the same request (RFC 3339 instants, ``limit``, ``feed``, ``asof``
        when given, comma-joined symbols; tests/sources/test_request_params.py holds the two equal), built here
        so that a run never imports alpaca-py's models (with pandas and pydantic: ~0.6 s and ~130 MiB per
        process). The timeframe and adjustment go out as Alpaca spells them: alpaca-py's enums lack some of
        what Alpaca serves (``4Month``, ``spin-off``, combinations such as ``split,spin-off``)."""
        params = {
            "start": _rfc3339(start),
            "end": _rfc3339(end),
            "limit": str(PAGE_BARS),
            "timeframe": parse_timeframe(timeframe).wire,
            "adjustment": parse_adjustment(adjustment),
            "feed": wire_feed(parse_feed(feed)),
        }
        if asof:
            params["asof"] = asof
        params["symbols"] = ",".join(symbols)
        return params

    def request_page(self, params: dict[str, str], page_token: str | None = None) -> Page:
        """One page, retried on transient failures; raises a :mod:`dataengine.errors` exception otherwise."""
        query = dict(params, page_token=page_token) if page_token else params
        return self._with_retries(lambda: self._decode_bars(self._send(self._bars_url, query)))

    def fetch_actions(self, symbols: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Every corporate action of ``symbols`` with a *process* date in ``[start, end]``, one row each
        (:mod:`dataengine.actions.schema`). Paced, retried and counted like bar pages."""
        import polars as pl

        from dataengine.actions.schema import empty_actions
        from dataengine.actions.wire import ACTION_PAGE_LIMIT, decode_actions

        query = {
            "symbols": ",".join(symbols), "start": start.isoformat(), "end": end.isoformat(),
            "limit": str(ACTION_PAGE_LIMIT), "sort": "asc",
        }
        frames, token, seen = [], None, set()
        while True:
            if self._stop is not None and self._stop.is_set():
                raise Interrupted("stopped")
            page_query = dict(query, page_token=token) if token else query

            def exchange(q: dict[str, str] = page_query) -> tuple[pl.DataFrame, str | None]:
                return decode_actions(self._send(self._actions_url, q))

            frame, token = self._with_retries(exchange)
            frames.append(frame)
            if not token:
                return pl.concat(frames) if frames else empty_actions()
            if token in seen:
                raise PagingLoopError(f"Alpaca repeated corporate-actions page token {token[:24]}...: paging stopped")
            seen.add(token)

    # -- one HTTP exchange ----------------------------------------------------------------------------------

    def _send(self, url: str, query: dict[str, str]) -> bytes:
        """One paced GET; the body of a 200, else the :mod:`dataengine.errors` exception its status means."""
        answer = self._paced_get(url, query)
        log.debug(
            "GET symbols=%s start=%s token=%s -> %d in %.0f ms (rate limit: %s left, reset %s)",
            _short(query.get("symbols", "")), query.get("start"), bool(query.get("page_token")), answer.status,
            answer.elapsed_ms, answer.rate.remaining, answer.rate.reset,
        )
        if answer.status == 200:
            return answer.body
        raise refusal(answer.status, answer.body, answer.rate.reset)

    def decode(self, body: bytes) -> tuple[Any, str | None]:
        """One page's bars (a Polars frame: :func:`~dataengine.sources.pages.decode_page`) and next token. A
        decode process's client keeps the flat columns instead (:mod:`dataengine.sources.fetch_process`)."""
        from dataengine.sources.pages import decode_page  # Polars: imported where frames are made

        return decode_page(body)

    def _decode_bars(self, body: bytes) -> Page:
        try:
            bars, token = self.decode(body)
        except FractionalVolumeError as exc:
            raise TerminalSourceError(str(exc), status=200, symbol=exc.symbol) from None
        except PageDecodeError as exc:
            raise TransientSourceError(f"malformed page ({exc})", status=200) from None
        self.stats.bars += bars.height
        return Page(bars, token)


def client_arguments(settings: Settings) -> dict[str, Any]:
    """The keyword arguments settings give a client (everything but pacing, stop and hooks): plain values a
    decode process can be handed."""
    key, secret = settings.credentials()
    return {
        "api_key": key, "secret_key": secret, "base_url": settings.data_url, "timeout": settings.request_timeout,
        "retry": RetryPolicy(max_retries=settings.max_retries, base_s=settings.retry_backoff),
    }


class AlpacaFactory:
    """Makes the Alpaca clients of one run (a :class:`SourceFactory`); they share one pacer, as Alpaca's limit
    is per key, and so do the clients of the run's decode processes (:attr:`process_spec`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.requests_per_minute)

    def __call__(self, *, stop: threading.Event, on_wait: WaitHook | None) -> AlpacaClient:
        return AlpacaClient.from_settings(self.settings, rate_limiter=self.limiter, stop=stop, on_wait=on_wait)

    @property
    def process_spec(self) -> ProcessSpec:
        return ProcessSpec(client_arguments(self.settings), self.limiter, self.settings.processes)


def _rfc3339(instant: datetime) -> str:
    """alpaca-py's rendering of a request instant: in UTC (a naive one is taken as UTC), ISO with its offset."""
    if instant.tzinfo is None or instant.tzinfo.utcoffset(instant) is None:
        instant = instant.replace(tzinfo=timezone.utc)
    return instant.astimezone(timezone.utc).isoformat()


def _short(symbols: str) -> str:
    return symbols if len(symbols) < 40 else f"{symbols[:36]}...({symbols.count(',') + 1})"
