"""Cut a request (symbols x range) into work units that spend few requests and still run in parallel.

Alpaca's multi-symbol endpoint fills each page with up to 10,000 bars across all symbols of a request, so
a unit of S symbols holding B bars costs ceil(B / 10,000) pages: at most one partly-filled page per unit is
wasted. Few large units approach the minimum of ceil(total bars / 10,000) requests; enough units keep every
worker busy. We aim for units of at least ~5 pages (waste <= 20%, ~10% expected) and as many as there are
workers when the work allows it. Symbols with long histories are split into month-aligned time chunks so
each chunk writes whole partitions and can run on its own worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dataengine.timeframes import Timeframe
from dataengine.timerange import NEW_YORK, ONE_MICROSECOND, month_starts, trading_days_estimate

PAGE_BARS = 10_000
MAX_UNIT_BARS = 200_000  # bounds how much one unit re-fetches after a failure
MIN_PAGES_PER_UNIT = 5
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

    def without(self, symbols: set[str]) -> "WorkUnit":
        kept = tuple(s for s in self.symbols if s not in symbols)
        return WorkUnit(kept, self.start, self.end, self.est_bars * len(kept) / max(len(self.symbols), 1))

    def halves(self) -> tuple["WorkUnit", "WorkUnit"]:
        mid = len(self.symbols) // 2
        a, b = self.symbols[:mid], self.symbols[mid:]
        per = self.est_bars / max(len(self.symbols), 1)
        return WorkUnit(a, self.start, self.end, per * len(a)), WorkUnit(b, self.start, self.end, per * len(b))


def estimate_bars(timeframe: Timeframe, start: datetime, end: datetime) -> float:
    """Upper estimate of one liquid symbol's bars in the range."""
    return timeframe.bars_per_session * trading_days_estimate(start, end)


def plan_units(
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    *,
    workers: int = 1,
) -> list[WorkUnit]:
    """Units covering every (symbol, instant) of the request exactly once."""
    if not symbols:
        return []
    per_symbol = max(estimate_bars(timeframe, start, end), 1.0)
    total = per_symbol * len(symbols)
    pages = total / PAGE_BARS
    n_units = max(math.ceil(total / MAX_UNIT_BARS), min(workers, math.floor(pages / MIN_PAGES_PER_UNIT)), 1)
    unit_bars = total / n_units
    if per_symbol > unit_bars * 1.5:
        chunks = _time_chunks(start, end, math.ceil(per_symbol / unit_bars))
        return [
            WorkUnit((symbol,), a, b, per_symbol * (b - a) / max(end - start, ONE_MICROSECOND))
            for symbol in symbols
            for a, b in chunks
        ]
    per_batch = max(1, round(unit_bars / per_symbol))
    units: list[WorkUnit] = []
    batch: list[str] = []
    chars = 0
    for symbol in symbols:
        if batch and (len(batch) >= per_batch or chars + len(symbol) + 1 > MAX_SYMBOL_CHARS):
            units.append(WorkUnit(tuple(batch), start, end, per_symbol * len(batch)))
            batch, chars = [], 0
        batch.append(symbol)
        chars += len(symbol) + 1
    units.append(WorkUnit(tuple(batch), start, end, per_symbol * len(batch)))
    return units


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
    todo: dict[str, tuple[tuple[datetime, datetime], ...]], timeframe: Timeframe, *, workers: int = 1
) -> list[WorkUnit]:
    """Units for per-symbol lists of ranges: symbols missing the same ranges are batched together (the
    nightly case: every symbol misses the same last day), the largest units first to keep workers busy."""
    groups: dict[tuple[tuple[datetime, datetime], ...], list[str]] = {}
    for symbol, spans in todo.items():
        if spans:
            groups.setdefault(tuple(spans), []).append(symbol)
    units = [
        unit
        for spans, symbols in groups.items()
        for start, end in spans
        for unit in plan_units(symbols, timeframe, start, end, workers=workers)
    ]
    return sorted(units, key=lambda u: -u.est_bars)
