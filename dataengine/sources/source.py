"""What a run needs from a data source: pages of bars for symbols over a range, with counters; and what each
source can do (:class:`SourceInfo`), so a planner can size requests without importing any HTTP client.

Sources: Alpaca (:class:`dataengine.sources.alpaca_client.AlpacaClient`), Massive, ex-Polygon
(:class:`dataengine.sources.massive_client.MassiveClient`), and ``sample``, synthetic bars with no key and no
network (:class:`dataengine.sources.sample.SampleSource`). Another source is a class with these methods, a
:class:`SourceFactory` that makes one per worker thread, a :class:`SourceInfo` in :data:`SOURCES`, and its
factory in :mod:`dataengine.orchestration.sources` (README "Sources": how to add one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dataengine.counters import RequestCounts
from dataengine.datasets import DEFAULT_SOURCE, dataset_prefix, parse_feed
from dataengine.errors import UsageError

if TYPE_CHECKING:
    import polars as pl

    from dataengine.timeframes import Timeframe

# The most bars a page may hold, counted across all symbols of a request (Alpaca's `limit` maximum): a request
# for N bars costs ceil(N / PAGE_BARS) pages, which is what the planner packs units by. Alpaca's value: a planner
# serving several sources reads ``SourceInfo.bars_per_page(timeframe)`` instead.
PAGE_BARS = 10_000
WaitHook = Callable[[str, float], None]  # (reason, seconds): called before a long wait (progress display)


@dataclass
class Page:
    """One page of bars: a frame with a ``symbol`` column, and the token of the next page (None at the end)."""

    bars: pl.DataFrame
    next_page_token: str | None


class BarSource(Protocol):
    """Pages of bars. One instance serves one thread; raises :mod:`dataengine.errors` exceptions only:
    ``TransientSourceError`` after its own retries, ``TerminalSourceError`` for a bad request,
    ``FatalRunError`` when no request can succeed, ``Interrupted`` once the run's stop event is set."""

    stats: RequestCounts

    def iter_pages(
        self,
        symbols: Sequence[str],
        timeframe: Timeframe,
        start: datetime,
        end: datetime,
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        asof: str | None = None,
    ) -> Iterator[Page]:
        """Every page for ``symbols`` in ``[start, end]`` (UTC, inclusive), sorted by symbol then time;
        ``asof``: the date renamed symbols are mapped as of (``-``: no mapping; None: the source's default)."""
        ...

    def fetch_actions(self, symbols: Sequence[str], start: date, end: date) -> pl.DataFrame:
        """Corporate actions of ``symbols`` with a process date in ``[start, end]``
        (:data:`dataengine.actions.schema.ACTION_SCHEMA`). A source without them may omit this method."""
        ...

    def close(self) -> None: ...


class SourceFactory(Protocol):
    """Makes a worker's source; sources made by one factory share its pacing (one per run). A factory whose
    sources can also run in decode processes says how in a ``process_spec`` attribute (:func:`process_spec`)."""

    def __call__(self, *, stop: threading.Event, on_wait: WaitHook | None) -> BarSource: ...


class Pacer(Protocol):
    """A run's request pacing (:class:`~dataengine.sources.rate_limiter.RateLimiter`): a permit before each
    request (None: stopped first), then exactly one report on it: never sent, no answer, or the answer's
    rate-limit headers."""

    def acquire(self, stop: threading.Event | None = None, on_wait: WaitHook | None = None) -> int | None: ...

    def release(self, permit: int | None) -> None: ...

    def done(self, permit: int | None) -> None: ...

    def observe(
        self, *, remaining: int | None, reset_epoch: float | None, throttled: bool = False, permit: int | None = None,
        limit: int | None = None, headers_ago: float = 0.0,
    ) -> None: ...


@dataclass(frozen=True)
class ProcessSpec:
    """How a run's decode processes (:mod:`dataengine.orchestration.decode_pool`) make the same source as its
    factory: ``client``, the keyword arguments of the source's client there (plain, picklable values;
    credentials go over a private socket, never the command line); ``pacer``, the run's one pacer, which
    stays in the run's process and gives every permit; ``processes``, the setting (None: automatic)."""

    client: dict[str, Any]
    pacer: Pacer | None
    processes: int | None = None


def process_spec(factory: object) -> ProcessSpec | None:
    """The factory's :class:`ProcessSpec`, or None when its sources run only on the run's threads."""
    spec = getattr(factory, "process_spec", None)
    return spec if isinstance(spec, ProcessSpec) else None


# -- what each source can do ----------------------------------------------------------------------------------

