"""An ingest request, validated: once built, nothing in it can fail the run with a usage error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict

from dataengine import calendar
from dataengine.calendar import extended_hours_between, with_sip_note
from dataengine.datasets import DatasetKey, parse_adjustment, parse_feed, parse_source
from dataengine.errors import UsageError
from dataengine.loaders.symbol_loader import clean_symbols
from dataengine.sources.source import DEFAULT_SOURCE, SourceInfo, source_info
from dataengine.storage.coverage import Interval
from dataengine.timeframes import Timeframe, parse_timeframe
from dataengine.timerange import (
    DEFAULT_START,
    NEW_YORK,
    ONE_MICROSECOND,
    SIP_SAFE_DELAY_MINUTES,
    TimeRange,
    ny_midnight,
    ny_text,
    resolve_range,
)

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame

    from dataengine.orchestration.sources import SourceLimits

DateLike = str | date | datetime | None


@dataclass(frozen=True)
class IngestOptions:
    """How to ingest, whatever the symbols and dates: one value from the CLI or the Python API down to the
    request. ``feed``: sip, iex, otc, boats, delayed_sip; ``adjustment``: raw, split, dividend, spin-off, all
    or a comma combination; ``full_refresh``: ignore what is stored; ``lag``: sessions of the last fetch
    fetched again (late corrections); ``asof``: the date renamed symbols are mapped as of (``-``: none; None:
    the dataset's); ``source``: where the bars come from (``alpaca``, ``massive``, ``sample``; None: the
    ``source`` setting)."""

    feed: str = "sip"
    adjustment: str = "raw"
    full_refresh: bool = False
    lag: int = 1
    asof: str | date | None = None
    source: str | None = None


def options_of(method: str, keywords: dict[str, Any]) -> IngestOptions:
    """The options a public ingest method was called with; an unknown keyword is the TypeError Python gives,
    naming the method (not this class) and the options it takes: ``start=`` is read_bars' name for the first
    day, ``start_date=`` the ingest methods'."""
    known = [f.name for f in fields(IngestOptions)]
    for name in keywords:
        if name not in known:
            dates = {"start": "start_date", "end": "end_date"}
            hint = f" (the dates are {dates[name]}=)" if name in dates else ""
            raise TypeError(f"{method}() got an unexpected keyword argument {name!r}{hint}; "
                            f"its options are {', '.join(known)}")
    return IngestOptions(**keywords)


class IngestKeywords(TypedDict, total=False):
    """:class:`IngestOptions` as the keyword arguments of the public ingest methods."""

    feed: str
    adjustment: str
    full_refresh: bool
    lag: int
    asof: str | date | None
    source: str | None


@dataclass(frozen=True)
class IngestRequest:
    """What to fetch. ``start_given`` False: the range starts at the default start (settings);
    ``full_refresh``: ignore what is stored; ``lag``: sessions of the last fetch fetched again (late
    corrections); ``ranges``: explicit per-symbol ranges (a repair), instead of what coverage says."""

    symbols: tuple[str, ...]
    timeframe: Timeframe
    range: TimeRange
    feed: str
    adjustment: str
    start_given: bool = True
    full_refresh: bool = False
    lag: int = 1
    ranges: dict[str, tuple[Interval, ...]] | None = None
    asof: str | None = None  # Alpaca's symbol-rename date (YYYY-MM-DD, or "-" for none); None: the dataset's
    source: str = DEFAULT_SOURCE  # where the bars come from: its own datasets (massive_equities_1min, ...)

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(self.timeframe, self.adjustment, self.source)

    @property
    def info(self) -> SourceInfo:
        """What the request's source can do."""
        return source_info(self.source)


def build_request(
    symbols: Iterable[str],
    start_date: DateLike = None,
    end_date: DateLike = None,
    timeframe: str | TimeFrame | Timeframe = "minute",
    options: IngestOptions = IngestOptions(),
    *,
    ranges: dict[str, list[Interval]] | None = None,
    sip_delay_minutes: int = SIP_SAFE_DELAY_MINUTES,
    default_start: date = DEFAULT_START,
    default_source: str = DEFAULT_SOURCE,
    limits: SourceLimits | None = None,
    now: datetime | None = None,
) -> IngestRequest:
    """Validate the user's input into a request; :class:`UsageError` names the first thing wrong. ``limits``:
    what the user's plan with the source serves (:func:`dataengine.orchestration.sources.limits`; its delay
    replaces ``sip_delay_minutes``): a range reaching before its first day starts there, with a note."""
    clean = clean_symbols(symbols)
    feed = parse_feed(options.feed)
    if options.lag < 0:
        raise UsageError(f"--lag must be 0 or more sessions, got {options.lag}")
    source = parse_source(options.source or default_source)
    tf, adjustment, asof = parse_timeframe(timeframe), parse_adjustment(options.adjustment), parse_asof(options.asof)
    _check_served(source_info(source), tf, feed, adjustment, asof)
    if not source_info(source).maps_renamed_symbols:
        asof = "-"  # point-in-time tickers: its datasets record "-" whatever day they were made
    delay = limits.delay_minutes if limits is not None else sip_delay_minutes
    note = limits.delay_note if limits is not None else None
    rng = with_sip_note(resolve_range(start_date if start_date is not None else default_start, end_date, feed=feed,
                                      sip_delay_minutes=delay, now=now), note)
    if not rng.empty and rng.end.astimezone(NEW_YORK).date() < calendar.first_day():
        raise UsageError(f"the range ends on {rng.end.astimezone(NEW_YORK).date()}, before {calendar.first_day()}, "
                         "where dataengine's NYSE calendar begins: no source serves bars that old")
    rng = _from_first_day(rng, given=start_date is not None)
    request = IngestRequest(
        symbols=tuple(clean),
        timeframe=tf,
        range=rng,
        feed=feed,
        adjustment=adjustment,
        start_given=start_date is not None,
        full_refresh=options.full_refresh,
        lag=options.lag,
        ranges={s: tuple(v) for s, v in ranges.items()} if ranges is not None else None,
        asof=asof,
        source=source,
    )
    return within_limits(request, limits, now) if limits is not None else request


