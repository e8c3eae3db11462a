"""Cut a request (symbols x range) into work units that spend few requests and still run in parallel.

Page sizes and batching are the source's (:class:`~dataengine.sources.source.SourceInfo`): Alpaca's multi-symbol
endpoint fills each page with up to 10,000 bars across all symbols of a request, so a unit of symbols holding
B bars costs ceil(B / 10,000) requests. A source that takes one symbol per request (Massive: 50,000 minute bars
a page) gets one unit per symbol and range, never cut in time, so a symbol of B bars costs ceil(B / 50,000)
requests exactly. Units are packed to a whole number of pages
by an upper estimate of their bars (exact sessions from the XNYS calendar x bars per session), so a unit
estimated at k pages costs at most k requests and the total stays close to the minimum, ceil(bars / 10,000),
even with many units. There are as many units as workers when the work allows it (latency overlaps);
on a slow plan (requests are the bottleneck) units are at least ``min_pages`` long so fewer pages are
partly filled when symbols trade less than the estimate. Long histories are split into month-aligned time
chunks so each chunk writes whole partitions and can run on its own worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from dataengine import calendar
from dataengine.calendar import lag_cut
from dataengine.errors import DamagedPartitionError
from dataengine.orchestration.request import IngestRequest
from dataengine.sources.source import ALPACA, PAGE_BARS, SourceInfo
from dataengine.storage.coverage import CoverageLedger, Interval
from dataengine.storage.footer_index import FooterCache
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timeframes import Timeframe
from dataengine.timerange import NEW_YORK, ONE_MICROSECOND, TimeRange, month_starts, ny_month_end, ny_month_start

MAX_UNIT_PAGES = 20  # bounds how much one unit re-fetches after a failure
MAX_SYMBOL_CHARS = 3_000  # keeps the query string far below URL limits (HTTP 414 seen at ~8 KB)


@dataclass(frozen=True)
class WorkUnit:
    """One stream of pages: a set of symbols over one time range (UTC, inclusive)."""

    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    est_bars: float

    @property
    def label(self) -> str:
        who = self.symbols[0] if len(self.symbols) == 1 else f"{len(self.symbols)} symbols"
        first = self.start.astimezone(NEW_YORK).strftime("%Y-%m-%d")
        last = self.end.astimezone(NEW_YORK).strftime("%Y-%m-%d")
        return f"{who} {first}" if first == last else f"{who} {first}..{last}"

    def without(self, symbols: set[str]) -> WorkUnit:
        kept = tuple(s for s in self.symbols if s not in symbols)
        return WorkUnit(kept, self.start, self.end, self.est_bars * len(kept) / max(len(self.symbols), 1))

    def halves(self) -> tuple[WorkUnit, WorkUnit]:
        mid = len(self.symbols) // 2
        a, b = self.symbols[:mid], self.symbols[mid:]
        per = self.est_bars / max(len(self.symbols), 1)
        return WorkUnit(a, self.start, self.end, per * len(a)), WorkUnit(b, self.start, self.end, per * len(b))


def estimate_bars(timeframe: Timeframe, start: datetime, end: datetime) -> float:
    """Upper estimate of one liquid symbol's bars in the range: its sessions times bars per session."""
    first, last = start.astimezone(NEW_YORK).date(), end.astimezone(NEW_YORK).date()
    return timeframe.bars_per_session * max(len(calendar.sessions(first, last)), 0.05)