# Bar sizes by unit (the units of :mod:`dataengine.timeframes`: Min, Hour, Day, Week, Month) and the amounts served.
BarSizes = tuple[tuple[str, tuple[int, ...]], ...]
_DATAENGINE_SIZES: BarSizes = (
    ("Min", tuple(range(1, 60))), ("Hour", tuple(range(1, 24))), ("Day", (1,)), ("Week", (1,)),
    ("Month", (1, 2, 3, 4, 6, 12)),
)
_BASE_BARS_PER_SESSION = {"minute": 960.0, "day": 1.0}  # one 04:00-20:00 session in minutes; in days


@dataclass(frozen=True)
class SourceInfo:
    """What one data source serves and how it pages and paces: facts a planner reads, no HTTP. Immutable.

    ``page_bars`` counts bars of any size across all symbols of a request when ``page_unit`` is ``bars``
    (Alpaca), or *base aggregates* when it is ``base``: minutes for intraday sizes, days for day and longer
    (Massive builds a page of 5-minute bars from at most ``page_bars`` minute bars). ``symbols_per_request``
    None: many, batched up to a URL-length bound. ``history_start``/``history_years``: the earliest day served
    (None: not known or plan-dependent), and a rolling limit in years back from today (None: none known).
    ``requests_per_minute``: the default pace (the plan a source is assumed to be on; None: unthrottled);
    ``rate_limit_headers``: answers say what is left of the quota (pace by them), else pace by the number alone
    and back off on 429. ``adjustments``: what the source's bars can be asked for in (parts combinable with
    commas, as in :func:`dataengine.datasets.parse_adjustment`); local adjustment from ``corporate_actions``
    works for any source that has them.
    """

    name: str
    page_bars: int
    page_unit: Literal["bars", "base"]
    symbols_per_request: int | None
    bar_sizes: BarSizes
    history_start: date | None
    history_years: float | None
    adjustments: tuple[str, ...]
    feeds: tuple[str, ...]
    corporate_actions: bool
    maps_renamed_symbols: bool  # Alpaca's ``asof``; a source without it serves point-in-time tickers
    rate_limit_headers: bool
    requests_per_minute: int | None
    action_page_limit: int  # corporate-action records per page at most
    action_requests_per_batch: int = 1  # requests one batch of symbols' corporate actions takes at least
    title: str = ""  # how outputs name the source: ``Alpaca``, ``Massive``, ``sample (synthetic)``
    key_variables: tuple[str, ...] = ()  # the environment variables its key is read from (none: no key)
    synthetic: bool = False  # made-up bars (the sample source): its datasets and outputs say so

    @property
    def dataset_prefix(self) -> str:
        """What its dataset directories' names start with, before ``equities_`` (``massive_``; Alpaca's: none)."""
        return dataset_prefix(self.name)

    def serves(self, timeframe: Timeframe) -> bool:
        return any(unit == timeframe.unit and timeframe.amount in amounts for unit, amounts in self.bar_sizes)

    def serves_adjustment(self, adjustment: str) -> bool:
        """``adjustment`` in canonical form (``raw``, ``all``, ``split,spin-off``...)."""
        return adjustment in self.adjustments or set(adjustment.split(",")) <= set(self.adjustments)

    def bars_per_page(self, timeframe: Timeframe) -> int:
        """The most bars of ``timeframe`` one page can hold (upper estimate: sizes that do not divide a session
        cut one more bar at its edges): a request for B bars costs at least ceil(B / this) pages."""
        if self.page_unit == "bars":
            return self.page_bars
        base = _BASE_BARS_PER_SESSION["minute" if timeframe.intraday else "day"]
        return max(1, int(self.page_bars * timeframe.bars_per_session / base))

    def earliest(self, today: date) -> date | None:
        """The first day this source serves history for, as far as is known (None: unknown)."""
        rolling = None
        if self.history_years is not None:
            days = int(self.history_years * 365.25)
            rolling = date.fromordinal(today.toordinal() - days)
        known = [d for d in (self.history_start, rolling) if d is not None]
        return max(known) if known else None


