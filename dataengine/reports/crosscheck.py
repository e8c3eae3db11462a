"""One vendor's stored bars checked against another's: ``dataengine verify --against SOURCE``.

For each symbol-month a dataset holds (all of them, or ``sample`` of them, chosen by a seeded draw so a check
can be repeated), the same instants are fetched from the other source, never stored, and compared bar by bar
on their start time: bars only one side has, open/high/low/close differing by more than a relative
``price`` tolerance, volume by more than a relative ``volume`` tolerance. Vendors' tapes differ slightly (trade
conditions, odd lots, late corrections), so a symbol-month is flagged only when more than a ``share`` of its
bars differ; every count and the largest differences are reported either way, and nothing is guessed or
mended. The compared window is what the store covers of the month (its coverage ledger) and what the other
source serves on the user's plan (its history and delay): a month still being filled is compared up to
where it was fetched.

The store is only read (a version-consistent ``read_bars``); no lock is taken and nothing is written.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from dataengine.datasets import DatasetKey
from dataengine.errors import TerminalSourceError, TransientSourceError, UsageError
from dataengine.read.bars import read_bars
from dataengine.sources.source import source_info
from dataengine.storage import dataset_record, layout
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.store import StorePath
from dataengine.timeframes import MONTH, WEEK
from dataengine.timerange import NEW_YORK, ONE_MICROSECOND, ny_midnight, ny_month_end, ny_month_start

if TYPE_CHECKING:
    from dataengine.orchestration.sources import SourceLimits
    from dataengine.sources.source import BarSource, SourceFactory

PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Tolerances:
    """When two vendors' bars count as the same: relative differences of each price (``price``, 0.002 = 0.2 %)
    and of volume (``volume``, 0.10 = 10 %); a symbol-month is flagged when more than ``share`` of its bars
    (0.01 = 1 %) differ beyond them or are on one side only."""

    price: float = 0.002
    volume: float = 0.10
    share: float = 0.01


@dataclass
class MonthCheck:
    """One symbol-month compared: counts on each side, the differences beyond the tolerances, the largest
    relative differences, a few examples; ``flagged`` when beyond the thresholds; ``error`` when the other
    source could not be asked (then nothing was compared); ``skipped`` (why) when it serves nothing of the month
    on the user's plan, or the store covers none of it. ``stored``: the stored bars of the compared window, or
    of what the store covers of the month when nothing was compared."""

    symbol: str
    month: str  # YYYY-MM, New York
    start: str = ""  # the compared window, UTC
    end: str = ""
    stored: int = 0
    other: int = 0
    matched: int = 0
    only_stored: int = 0
    only_other: int = 0
    price_differs: int = 0
    volume_differs: int = 0
    max_price_diff: float = 0.0
    max_volume_diff: float = 0.0
    examples: list[str] = field(default_factory=list)
    flagged: bool = False
    error: str | None = None
    skipped: str | None = None


@dataclass
class CrossCheckReport:
    """What :func:`crosscheck` found; ``ok`` when no symbol-month is flagged and every one could be asked."""

    dataset: str
    source: str
    against: str
    tolerances: Tolerances
    months: list[MonthCheck] = field(default_factory=list)
    requests: int = 0
    elapsed_s: float = 0.0

    @property
    def flagged(self) -> int:
        return sum(1 for m in self.months if m.flagged or m.error)

    @property
    def ok(self) -> bool:
        return self.flagged == 0

    @property
    def compared(self) -> int:
        """The symbol-months whose bars were compared (neither skipped nor failed)."""
        return sum(1 for m in self.months if not m.skipped and not m.error)

    def asdict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged, "ok": self.ok, "compared": self.compared}


def nothing_compared(reports: list[CrossCheckReport]) -> str | None:
    """Why ``reports`` compared no bar at all, on one line (None when one did, or a request failed: that is
    a flagged month). A check that compares nothing must not pass as one that found nothing wrong."""
    if any(r.compared or r.flagged for r in reports):
        return None
    months = [m for r in reports for m in r.months]
    against = reports[0].against if reports else "the other source"
    if not months:
        return f"nothing compared: the store holds no symbol-month of {', '.join(r.dataset for r in reports)} to check"
    reasons = list(dict.fromkeys(m.skipped for m in months if m.skipped))
    return (f"nothing compared against {against}: every one of the {len(months)} stored symbol-month(s) was skipped "
            f"({'; '.join(reasons)})")


def check_pair(key: DatasetKey, against: str, feed: str) -> None:
    """A usage error (exit 2) for a comparison that means nothing: a source against itself, synthetic bars,
    a bar size or feed the other source does not serve, adjusted bars (compare the raw ones)."""
    mine, theirs = source_info(key.source), source_info(against)
    if mine.name == theirs.name:
        raise UsageError(f"--against {against}: the dataset is {against}'s own; name another source")
    if mine.synthetic or theirs.synthetic:
        raise UsageError("sample bars are synthetic: there is nothing to check them against")
    if key.adjustment != "raw":
        raise UsageError("verify --against compares raw bars; adjusted ones are computed from them")
    if not theirs.serves(key.timeframe):
        raise UsageError(f"{theirs.title} serves no {key.timeframe.name} bars")
    if not comparable(key):
        raise UsageError(f"{key.timeframe.name} bars cannot be compared across vendors: Massive stamps a week on its "
                         "Sunday and a month on its 1st, Alpaca both on the first session, so no bar would meet its "
                         "twin; compare the day bars they are built from (-t day)")
    if feed not in theirs.feeds:
        raise UsageError(f"{key.dirname} holds {feed} bars and {theirs.title} serves {', '.join(theirs.feeds)} only: "
                         "a comparison would only show that the feeds differ")


def comparable(key: DatasetKey) -> bool:
    """Whether two vendors' bars of this size share their timestamps: minute, hour and day bars do; week and
    month bars (and longer) are stamped at different instants of the period by each vendor."""
    return key.timeframe.unit not in (WEEK, MONTH)


def crosscheck(
    root: StorePath,
    key: DatasetKey,
    against: str,
    make_source: SourceFactory,
    *,
    symbols: list[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    tolerances: Tolerances = Tolerances(),
    limits: SourceLimits | None = None,
    now: datetime | None = None,
) -> CrossCheckReport:
    """Compare the raw dataset ``key`` with what ``against`` (made by ``make_source``) serves, per symbol-month
    (``sample``: that many, drawn with ``seed``). Raises :class:`UsageError` for a meaningless pair, and the
    source's fatal errors (keys rejected: exit 3); a symbol the other source refuses is that month's ``error``."""
    import threading

    started = time.monotonic()
    feed = str((dataset_record.read(root, key) or {}).get("feed") or "sip")
    check_pair(key, against, feed)
    report = CrossCheckReport(key.dirname, key.source, against, tolerances)
    months = _months(root, key, symbols)
    if sample is not None and sample < len(months):
        months = sorted(random.Random(seed).sample(months, sample))
    pieces = CoverageLedger(layout.coverage_path(root, key)).pieces()
    client = make_source(stop=threading.Event(), on_wait=None)
    try:
        for symbol, year, month in months:
            check = MonthCheck(symbol, f"{year:04d}-{month:02d}")
            moment = now or datetime.now(timezone.utc)
            held = _covered(symbol, year, month, pieces, moment)
            window = _served(held, limits, moment) if held is not None else None
            if held is None:
                check.skipped = "the store covers none of it"
            elif window is None:
                check.skipped = _outside_plan(against, limits, held)
                check.stored = _stored(root, key, symbol, held).height
            else:
                _compare(check, root, key, client, against, window, feed, tolerances)
            report.months.append(check)
    finally:
        client.close()
        report.requests = client.stats.requests
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def _months(root: StorePath, key: DatasetKey, symbols: list[str] | None) -> list[tuple[str, int, int]]:
    directory = layout.dataset_dir(root, key)
    if not directory.is_dir():
        raise UsageError(f"no {key.dirname} in {root}: nothing to check")
    wanted = symbols or layout.symbols_in(directory)
    return [(p.symbol, p.year, p.month) for s in wanted for p in layout.iter_partitions(directory, s)]


def _covered(symbol: str, year: int, month: int, pieces: dict[str, Any], now: datetime) -> tuple[datetime, datetime] | None:
    """The instants of the month that the store covers (its coverage ledger; a symbol without records: the
    whole month)."""
    lo, hi = ny_month_start(year, month), min(ny_month_end(year, month), now)
    covered = [(p.start, p.end) for p in pieces.get(symbol, []) if p.end >= lo and p.start <= hi]
    if covered:
        lo, hi = max(lo, min(a for a, _ in covered)), min(hi, max(b for _, b in covered))
    return (lo, hi) if lo <= hi else None


def _served(window: tuple[datetime, datetime], limits: SourceLimits | None, now: datetime) -> tuple[datetime, datetime] | None:
    """What of ``window`` the other source serves on the user's plan (its first day and delay)."""
    lo, hi = window
    if limits is not None:
        if limits.earliest is not None:
            lo = max(lo, ny_midnight(limits.earliest))
        if limits.today_refused:
            hi = min(hi, ny_midnight(now.astimezone(NEW_YORK).date()) - ONE_MICROSECOND)
        hi = min(hi, now - timedelta(minutes=limits.delay_minutes))
    return (lo, hi) if lo <= hi else None


