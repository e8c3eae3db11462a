"""Find what a dataset is missing: sessions with no bar at all (true gaps) versus quiet minutes inside
sessions (normal for thin symbols: Alpaca emits no bar when nothing traded).

A symbol is judged only over the sessions between its first and last stored bar (inside the asked range),
so a listing or delisting inside the range is not a gap. Sessions come from the XNYS calendar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from dataengine import calendar
from dataengine.datasets import DatasetKey
from dataengine.errors import DamagedPartitionError, UsageError
from dataengine.storage import layout
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timeframes import Timeframe
from dataengine.timerange import NEW_YORK, ONE_MICROSECOND, ny_month_end, ny_month_start

if TYPE_CHECKING:
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
    quiet_bars: int = 0  # intraday bars absent inside sessions that have bars (no trade in that interval)
    bars: int = 0
    missing_history: list[str] = field(default_factory=list)  # [first day, last day] never fetched before the history

    @property
    def coverage_pct(self) -> float:
        return 100.0 * self.sessions_with_bars / self.sessions_expected if self.sessions_expected else 100.0

    def asdict(self) -> dict[str, object]:
        return dict(asdict(self), coverage_pct=round(self.coverage_pct, 3))

    @property
    def has_gaps(self) -> bool:
        return bool(self.missing_sessions or self.missing_history)

    def missing_ranges(self) -> list[Interval]:
        """Runs of consecutive missing sessions as UTC ranges (New York days, inclusive), and the history never
        fetched before the first stored bar."""
        history = [(calendar.session_start(date.fromisoformat(self.missing_history[0])),
                    calendar.session_start(date.fromisoformat(self.missing_history[1]) + timedelta(days=1)) - ONE_MICROSECOND)
                   ] if self.missing_history else []
        days = [date.fromisoformat(d) for d in self.missing_sessions]
        runs: list[list[date]] = []
        all_sessions = calendar.sessions(days[0], days[-1]) if days else []
        index = {d: i for i, d in enumerate(all_sessions)}
        for day in days:
            if runs and index[day] == index[runs[-1][-1]] + 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        return history + [
            (calendar.session_start(run[0]), calendar.session_start(run[-1] + timedelta(days=1)) - ONE_MICROSECOND)
            for run in runs
        ]


def find_gaps(
    storage: ParquetStorage,
    key: DatasetKey,
    symbols: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    history_start: date | None = None,
) -> list[SymbolGaps]:
    """Gaps per symbol (all stored symbols when ``symbols`` is None), inside ``[start, end]`` if given.

    With ``history_start`` (where the store's history begins: the ``default_start`` setting) a symbol whose
    fetched history begins later has that stretch reported as ``missing_history``: a sample run's symbol
    whose past was never fetched is a hole, not a listing date."""
    tf = key.timeframe
    if not tf.intraday and tf.unit != "Day":
        raise UsageError("gaps works on intraday and daily timeframes (minute .. day), not week or month")
    stored = layout.symbols_in(storage.dataset_dir(key))
    coverage = CoverageLedger(storage.coverage_path(key))
    reports = []
    for symbol in symbols or stored:
        report = _symbol_gaps(storage, key, tf, symbol, start, end)
        if history_start is not None and report.sessions_expected:
            report.missing_history = _missing_history(coverage, symbol, history_start)
        reports.append(report)
    return reports


def _missing_history(coverage: CoverageLedger, symbol: str, history_start: date) -> list[str]:
    pieces = coverage.pieces().get(symbol)
    if not pieces:
        return []
    first = min(p.start for p in pieces).astimezone(NEW_YORK).date()
    sessions = calendar.sessions(history_start, first - timedelta(days=1)) if first > history_start else []
    return [sessions[0].isoformat(), sessions[-1].isoformat()] if sessions else []


def _symbol_gaps(
    storage: ParquetStorage, key: DatasetKey, tf: Timeframe, symbol: str, start: datetime | None, end: datetime | None
) -> SymbolGaps:
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
    try:
        per_day = (
            stamps.select(pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date().alias("day"))
            .group_by("day")
            .len()
            .collect()
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        damaged = layout.first_damaged(files)
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
    if tf.intraday:
        minutes = tf.minutes or 1
        report.quiet_bars = sum(
            max(0, -(-calendar.extended_minutes(d) // minutes) - counts[d]) for d in expected if d in counts
        )
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
    end: datetime | None = None, *, history_start: date | None = None,
) -> tuple[list[SymbolGaps], IngestResult | None]:
    """``gaps --repair``: under the store's run lock, find the gaps, fetch exactly those sessions again, and
    find again. Returns the gaps that remain and the repair run (None when there was nothing to fetch)."""
    with pipeline.holding_store():
        reports = find_gaps(pipeline.storage, key, symbols, start, end, history_start=history_start)
        ranges = repair_ranges(reports)
        if not ranges:
            return reports, None
        repaired = pipeline.ingest_ranges(ranges, key)
        return find_gaps(pipeline.storage, key, symbols, start, end, history_start=history_start), repaired