ALPACA = SourceInfo(
    name="alpaca",
    page_bars=PAGE_BARS,
    page_unit="bars",
    symbols_per_request=None,  # comma-joined in the query; the planner bounds the URL (MAX_SYMBOL_CHARS)
    bar_sizes=_DATAENGINE_SIZES,  # [1-59]Min, [1-23]Hour, 1Day, 1Week, [1,2,3,4,6,12]Month
    history_start=date(2016, 1, 1),
    history_years=None,
    adjustments=("raw", "split", "dividend", "spin-off", "all"),
    feeds=("sip", "iex", "otc", "boats"),
    corporate_actions=True,
    maps_renamed_symbols=True,
    rate_limit_headers=True,  # X-RateLimit-Remaining / -Reset on every answer
    requests_per_minute=200,  # the free plan; Algo Trader Plus: 10,000 (setting ``requests_per_minute``)
    action_page_limit=1000,
    title="Alpaca",
    key_variables=("APCA_API_KEY_ID", "APCA_API_SECRET_KEY"),
)
MASSIVE = SourceInfo(
    name="massive",
    page_bars=50_000,  # the aggregates endpoint's ``limit`` maximum, in base aggregates
    page_unit="base",
    symbols_per_request=1,  # one ticker in the path
    bar_sizes=_DATAENGINE_SIZES,  # any multiplier of minute/hour/day/week/month: every size dataengine names
    history_start=None,  # plan-dependent: paid plans go back well before 2016
    history_years=2,  # the free plan; paid plans: 5, 10, 20+ years
    adjustments=("raw",),  # the API also serves split-adjusted bars; dataengine stores raw and adjusts locally
    feeds=("sip",),  # consolidated tape only
    corporate_actions=True,  # /v3/reference/splits and /v3/reference/dividends, on every plan
    maps_renamed_symbols=False,
    rate_limit_headers=False,  # no quota headers: a 429 is all the server says
    requests_per_minute=5,  # the free plan; paid plans are not throttled per minute
    action_page_limit=1000,
    action_requests_per_batch=2,  # its splits and its dividends, one ticker at a time
    title="Massive",
    key_variables=("MASSIVE_API_KEY",),
)
SAMPLE = SourceInfo(
    name="sample",
    page_bars=PAGE_BARS,  # pages as Alpaca's: bars across the symbols of a request
    page_unit="bars",
    symbols_per_request=None,
    bar_sizes=_DATAENGINE_SIZES,
    history_start=date(2000, 1, 1),  # the shipped NYSE calendar's first day
    history_years=None,
    adjustments=("raw",),  # adjusted prices are computed locally, from its (empty) corporate actions
    feeds=("sip",),
    corporate_actions=True,  # asked and answered: there are none
    maps_renamed_symbols=False,
    rate_limit_headers=False,
    requests_per_minute=None,  # no network: nothing to pace
    action_page_limit=1000,
    title="sample (synthetic)",
    synthetic=True,
)
SOURCES: dict[str, SourceInfo] = {info.name: info for info in (ALPACA, MASSIVE, SAMPLE)}  # datasets.SOURCE_NAMES' order
__all__ = ["ALPACA", "DEFAULT_SOURCE", "MASSIVE", "PAGE_BARS", "SAMPLE", "SOURCES", "BarSource", "Page", "SourceFactory",
           "SourceInfo", "WaitHook", "source_info"]


def source_info(name: str) -> SourceInfo:
    """The :class:`SourceInfo` of a source by name (``--source``); :class:`UsageError` for an unknown one."""
    found = SOURCES.get(str(name).strip().lower())
    if found is None:
        raise UsageError(f"unknown source {str(name)[:40]!r}; choose one of: {', '.join(SOURCES)}")
    return found


def one_symbols_bars(iter_pages: Callable[..., Iterator[Page]], symbol: object, start: str | date | datetime,
                     end: str | date | datetime, timeframe: Any, *, feed: str, adjustment: str, several: str) -> pl.DataFrame:
    """A client's ``fetch_bars``: every page of one symbol's bars over New York days ``start``..``end``
    (inclusive) from ``iter_pages``, as one frame. A list, or a symbol ``ingest`` refuses, raises UsageError
    before any request (``several``: how to fetch several instead, for the message); a range that lies in the
    SIP delay asks for nothing."""
    from dataengine.loaders.symbol_loader import clean_symbols, shorten
    from dataengine.storage.layout import empty_bars
    from dataengine.timerange import resolve_range

    if not isinstance(symbol, str):
        raise UsageError(f"fetch_bars takes one symbol, not a {type(symbol).__name__} {shorten(repr(symbol))}: call "
                         f"it once per symbol, or fetch several with {several}")
    (name,) = clean_symbols(symbol, source="symbol")
    rng = resolve_range(start, end, feed=parse_feed(feed))
    if rng.empty:
        return empty_bars()
    frames = [page.bars for page in iter_pages([name], timeframe, rng.start, rng.end, feed=feed, adjustment=adjustment)]
    if not frames:
        return empty_bars()
    import polars as pl

    return pl.concat(frames)
