"""What a run needs from a data source: pages of bars for symbols over a range, with counters.

Alpaca is the one source today (:class:`dataengine.api.alpaca_client.AlpacaClient`); another source is a class
with these methods, plus a :class:`SourceFactory` that makes one per worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

import polars as pl

from dataengine.counters import RequestCounts

if TYPE_CHECKING:
    from dataengine.timeframes import Timeframe

# The most bars a page may hold, counted across all symbols of a request (Alpaca's `limit` maximum): a request
# for N bars costs ceil(N / PAGE_BARS) pages, which is what the planner packs units by.
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
        (:data:`dataengine.corporate_actions.ACTION_SCHEMA`). A source without them may omit this method."""
        ...

    def close(self) -> None: ...


class SourceFactory(Protocol):
    """Makes a worker's source; sources made by one factory share its pacing (one per run)."""

    def __call__(self, *, stop: threading.Event, on_wait: WaitHook | None) -> BarSource: ...
