"""Date bounds as users give them, turned into exact UTC instants.

A bare date means a New York calendar day and both ends are inclusive, so ``2024-01-01 .. 2024-01-31`` covers
every bar of January in New York time, extended hours included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from dataengine.errors import UsageError

NEW_YORK = ZoneInfo("America/New_York")
DEFAULT_START = date(2016, 1, 1)
ONE_MICROSECOND = timedelta(microseconds=1)
# Plans without real-time SIP are refused SIP data newer than 15 minutes; one more minute for clock skew.
SIP_SAFE_DELAY_MINUTES = 16


def ny_midnight(day: date) -> datetime:
    """The UTC instant at which New York calendar day ``day`` begins."""
    return datetime.combine(day, time(0), NEW_YORK).astimezone(timezone.utc)


def parse_bound(value: str | date | datetime, *, is_end: bool, name: str) -> datetime:
    """Parse one end of a range into a UTC datetime.

    A date (``YYYY-MM-DD`` or a ``date``) is the New York day: its first instant for a start, its last
    microsecond for an end. A datetime with an offset is taken as is; without one it is New York time.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return ny_midnight(value + timedelta(days=1)) - ONE_MICROSECOND if is_end else ny_midnight(value)
    else:
        text = str(value).strip()
        if len(text) == 10:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise UsageError(f"{name} {text!r} is not a valid date (expected YYYY-MM-DD)") from None
            return parse_bound(day, is_end=is_end, name=name)
        try:
            moment = parse_iso_datetime(text)
        except ValueError:
            raise UsageError(
                f"{name} {text!r} is not a valid date or datetime (expected YYYY-MM-DD or ISO 8601 with offset)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=NEW_YORK)
    return moment.astimezone(timezone.utc)


# 3.10's fromisoformat takes neither a "Z" nor a fraction of other than 3 or 6 digits; 3.11's takes both (and
# cuts a longer fraction, as pandas' and date +%N's nanoseconds, to microseconds)
_FRACTION = re.compile(r"(\d\d:\d\d:\d\d)[.,](\d+)(?=[+-]|$)")


def parse_iso_datetime(text: str) -> datetime:
    """An ISO 8601 datetime (``YYYY-MM-DD[T ]HH:MM[:SS[.fff]]`` with an optional offset) read the same on every
    Python this package supports: a trailing ``Z`` (``2024-01-31T15:30:00Z``) and a fraction of any length
    (cut to microseconds, never rounded up) included. ValueError otherwise."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}", text)
    return datetime.fromisoformat(text)


def days_back(days: int, end: str | date | datetime | None = None, *, now: datetime | None = None) -> date:
    """The first of the last ``days`` New York calendar days up to ``end`` (default today), both included:
    ``days_back(1)`` is today, ``days_back(5)`` four days before it."""
    if days < 1:
        raise UsageError(f"--days must be 1 or more, got {days}")
    last = parse_bound(end, is_end=True, name="end") if end is not None else (now or datetime.now(timezone.utc))
    return last.astimezone(NEW_YORK).date() - timedelta(days=days - 1)


@dataclass(frozen=True)
class TimeRange:
    """An inclusive ``[start, end]`` range of UTC instants plus what was adjusted on the way."""

    start: datetime
    end: datetime
    notes: tuple[str, ...] = field(default=())
    sip_cut: tuple[datetime, datetime] | None = None  # (new end, end asked): what the SIP delay left out
    # Nothing to ask for yet: the whole range lies in the SIP delay (``--days 1`` in the first minutes of a New
    # York day). ``start == end`` then, and a run fetches nothing and says why in ``notes``.
    empty: bool = False

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise UsageError(f"start {ny_text(self.start)} is after end {ny_text(self.end)} (New York)")


def as_typed(value: str | date | datetime) -> str:
    """A bound as the user gave it (``2024-01-31``, ``2024-01-31T10:00``), for messages: never the UTC instant
    it became."""
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value).strip()


def ny_text(moment: datetime) -> str:
    """An instant as a New York date, or date and time when it is not midnight (``2024-01-31 10:00``)."""
    local = moment.astimezone(NEW_YORK)
    return local.strftime("%Y-%m-%d") if local.time() == time(0) else local.strftime("%Y-%m-%d %H:%M")


def check_order(start: str | date | datetime, end: str | date | datetime, start_utc: datetime, end_utc: datetime) -> None:
    """:class:`UsageError` naming both bounds as typed when ``start`` comes after ``end``."""
    if start_utc > end_utc:
        raise UsageError(f"start {as_typed(start)} is after end {as_typed(end)}")


def resolve_range(
    start: str | date | datetime | None,
    end: str | date | datetime | None,
    *,
    feed: str = "sip",
    now: datetime | None = None,
    sip_delay_minutes: int = SIP_SAFE_DELAY_MINUTES,
) -> TimeRange:
    """Apply defaults (start 2016-01-01, end now) and the recent-SIP rule, and validate the order.

    ``feed`` is the stored feed (``delayed_sip`` is already ``sip``); SIP bars of the last ``sip_delay_minutes``
    are left out (0: a plan with real-time SIP)."""
    now = now or datetime.now(timezone.utc)
    start_utc = parse_bound(start if start is not None else DEFAULT_START, is_end=False, name="start")
    end_utc = parse_bound(end, is_end=True, name="end") if end is not None else now
    if end_utc > now:
        end_utc = now
    delay = timedelta(minutes=sip_delay_minutes)
    sip_cut = None
    if feed in ("sip", "delayed_sip") and delay and end_utc > now - delay:
        sip_cut = (now - delay, end_utc)  # whether bars were cut away is the calendar's to say (see sip_note)
        end_utc = now - delay
    if start_utc > end_utc:
        first = as_typed(start if start is not None else DEFAULT_START)
        if end is not None:  # the end as given, not as pulled back to now
            check_order(first, end, start_utc, parse_bound(end, is_end=True, name="end"))
        if start_utc > now:
            raise UsageError(f"start {first} is in the future (now: {ny_text(now)} New York)")
        # Only the SIP delay leaves nothing: the bars come later, so this is no error (a cron line's --days 1 at
        # 00:05 New York must not fail when the same line at 00:20 succeeds).
        why = (f"nothing to fetch yet: the range starts at {ny_text(start_utc)} New York, within the last "
               f"{sip_delay_minutes} minutes, whose SIP bars are not asked for (sip_delay_minutes)")
        return TimeRange(start_utc, start_utc, (why,), empty=True)
    return TimeRange(start_utc, end_utc, sip_cut=sip_cut)


SIP_NOTE = ("end pulled back to {end} New York: Alpaca refuses SIP data from the last 15 minutes to plans without "
            "real-time SIP (set sip_delay_minutes = 0 if yours has it)")


YearMonth = tuple[int, int]


def next_month(year: int, month: int) -> YearMonth:
    """The calendar month after ``year-month``."""
    return (year + 1, 1) if month == 12 else (year, month + 1)


def ny_year_month(moment: datetime) -> YearMonth:
    """The New York calendar month an instant falls in (an after-hours bar at 01:00Z belongs to the day before)."""
    local = moment.astimezone(NEW_YORK)
    return local.year, local.month


def months_between(first: YearMonth, last: YearMonth) -> list[YearMonth]:
    """Every (year, month) from ``first`` to ``last``, both included."""
    out: list[YearMonth] = []
    current = first
    while current <= last:
        out.append(current)
        current = next_month(*current)
    return out


def month_starts(start: datetime, end: datetime) -> list[datetime]:
    """The UTC instants at which each New York calendar month touching ``[start, end]`` begins."""
    starts = [ny_month_start(y, m) for y, m in months_between(ny_year_month(start), ny_year_month(end))]
    return [s for s in starts if s <= end]


def ny_month_start(year: int, month: int) -> datetime:
    """The UTC instant at which New York calendar month ``year-month`` begins."""
    return ny_midnight(date(year, month, 1))


def ny_month_end(year: int, month: int) -> datetime:
    """The last microsecond of New York calendar month ``year-month``, in UTC."""
    return ny_month_start(*next_month(year, month)) - ONE_MICROSECOND
