"""Find what a dataset is missing: sessions with no bar at all (true gaps) versus quiet minutes inside
sessions (normal for thin symbols: Alpaca emits no bar when nothing traded), and what was never fetched.

Quiet minutes are counted only where a bar could have been stored: minutes inside what the coverage ledger
says was fetched (:mod:`dataengine.storage.coverage`) that had ended when they were fetched and by now. A
session fetched up to noon is judged over its morning; its afternoon is never fetched, not quiet, and the
minutes of a session still under way are not judged until a run has fetched them.

Sessions with no bar are judged only between a symbol's first and last stored bar (inside the asked range),
so a listing or delisting inside the range is not a gap. What was never fetched, before the first stored bar
and after the last one, is what the planner says the default run would fetch (:mod:`.unfetched`): a listing
after ``default_start`` was fetched (empty) and is not missing; a store filled only up to March is.
Sessions come from the XNYS calendar.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from dataengine import calendar
from dataengine.datasets import DatasetKey
from dataengine.errors import DamagedPartitionError, UsageError
from dataengine.reports.unfetched import as_interval, in_ranges, never_fetched_sessions, split_fetched_once
from dataengine.storage import footer_index, layout
from dataengine.storage.coverage import CoverageLedger, merge_intervals
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timeframes import Timeframe
from dataengine.timerange import DEFAULT_START, NEW_YORK, SIP_SAFE_DELAY_MINUTES, ny_month_end, ny_month_start

if TYPE_CHECKING:
    from dataengine.config import Settings
    from dataengine.orchestration.ingestion_pipeline import IngestionPipeline
    from dataengine.orchestration.result import IngestResult

Interval = tuple[datetime, datetime]


@dataclass
class SymbolGaps:
    symbol: str
    first_session: str | None = None
    last_session: str | None = None
    sessions_expected: int = 0
    sessions_with_bars: int = 0
    missing_sessions: list[str] = field(default_factory=list)  # true gaps, ISO dates
    # intraday bars absent inside sessions that have bars (no trade in that interval), counted only over the
    # minutes that were fetched and had ended (a session fetched to noon: its morning)
    quiet_bars: int = 0
    bars: int = 0
    # [first session, last session] ranges the default run would fetch because they were never fetched (both
    # ends: before the first stored bar and after the last one), less the re-fetch window
    never_fetched: list[list[str]] = field(default_factory=list)
    # ranges a run fetched once whose partitions are gone since (deleted by hand): fetched again as the others
    fetched_once: list[list[str]] = field(default_factory=list)
    missing_history: list[str] = field(default_factory=list)  # the never-fetched range before the first stored bar

    @property
    def coverage_pct(self) -> float:
        return 100.0 * self.sessions_with_bars / self.sessions_expected if self.sessions_expected else 100.0

    def asdict(self) -> dict[str, object]:
        return dict(asdict(self), coverage_pct=round(self.coverage_pct, 3))

    @property
    def has_gaps(self) -> bool:
        return bool(self.missing_sessions or self.never_fetched or self.fetched_once)

    def missing_ranges(self) -> list[Interval]:
        """Runs of consecutive missing sessions and the ranges never fetched, as merged UTC ranges (New York
        days, inclusive)."""
        days = [date.fromisoformat(d) for d in self.missing_sessions]
        runs: list[list[date]] = []
        all_sessions = calendar.sessions(days[0], days[-1]) if days else []
        index = {d: i for i, d in enumerate(all_sessions)}
        for day in days:
            if runs and index[day] == index[runs[-1][-1]] + 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        return merge_intervals([
            *(as_interval(r) for r in [*self.never_fetched, *self.fetched_once]),
            *(as_interval([run[0].isoformat(), run[-1].isoformat()]) for run in runs),
        ])


def require_gap_timeframe(key: DatasetKey) -> Timeframe:
    """Gaps are sessions without a bar: only bar sizes of a session or less have them (UsageError else)."""
    if not key.timeframe.intraday and key.timeframe.unit != "Day":
        raise UsageError("gaps works on intraday and daily timeframes (minute .. day), not week or month")
    return key.timeframe


def find_gaps(
    storage: ParquetStorage,
    key: DatasetKey,
    symbols: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    history_start: date | None = DEFAULT_START,
    sip_delay_minutes: int = SIP_SAFE_DELAY_MINUTES,
    lag: int = 1,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> list[SymbolGaps]:
    """Gaps per symbol (all stored symbols when ``symbols`` is None), inside ``[start, end]`` if given.

    ``history_start`` (where the store's history begins: the ``default_start`` setting), ``sip_delay_minutes``
    and ``lag`` describe the default run: what it would fetch because it was never fetched is reported as
    ``never_fetched`` (at both ends of the stored bars), so a sample run's symbol whose past was never fetched,
    or a store filled only up to March, is a hole and not a listing date. ``history_start=None`` judges only
    the sessions between the first and last stored bar. ``settings``: judge as a run of the dataset's source
    on the user's plan would (its history start and limits: Massive's free plan serves about two years).
    ``now``: the moment judged (default: the clock): minutes that had not ended by then are not judged quiet, and
    the re-fetch window is the ``lag`` sessions that had begun by then."""
    tf = require_gap_timeframe(key)
    wanted = symbols or layout.symbols_in(storage.dataset_dir(key))
    # one ledger for both questions: read once, and as the planner leaves it (bars stored without a record adopted)
    coverage = CoverageLedger(storage.coverage_path(key))
    # what the ledger says was fetched, before the planner drops the months whose file is gone (in memory)
    recorded = {symbol: [(p.start, p.end) for p in pieces] for symbol, pieces in coverage.pieces().items()}
    unfetched = never_fetched_sessions(
        storage, key, wanted, history_start=history_start, sip_delay_minutes=sip_delay_minutes, lag=lag,
        start=start, end=end, settings=settings, coverage=coverage, now=now,
    ) if history_start is not None else {}
    judge = _Judge(storage, key, coverage, tf, start, end, now or datetime.now(timezone.utc))
    reports = []
    for symbol in wanted:
        report = _symbol_gaps(judge, symbol)
        report.never_fetched, report.fetched_once = split_fetched_once(unfetched.get(symbol, []), recorded.get(symbol, []))
        # A session inside a never-fetched range has no bar because no run asked for it: it is listed there
        # (a run fills it), not again as a missing session (a hole the source left in what was fetched).
        report.missing_sessions = [
            day for day in report.missing_sessions
            if not in_ranges(day, report.never_fetched) and not in_ranges(day, report.fetched_once)
        ]
        head = report.never_fetched[:1]
        if head and (report.first_session is None or head[0][1] < report.first_session):
            report.missing_history = head[0]
        reports.append(report)
    return reports


@dataclass(frozen=True)
class _Judge:
    """Where a find_gaps call judges quiet minutes: fetched, ended by their fetch and by ``now``, in [start, end]."""

    storage: ParquetStorage
    key: DatasetKey
    coverage: CoverageLedger
    tf: Timeframe
    start: datetime | None
    end: datetime | None
    now: datetime

    @property
    def step(self) -> timedelta:
        return timedelta(minutes=self.tf.minutes or 1)

    def spans(self, symbol: str) -> list[Interval]:
        """The merged UTC spans whose bar slots are judged. A bar of ``[t, t + step)`` exists only once it ended,
        so a piece fetched at F holds the slots up to ``F - step``. Bars stored without a coverage record are
        judged as the planner adopts them: from their first month to their last bar."""
        recorded = self.coverage.pieces()
        pieces = recorded.get(symbol, [])
        spans = [(p.start, min(p.end, p.fetched - self.step)) for p in pieces]
        if symbol not in recorded:  # as the planner adopts (a symbol whose pieces were all dropped is not new)
            extent = self.storage.extent(self.key, symbol)
            spans = [extent[:2]] if extent else []
        low, high = self.start or _EPOCH, min(self.now - self.step, self.end or self.now)
        clipped = [(max(a, low), min(b, high)) for a, b in merge_intervals(spans)]
        return [(a, b) for a, b in clipped if a <= b]

    def slots(self, day: date, spans: list[Interval]) -> int:
        """Bar slots of ``day``'s extended hours (04:00 New York on, one per ``step``) whose start is in ``spans``."""
        step, count = self.step, -(-calendar.extended_minutes(day) // (self.tf.minutes or 1))
        opens = datetime.combine(day, calendar.EXTENDED_OPEN, NEW_YORK).astimezone(timezone.utc)
        closes = opens + step * count
        total = 0
        for a, b in spans[max(0, bisect_right(spans, (opens,)) - 1):]:
            if a >= closes:
                break
            first, last = max(0, -((opens - a) // step)), min(count - 1, (b - opens) // step)
            total += max(0, last - first + 1)
        return total

    def judged(self, spans: list[Interval]) -> pl.Expr:
        """Whether a stored bar lies in ``spans`` (only those answer for the judged slots)."""
        return pl.any_horizontal([pl.col("timestamp").is_between(a, b) for a, b in spans]) if spans else pl.lit(False)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _symbol_gaps(judge: _Judge, symbol: str) -> SymbolGaps:
    storage, key, tf, start, end = judge.storage, judge.key, judge.tf, judge.start, judge.end
    report = SymbolGaps(symbol)
    files = [
        path
        for _, year, month, path in storage.iter_partitions(key, symbol)
        if _month_overlaps(year, month, start, end)
    ]
    if not files:
        return report
    stamps = storage.root.store.scan_parquet([f.key for f in files]).select("timestamp")
    if start is not None:
        stamps = stamps.filter(pl.col("timestamp") >= start)
    if end is not None:
        stamps = stamps.filter(pl.col("timestamp") <= end)
    spans = judge.spans(symbol) if tf.intraday else []
    try:
        per_day = (
            stamps.select(pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date().alias("day"),
                          judge.judged(spans).alias("judged"))
            .group_by("day")
            .agg(pl.len().alias("len"), pl.col("judged").sum())
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        damaged = footer_index.first_damaged(files)
        raise DamagedPartitionError(*(damaged or (files[0], str(exc))), symbol=symbol) from None
    if per_day.is_empty():
        return report
    counts: dict[date, int] = dict(zip(per_day["day"].to_list(), per_day["len"].to_list(), strict=False))
    first, last = min(counts), max(counts)
    expected = calendar.sessions(first, last)
    report.first_session, report.last_session = first.isoformat(), last.isoformat()
    report.sessions_expected = len(expected)
    report.sessions_with_bars = sum(1 for d in expected if d in counts)
    report.missing_sessions = [d.isoformat() for d in expected if d not in counts]
    report.bars = int(per_day["len"].sum())
    if tf.intraday:  # bars outside the judged spans (few: a clock behind the store's) answer for no slot
        judged: dict[date, int] = dict(zip(per_day["day"].to_list(), per_day["judged"].to_list(), strict=False))
        report.quiet_bars = sum(max(0, judge.slots(d, spans) - judged[d]) for d in expected if d in counts)
    return report


def _month_overlaps(year: int, month: int, start: datetime | None, end: datetime | None) -> bool:
    if start is not None and ny_month_end(year, month) < start:
        return False
    return not (end is not None and ny_month_start(year, month) > end)


def repair_ranges(reports: list[SymbolGaps]) -> dict[str, list[Interval]]:
    """What to fetch again to close the true gaps found: per symbol, its runs of missing sessions."""
    return {r.symbol: r.missing_ranges() for r in reports if r.has_gaps}


def repair_gaps(
    pipeline: IngestionPipeline, key: DatasetKey, symbols: list[str] | None = None, start: datetime | None = None,
    end: datetime | None = None, *, history_start: date | None = DEFAULT_START, lag: int = 1,
    now: datetime | None = None,
) -> tuple[list[SymbolGaps], IngestResult | None]:
    """``gaps --repair``: under the store's run lock, find the gaps, fetch exactly those sessions again (and
    what was never fetched), and find again. Returns the gaps that remain and the repair run (None when there
    was nothing to fetch). ``now``: the moment the gaps are judged at (default: the clock)."""
    options: dict[str, Any] = {"history_start": history_start, "lag": lag, "now": now,
                               "sip_delay_minutes": pipeline.settings.sip_delay_minutes, "settings": pipeline.settings}
    with pipeline.holding_store():
        reports = find_gaps(pipeline.storage, key, symbols, start, end, **options)
        ranges = repair_ranges(reports)
        if not ranges:
            return reports, None
        repaired = pipeline.ingest_ranges(ranges, key)
        return find_gaps(pipeline.storage, key, symbols, start, end, **options), repaired