def plan_units(
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    *,
    workers: int = 1,
    min_pages: int = 1,
    info: SourceInfo = ALPACA,
) -> list[WorkUnit]:
    """Units covering every (symbol, instant) of the request exactly once, sized by ``info``'s pages."""
    if not symbols:
        return []
    per_symbol = max(estimate_bars(timeframe, start, end), 1.0)
    if info.symbols_per_request == 1:  # pages never span symbols: a unit per symbol, whole, wastes no page
        return [WorkUnit((symbol,), start, end, per_symbol) for symbol in symbols]
    page_bars = info.bars_per_page(timeframe)
    total_pages = math.ceil(per_symbol * len(symbols) / page_bars)
    # ceil: at most one unit per worker, so every unit runs in the first wave (floor left a short second one)
    pages = min(MAX_UNIT_PAGES, max(1, min_pages, math.ceil(total_pages / max(workers, 1))))
    unit_bars = pages * page_bars
    if per_symbol > 1.5 * unit_bars:  # a history barely over budget stays whole: two halves cost more pages
        chunks = _time_chunks(start, end, math.ceil(per_symbol / unit_bars))
        return [
            WorkUnit((symbol,), a, b, per_symbol * (b - a) / max(end - start, ONE_MICROSECOND))
            for symbol in symbols
            for a, b in chunks
        ]
    # Greedy full batches: each fills its page budget by estimate; only the last one may be short.
    per_batch = max(1, math.floor(unit_bars / per_symbol))
    units: list[WorkUnit] = []
    for i in range(0, len(symbols), per_batch):
        for part in symbol_batches(symbols[i : i + per_batch], info):
            units.append(WorkUnit(tuple(part), start, end, per_symbol * len(part)))  # noqa: PERF401 - nested loops
    return units


def symbol_batches(symbols: Sequence[str], info: SourceInfo = ALPACA) -> list[list[str]]:
    """``symbols`` in the batches one request of ``info``'s source takes: ``symbols_per_request`` at a time,
    or (many) as many as keep a request's URL far below server limits."""
    if info.symbols_per_request is not None:
        step = info.symbols_per_request
        return [list(symbols[i : i + step]) for i in range(0, len(symbols), step)] or [[]]
    return within_url_limit(symbols)


def within_url_limit(symbols: Sequence[str]) -> list[list[str]]:
    """``symbols`` in batches whose comma-joined length keeps a request's URL far below server limits."""
    parts: list[list[str]] = [[]]
    chars = 0
    for symbol in symbols:
        if parts[-1] and chars + len(symbol) + 1 > MAX_SYMBOL_CHARS:
            parts.append([])
            chars = 0
        parts[-1].append(symbol)
        chars += len(symbol) + 1
    return parts


def _time_chunks(start: datetime, end: datetime, k: int) -> list[tuple[datetime, datetime]]:
    """Split [start, end] into about k contiguous pieces, on New York month boundaries when there are enough
    months (so chunks write disjoint partitions), else evenly."""
    boundaries = [m for m in month_starts(start, end) if start < m <= end]
    if len(boundaries) + 1 >= k:
        step = (len(boundaries) + 1) / k
        cuts = sorted({boundaries[min(len(boundaries) - 1, round(step * i) - 1)] for i in range(1, k)})
    else:
        cuts = [start + (end - start) * i / k for i in range(1, k)]
    edges = [start, *cuts]
    return [(a, (edges[i + 1] - ONE_MICROSECOND) if i + 1 < len(edges) else end) for i, a in enumerate(edges)]


def plan_todo(
    todo: dict[str, tuple[tuple[datetime, datetime], ...]], timeframe: Timeframe, *, workers: int = 1, min_pages: int = 1,
    info: SourceInfo = ALPACA,
) -> list[WorkUnit]:
    """Units for per-symbol lists of ranges: symbols missing the same ranges are batched together (the
    nightly case: every symbol misses the same last day), in the order :func:`whole_symbols_first` gives."""
    groups: dict[tuple[tuple[datetime, datetime], ...], list[str]] = {}
    for symbol, spans in todo.items():
        if spans:
            groups.setdefault(tuple(spans), []).append(symbol)
    units = [
        unit
        for spans, symbols in groups.items()
        for start, end in spans
        for unit in plan_units(symbols, timeframe, start, end, workers=workers, min_pages=min_pages, info=info)
    ]
    return whole_symbols_first(units, list(todo))


def whole_symbols_first(units: list[WorkUnit], symbols: Sequence[str]) -> list[WorkUnit]:
    """The order units run in (the pool takes them first come, first served): symbol by symbol in the order
    of ``symbols`` (the request's), every unit of a symbol or batch next to the others, its most recent
    stretch first.

    So a run stopped at any point leaves whole symbols: the first ones complete over the whole range, at
    most about two symbols' worth of chunks in flight, and the rest untouched. (Largest first, as before,
    fetched the same slice of every symbol first: hours into a long run no symbol was complete.) The units
    themselves, and so the pages and requests they cost, do not change."""
    rank = {symbol: i for i, symbol in enumerate(symbols)}
    return sorted(units, key=lambda u: (min(rank.get(s, len(rank)) for s in u.symbols), -u.end.timestamp()))


