"""NYSE sessions (exchange_calendars' XNYS: holidays and early closes included), shipped with the package.

Used to know which sessions should have bars (gaps), where regular hours end on early-close days, and how far
back the re-fetch window reaches. Never hand-written holiday lists: ``xnys_sessions.txt.gz`` beside this module
is generated from exchange_calendars by ``scripts/gen_xnys_sessions.py`` (which documents its format), and
``tests/test_calendar.py`` holds it equal to exchange_calendars. Reading it takes a few milliseconds and imports
neither pandas nor exchange_calendars, so a user's first run costs what every later run does.

The table answers for 2000-01-01 .. 2035-12-31: there are no sessions before its first day (older than any bar
Alpaca or Massive serves; a run asking only for days before it is refused by the request's check, not called
a weekend), and asking about a day after its last one is an error that says to upgrade dataengine, never a
silent guess. Thread-safe: the table is read once and never changed.
"""

from __future__ import annotations

import bisect
import functools
import zlib
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from dataengine.errors import UsageError
from dataengine.timerange import NEW_YORK, SIP_NOTE, TimeRange, ny_midnight, ny_text

EXTENDED_OPEN = time(4, 0)  # Alpaca's minute bars cover 04:00-20:00 New York, shorter on early closes
EXTENDED_CLOSE = time(20, 0)
EARLY_EXTENDED_CLOSE = time(17, 0)
TABLE = Path(__file__).resolve().parent / "xnys_sessions.txt.gz"


@dataclass(frozen=True)
class _Table:
    first: date  # the days the table answers for
    last: date
    days: list[date]  # every session in that range, in order
    lines: list[str]  # "YYYY-MM-DD HH:MM HH:MM" (date, open, close in UTC), one per day

    def check(self, day: date) -> None:
        if day > self.last:
            raise UsageError(
                f"dataengine's NYSE calendar ends on {self.last.isoformat()} and {day.isoformat()} is past it: "
                "upgrade dataengine (a newer release ships later sessions)"
            )


@functools.lru_cache(maxsize=1)
def _table() -> _Table:
    # zlib reads the gzip file itself (wbits 16 + 15): the gzip module would be one more import
    lines = zlib.decompress(TABLE.read_bytes(), wbits=31).decode("ascii").splitlines()
    header = [line for line in lines if line.startswith("#")]
    first, last = next(line for line in header if line.startswith("# range: ")).split()[2:4]
    rows = lines[len(header) :]
    return _Table(date.fromisoformat(first), date.fromisoformat(last), [date.fromisoformat(r[:10]) for r in rows], rows)


def first_day() -> date:
    """The first day the shipped table answers for: no source serves bars before it."""
    return _table().first


def last_day() -> date:
    """The last day the shipped table answers for."""
    return _table().last


def sessions(first: date, last: date) -> list[date]:
    """Trading days from ``first`` to ``last`` inclusive."""
    table = _table()
    table.check(last)
    return table.days[bisect.bisect_left(table.days, first) : bisect.bisect_right(table.days, last)]


def regular_hours(day: date) -> tuple[datetime, datetime]:
    """(open, close) of the regular session in UTC; close is 13:00 New York on early-close days.

    Raises ``KeyError`` when ``day`` is not a session."""
    table = _table()
    table.check(day)
    i = bisect.bisect_left(table.days, day)
    if i == len(table.days) or table.days[i] != day:
        raise KeyError(day)
    row = table.lines[i]
    return _utc(day, row[11:16]), _utc(day, row[17:22])


def _utc(day: date, hh_mm: str) -> datetime:
    return datetime(day.year, day.month, day.day, int(hh_mm[:2]), int(hh_mm[3:]), tzinfo=timezone.utc)


def is_early_close(day: date) -> bool:
    return regular_hours(day)[1].astimezone(NEW_YORK).time() < time(16, 0)


def extended_minutes(day: date) -> int:
    """Minutes Alpaca's extended-hours window spans on a session: 960, or 780 on early closes."""
    end = EARLY_EXTENDED_CLOSE if is_early_close(day) else EXTENDED_CLOSE
    return (end.hour - EXTENDED_OPEN.hour) * 60


def extended_hours_between(start: datetime, end: datetime) -> bool:
    """True when the instants ``(start, end]`` reach into some session's extended hours (04:00-20:00 New York,
    17:00 on early closes): bars may exist there. False on a weekend, a holiday, overnight."""
    for day in sessions(start.astimezone(NEW_YORK).date(), end.astimezone(NEW_YORK).date()):
        opens = datetime.combine(day, EXTENDED_OPEN, NEW_YORK)
        if opens <= end and start < opens + timedelta(minutes=extended_minutes(day)):
            return True
    return False


def with_sip_note(rng: TimeRange, note: str | None = None) -> TimeRange:
    """``rng`` with the note that the SIP delay pulled its end back, when that cut bars away (the cut reaches into
    a session's extended hours: not on a Sunday, overnight or a holiday). ``note``: why, after ``end pulled back
    to ... New York:`` (default: Alpaca's rule)."""
    if rng.sip_cut is None or not extended_hours_between(*rng.sip_cut):
        return rng
    text = f"end pulled back to {ny_text(rng.end)} New York: {note}" if note else SIP_NOTE.format(end=ny_text(rng.end))
    return replace(rng, notes=(*rng.notes, text))


def session_start(day: date) -> datetime:
    """Midnight New York of ``day``, in UTC (where a session's bars begin, daily bars included)."""
    return ny_midnight(day)


@functools.lru_cache(maxsize=256)  # a run asks it once per symbol with the same few fetch times
def lag_cut(moment: datetime, lag_sessions: int) -> datetime:
    """The instant from which bars fetched at ``moment`` are not yet trusted.

    The ``lag_sessions`` most recent sessions that had begun at ``moment`` may still change (late trades,
    corrections); everything before the first of them is final. ``lag_sessions=0`` trusts everything.
    """
    if lag_sessions <= 0:
        return moment
    local_day = moment.astimezone(NEW_YORK).date()
    table = _table()
    table.check(local_day)
    i = bisect.bisect_right(table.days, local_day) - lag_sessions
    if i < 0:
        return moment - timedelta(days=lag_sessions)
    return session_start(table.days[i])