def _outside_plan(against: str, limits: SourceLimits | None, held: tuple[datetime, datetime]) -> str:
    """Why the other source serves nothing of a stored window: too old for the plan's history (and the
    settings that say how far back it goes), or too recent (the current day, the delay)."""
    if limits is not None and limits.earliest is not None and held[1] < ny_midnight(limits.earliest):
        return (f"before {limits.earliest}, the first day {against} serves on your plan: "
                + (limits.why or "its history window"))
    return f"too recent for {against} on your plan (the current day, or its delay)"


def _stored(root: StorePath, key: DatasetKey, symbol: str, window: tuple[datetime, datetime]) -> pl.DataFrame:
    return read_bars([symbol], *window, key.timeframe, root, missing="ignore", source=key.source).drop("symbol")


def _compare(check: MonthCheck, root: StorePath, key: DatasetKey, client: BarSource, against: str,
             window: tuple[datetime, datetime], feed: str, tol: Tolerances) -> None:
    lo, hi = window
    check.start, check.end = lo.isoformat(), hi.isoformat()
    stored = _stored(root, key, check.symbol, window)
    check.stored = stored.height
    try:
        pages = client.iter_pages([check.symbol], key.timeframe, lo, hi, feed=feed, adjustment="raw", asof="-")
        frames = [p.bars.drop("symbol") for p in pages if p.bars.height]
    except (TerminalSourceError, TransientSourceError) as exc:
        check.error = str(exc)
        return
    other = pl.concat(frames) if frames else stored.clear()
    check.other = other.height
    both = stored.join(other, on="timestamp", how="full", suffix="_other", coalesce=True)
    only_stored = both.filter(pl.col("open_other").is_null())
    only_other = both.filter(pl.col("open").is_null())
    matched = both.filter(pl.col("open").is_not_null() & pl.col("open_other").is_not_null())
    check.only_stored, check.only_other, check.matched = only_stored.height, only_other.height, matched.height
    diffs = matched.with_columns(
        _price=pl.max_horizontal(*[_relative(c) for c in PRICES]), _volume=_relative("volume"),
    )
    price_bad, volume_bad = pl.col("_price") > tol.price, pl.col("_volume") > tol.volume
    check.price_differs = diffs.filter(price_bad).height
    check.volume_differs = diffs.filter(volume_bad).height
    if diffs.height:
        check.max_price_diff = round(float(diffs["_price"].max() or 0.0), 6)  # type: ignore[arg-type]
        check.max_volume_diff = round(float(diffs["_volume"].max() or 0.0), 6)  # type: ignore[arg-type]
    bad = check.only_stored + check.only_other + diffs.filter(price_bad | volume_bad).height
    check.flagged = bad > tol.share * max(both.height, 1)
    check.examples = _examples(diffs.filter(price_bad | volume_bad), only_stored, only_other, key.source, against)