# -- from a request and what the store holds, to units ----------------------------------------------------

SLOW_PLAN_RPM = 1_000  # at or below this many requests per minute (the source's pace), requests are what a run waits for
SLOW_PLAN_MIN_PAGES = 5


@dataclass(frozen=True)
class Plan:
    """What a run will fetch: per-symbol missing ranges and the work units covering them."""

    todo: dict[str, tuple[Interval, ...]]
    units: list[WorkUnit]
    damaged: dict[str, str] = field(default_factory=dict)  # symbol -> the damaged file it cannot be merged into
    info: SourceInfo = ALPACA  # the source the units are sized for
    page_bars: int = PAGE_BARS  # the most bars of the request's size one of its pages holds

    @property
    def up_to_date(self) -> list[str]:
        return sorted(s for s, spans in self.todo.items() if not spans and s not in self.damaged)

    def summary(self) -> dict[str, object]:
        est_bars = sum(u.est_bars for u in self.units)
        return {
            "symbols": len(self.todo),
            "symbols_to_fetch": sum(1 for spans in self.todo.values() if spans),
            "symbols_up_to_date": len(self.up_to_date),
            "units": len(self.units),
            "est_bars_max": round(est_bars),
            "est_requests_max": _max_requests(self.units, self.info, self.page_bars),
            # every run asks for all its symbols' corporate actions, up to date or not: at least this many more
            "est_action_requests_min": len(symbol_batches(sorted(self.todo), self.info)) * self.info.action_requests_per_batch
            if self.info.corporate_actions and self.todo else 0,
            "source": self.info.name,
            "todo": {s: [[a.isoformat(), b.isoformat()] for a, b in spans] for s, spans in self.todo.items()},
        }


def plan_request(
    request: IngestRequest,
    storage: ParquetStorage,
    coverage: CoverageLedger,
    *,
    workers: int,
    requests_per_minute: int,
    persist: bool = False,
) -> Plan:
    """Per-symbol ranges still to fetch (the request minus trusted coverage), and the units that fetch them.

    ``persist``: record adopted coverage (bars stored without a coverage record) in the ledger, as a run does;
    a dry run keeps it in memory."""
    todo, damaged = fetch_todo(request, storage, coverage, persist=persist)
    todo = {s: (() if s in damaged else spans) for s, spans in todo.items()}
    info = request.info
    page_bars = info.bars_per_page(request.timeframe)
    units = plan_todo(todo, request.timeframe, workers=workers, info=info)
    # A job that fits in one rate-limit window is bound by round trips: as many units as workers. A longer
    # one on a slow plan is bound by requests: fewer, longer units leave fewer partly-filled pages.
    if requests_per_minute <= SLOW_PLAN_RPM and _max_requests(units, info, page_bars) > requests_per_minute:
        units = plan_todo(todo, request.timeframe, workers=workers, min_pages=SLOW_PLAN_MIN_PAGES, info=info)
    return Plan(todo, units, damaged, info, page_bars)


def fetch_todo(
    request: IngestRequest, storage: ParquetStorage, coverage: CoverageLedger, *, persist: bool = False
) -> tuple[dict[str, tuple[Interval, ...]], dict[str, str]]:
    """The one answer to "what is missing": per symbol, the ranges a run of ``request`` fetches, and the
    symbols it cannot fetch (a damaged partition: symbol -> why).

    The stored partitions are checked first (one deleted by hand loses its coverage), bars stored without a
    coverage record are adopted, then each symbol gets the request's range minus what coverage trusts."""
    rng = request.range
    damaged: dict[str, str] = {}
    if request.ranges is None:
        damaged = _check_partitions(request, storage, coverage, persist)
    if request.ranges is not None:
        return {s: tuple(request.ranges.get(s, ())) for s in request.symbols}, damaged
    if rng.empty:
        return {s: () for s in request.symbols}, damaged
    if request.full_refresh:
        return {s: ((rng.start, rng.end),) for s in request.symbols}, damaged
    _adopt_untracked(request, storage, coverage, persist)
    # Whatever the symbol's stored history: the whole range minus what coverage holds. Without --start that is
    # the default start on, so a sample run's symbol still gets its missing past (once: a symbol listed later
    # costs one empty request, then its coverage says so).
    return {s: tuple(coverage.remaining(s, rng.start, rng.end, request.lag)) for s in request.symbols}, damaged


