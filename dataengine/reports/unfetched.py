"""What the reports call never fetched: the planner's own answer, as the sessions a person reads.

``gaps`` and ``status SYMBOL`` do not work out on their own what a store is missing: they ask the planner
(:func:`dataengine.orchestration.planner.never_fetched`) what the default run (``default_start`` to now) would
fetch, less the re-fetch window, and show it as ranges of sessions. So a store filled only up to March
reports both the history before its first bar and everything after its last one, exactly as ``ingest
--dry-run`` would fetch them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from dataengine import calendar
from dataengine.datasets import DatasetKey
from dataengine.errors import UsageError
from dataengine.orchestration.planner import never_fetched
from dataengine.orchestration.request import IngestOptions, build_request
from dataengine.storage.coverage import CoverageLedger, Interval
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timerange import DEFAULT_START, NEW_YORK, ONE_MICROSECOND, SIP_SAFE_DELAY_MINUTES

if TYPE_CHECKING:
    from dataengine.config import Settings

SessionRange = list[str]  # [first session, last session], ISO dates, both included


def never_fetched_sessions(
    storage: ParquetStorage,
    key: DatasetKey,
    symbols: Sequence[str],
    *,
    history_start: date = DEFAULT_START,
    sip_delay_minutes: int = SIP_SAFE_DELAY_MINUTES,
    lag: int = 1,
    start: datetime | None = None,
    end: datetime | None = None,
    settings: Settings | None = None,
    coverage: CoverageLedger | None = None,
    now: datetime | None = None,
) -> dict[str, list[SessionRange]]:
    """Per symbol, the session ranges a default run of ``key`` (from ``history_start`` to now, with the
    dataset's feed, ``sip_delay_minutes`` and ``lag``; with ``settings``, the history and plan limits of the
    dataset's source, as a run has them) would fetch because they were never fetched; only the part inside
    ``[start, end]`` when given. Stretches without a session (a weekend) are left out. Reads the store, writes
    nothing. ``coverage``: the dataset's ledger when the caller reads it too (the planner's in-memory changes,
    bars stored without a record adopted, are left in it; nothing is written). ``now``: the moment judged
    (default: the clock)."""
    if not symbols:
        return {}
    feed = (storage.dataset_info(key) or {}).get("feed", "sip")
    limits = None
    if settings is not None:
        from dataengine.orchestration import sources

        today = (now or datetime.now(timezone.utc)).astimezone(NEW_YORK).date()
        history_start = sources.history_start(settings, key.source, today)
        limits = sources.limits(settings, key.source, today)
    options = IngestOptions(feed=feed, adjustment=key.adjustment, lag=lag, source=key.source)
    try:
        request = build_request(symbols, history_start, None, key.timeframe, options,
                                sip_delay_minutes=sip_delay_minutes, limits=limits, now=now)
    except UsageError:  # nothing a run could ask for now (a plan serving nothing of this range yet)
        return {symbol: [] for symbol in symbols}
    todo = never_fetched(request, storage, coverage or CoverageLedger(storage.coverage_path(key)), now=now)
    return {symbol: session_ranges(spans, start, end) for symbol, spans in todo.items()}


def session_ranges(spans: Sequence[Interval], start: datetime | None = None, end: datetime | None = None) -> list[SessionRange]:
    """UTC spans (clipped to ``[start, end]``) as [first session, last session] of the New York days they touch."""
    out: list[SessionRange] = []
    for a, b in spans:
        a, b = max(a, start) if start else a, min(b, end) if end else b
        if a > b:
            continue
        days = calendar.sessions(a.astimezone(NEW_YORK).date(), b.astimezone(NEW_YORK).date())
        if days:
            out.append([days[0].isoformat(), days[-1].isoformat()])
    return out


def as_interval(sessions: SessionRange) -> Interval:
    """[first session, last session] as the UTC range of those whole New York days."""
    first, last = date.fromisoformat(sessions[0]), date.fromisoformat(sessions[1])
    return calendar.session_start(first), calendar.session_start(last + timedelta(days=1)) - ONE_MICROSECOND


def month_never_fetched(month: str, ranges: Sequence[SessionRange]) -> bool:
    """Whether every session of ``month`` (``YYYY-MM``) lies in one of the never-fetched ``ranges``: such a
    month has no partition because no run asked for it, which ``status`` says once, as never fetched."""
    first = date.fromisoformat(f"{month}-01")
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    days = [d.isoformat() for d in calendar.sessions(first, following - timedelta(days=1))]
    return bool(days) and all(in_ranges(day, ranges) for day in days)


def split_fetched_once(ranges: Sequence[SessionRange], fetched: Sequence[Interval]) -> tuple[list[SessionRange], list[SessionRange]]:
    """The session ``ranges`` a run would fetch, split into (never fetched, fetched once): a session inside one
    of the ledger's ``fetched`` spans was fetched and its file is gone since (deleted by hand, or a month
    a repair set aside); the planner fetches both alike, but a person reads them differently."""
    never: list[SessionRange] = []
    once: list[SessionRange] = []
    for first, last in ranges:
        lo, hi = as_interval([first, last])
        touching = [(a, b) for a, b in fetched if a <= hi and lo <= b]
        if not touching:  # the usual case (history before the first bar): no day to look at
            never.append([first, last])
            continue
        previous: list[SessionRange] | None = None  # the list the session before went to: a run goes on there
        for day in calendar.sessions(date.fromisoformat(first), date.fromisoformat(last)):
            a, b = as_interval([day.isoformat(), day.isoformat()])
            into = once if any(start <= a and b <= end for start, end in touching) else never
            if into is previous:
                into[-1][1] = day.isoformat()
            else:
                into.append([day.isoformat(), day.isoformat()])
            previous = into
    return never, once


def in_ranges(day: str, ranges: Sequence[SessionRange]) -> bool:
    """Whether an ISO day lies in one of the [first, last] session ranges (both included)."""
    return any(a <= day <= b for a, b in ranges)