def _from_first_day(rng: TimeRange, *, given: bool) -> TimeRange:
    """``rng`` starting no earlier than the calendar's first day; a start the user gave (``--start``, ``--days``)
    moved there says so in a note, as a plan's first day does (``--days 100000`` planned from 1753)."""
    first = calendar.first_day()
    if rng.empty or rng.start >= ny_midnight(first):
        return rng
    note = (f"start moved to {first} New York: dataengine's NYSE calendar begins there; no source serves bars "
            "that old")
    return replace(rng, start=ny_midnight(first), notes=(*rng.notes, note) if given else rng.notes)


def _check_served(info: SourceInfo, tf: Timeframe, feed: str, adjustment: str, asof: str | None) -> None:
    """What the source cannot serve is a usage error before anything is sent (exit 2)."""
    name = info.title or info.name
    if not info.serves(tf):
        raise UsageError(f"{name} serves no {tf.name} bars")
    if feed not in info.feeds:
        raise UsageError(f"--feed {feed}: {name} serves {', '.join(info.feeds)} only (--source {info.name})")
    if not info.serves_adjustment(adjustment):
        raise UsageError(
            f"--adjustment {adjustment}: {name}'s bars are fetched raw; adjusted prices are computed from them when "
            f"you read (read_bars(..., adjustment='split', source='{info.name}'), dataengine show --adjustment)")
    if asof not in (None, "-") and not info.maps_renamed_symbols:
        raise UsageError(f"--asof {asof}: {name} does not map renamed tickers (its tickers are point-in-time); "
                         "leave --asof out")


def within_limits(request: IngestRequest, limits: SourceLimits, now: datetime | None = None) -> IngestRequest:
    """``request`` cut to what the plan serves: a start before its first day moved to that day, an end in a
    New York day it does not serve yet pulled back before it; each cut named in the range's notes. A request
    left with nothing to ask for is a :class:`UsageError`."""
    rng, notes = request.range, list(request.range.notes)
    if rng.empty:
        return request
    start, end = rng.start, rng.end
    if limits.earliest is not None and start < ny_midnight(limits.earliest):
        start = ny_midnight(limits.earliest)
        if request.start_given:
            notes.append(f"start moved to {limits.earliest} New York: {limits.why}")
    if limits.today_refused:
        today = (now or datetime.now(timezone.utc)).astimezone(NEW_YORK).date()
        cut = ny_midnight(today) - ONE_MICROSECOND
        if end > cut:
            if extended_hours_between(cut, end):  # said only when bars were cut away (not at 01:30, not on a Sunday)
                notes.append(f"end pulled back to {ny_text(cut + ONE_MICROSECOND)} New York: "
                             f"{request.info.title}'s free plan serves a day's bars once the day is over")
            end = cut
    if start > end:
        why = [limits.why] if limits.earliest is not None and rng.end < ny_midnight(limits.earliest) else []
        if limits.today_refused and end < rng.start:
            why.append(f"{request.info.title}'s free plan serves a day's bars once the day is over")
        raise UsageError(f"nothing to ask {request.info.title} for: {ny_text(rng.start)}..{ny_text(rng.end)} New York "
                         f"is outside what your plan serves ({'; '.join(why) or limits.why})")
    ranges = request.ranges
    if ranges is not None:
        ranges = {s: tuple((max(a, start), min(b, end)) for a, b in spans if max(a, start) <= min(b, end))
                  for s, spans in ranges.items()}
    return replace(request, range=TimeRange(start, end, tuple(notes)), ranges=ranges)


def parse_asof(value: str | date | None) -> str | None:
    """``--asof``: a date (``YYYY-MM-DD``) up to which Alpaca maps renamed symbols, or ``-`` for no mapping."""
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, date) else str(value).strip()
    if text == "-":
        return text
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else _bad_asof(text)
    except ValueError:
        return _bad_asof(text)


def _bad_asof(text: str) -> str:
    raise UsageError(f"--asof {text[:40]!r} is not a date (YYYY-MM-DD) or '-' (no symbol mapping)")