def _relative(column: str) -> pl.Expr:
    a, b = pl.col(column).cast(pl.Float64), pl.col(f"{column}_other").cast(pl.Float64)
    scale = pl.max_horizontal(a.abs(), b.abs())
    return pl.when(scale > 0).then((a - b).abs() / scale).otherwise(0.0)


def _examples(differ: pl.DataFrame, only_stored: pl.DataFrame, only_other: pl.DataFrame, source: str,
              against: str) -> list[str]:
    """A few lines a person can check by hand: the first bars that differ and the first on one side only."""
    out = []
    for row in differ.head(3).iter_rows(named=True):
        worst = max((*PRICES, "volume"), key=lambda c: abs(row[c] - row[f"{c}_other"]) / max(abs(row[c]), abs(row[f"{c}_other"]), 1e-12))
        out.append(f"{row['timestamp'].isoformat()}: {worst} {row[worst]} vs {row[worst + '_other']}")
    out += [f"{t.isoformat()}: only in {source}" for t in only_stored["timestamp"].head(2)]
    out += [f"{t.isoformat()}: only in {against}" for t in only_other["timestamp"].head(2)]
    return out


__all__ = ["CrossCheckReport", "MonthCheck", "Tolerances", "check_pair", "comparable", "crosscheck", "nothing_compared"]