def never_fetched(request: IngestRequest, storage: ParquetStorage, coverage: CoverageLedger, *,
                  now: datetime | None = None) -> dict[str, tuple[Interval, ...]]:
    """What ``gaps`` and ``status`` call missing: per symbol, what a run of ``request`` would fetch
    (:func:`fetch_todo`), less the re-fetch window. Bars already stored count as held even where the run would
    fetch them again for late corrections, and the ``request.lag`` most recent sessions that had begun by
    ``now`` (default: the clock; the moment the request was made for) are not judged yet (the next run fetches
    them whatever is stored). Both ends count: the history before the first stored bar and the stretch after
    the last one. Reads the store, writes nothing."""
    rng = request.range
    # The window is counted from now, not from the request's end: a plan may have pulled that end back (Massive's
    # free plan ends before today), and counted from there the last session the plan serves was left out too, so
    # gaps --repair stopped a session short of what the server had (a user's trial).
    end = min(rng.end, lag_cut(max(rng.end, now or datetime.now(timezone.utc)), request.lag) - ONE_MICROSECOND)
    if end < rng.start or rng.empty:
        return {s: () for s in request.symbols}
    judged = replace(request, range=TimeRange(rng.start, end), lag=0, full_refresh=False)
    return fetch_todo(judged, storage, coverage, persist=False)[0]


def _max_requests(units: list[WorkUnit], info: SourceInfo = ALPACA, per_page: int = PAGE_BARS) -> int:
    """Requests the units cost at most (each unit's bars are an upper estimate): ceil(bars / page) per unit, or
    per symbol of a unit for a source that takes one symbol per request."""
    if info.symbols_per_request == 1:
        return sum(len(u.symbols) * math.ceil(max(u.est_bars / max(len(u.symbols), 1), 1) / per_page) for u in units)
    return sum(math.ceil(max(u.est_bars, 1) / per_page) for u in units)


def _check_partitions(request: IngestRequest, storage: ParquetStorage, coverage: CoverageLedger, persist: bool) -> dict[str, str]:
    """Check the footers of the request's symbols' partitions before trusting coverage for them (only the
    footers that changed since they were last indexed are read). A partition that was written once and is
    gone (deleted by hand) loses its coverage, so this run fetches it again; a damaged one fails its symbol
    with a pointer to ``verify --repair``, because merging into it would fail anyway."""
    dataset = request.dataset.dirname
    if not storage.dataset_dir(request.dataset).is_dir():
        # the folder gone whole (deleted to fetch it afresh; on S3 its every object deleted): each partition
        # its latest version held is gone as one deleted alone would be, or the run would call it up to date
        from dataengine.storage.versions import VersionTable, latest_partitions

        for symbol, year, month in latest_partitions(VersionTable.of(storage.root, dataset), request.symbols):
            coverage.forget(symbol, ny_month_start(year, month), ny_month_end(year, month), persist=persist)
        return {}
    index = FooterCache(storage.root)
    index.partitions([dataset], list(request.symbols), persist=persist)
    for symbol, year, month in index.gone.select("symbol", "year", "month").iter_rows():
        coverage.forget(symbol, ny_month_start(year, month), ny_month_end(year, month), persist=persist)
    return {
        symbol: str(DamagedPartitionError(path))
        for symbol, path in index.unreadable.select("symbol", "path").iter_rows()
    }


def _adopt_untracked(request: IngestRequest, storage: ParquetStorage, coverage: CoverageLedger, persist: bool) -> None:
    """Bars stored without a coverage record (``ParquetStorage.store``, older versions) count as covered from
    their first month to their last bar, fetched when the last file was written."""
    known = coverage.pieces()
    for symbol in request.symbols:
        if symbol in known:
            continue
        extent = storage.extent(request.dataset, symbol)
        if extent is not None:
            first, last, written = extent
            coverage.record(symbol, first, last, written, persist=persist)
