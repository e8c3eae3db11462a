"""NYSE sessions from exchange_calendars' XNYS (holidays and early closes included), with day-level caching.

Used to know which sessions should have bars (gaps), where regular hours end on early-close days, and how far
back the re-fetch window reaches. Never hand-written holiday lists.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import json
import os
import warnings
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

from dataengine.storage.atomic import write_text_atomic
from dataengine.timerange import NEW_YORK, ny_midnight

EXTENDED_OPEN = time(4, 0)  # Alpaca's minute bars cover 04:00-20:00 New York, shorter on early closes
EXTENDED_CLOSE = time(20, 0)
EARLY_EXTENDED_CLOSE = time(17, 0)


@functools.lru_cache(maxsize=1)
def _calendar():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        # exchange_calendars under pandas 3 warns about its own use of deprecated pandas APIs
        warnings.simplefilter("ignore")
        import exchange_calendars

        return exchange_calendars.get_calendar("XNYS", start="2000-01-01")


@functools.lru_cache(maxsize=1)
def _table() -> tuple[list[date], dict[date, tuple[datetime, datetime]]]:
    """All sessions known to the calendar, with their regular open/close as UTC datetimes.

    exchange_calendars (with pandas) takes about a second to import and build; the table it yields is kept
    in the user cache directory, keyed by its version and the month (its horizon moves forward), so commands
    such as ``gaps`` start fast after the first call of a month."""
    cache = _cache_path()
    try:
        rows = json.loads(cache.read_text(encoding="utf-8"))
        days = [date.fromisoformat(d) for d, _, _ in rows]
        hours = [(datetime.fromtimestamp(o, timezone.utc), datetime.fromtimestamp(c, timezone.utc)) for _, o, c in rows]
        return days, dict(zip(days, hours, strict=True))
    except (OSError, ValueError, TypeError):
        pass
    days, table = _table_from_exchange_calendars()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        rows = [[d.isoformat(), table[d][0].timestamp(), table[d][1].timestamp()] for d in days]
        write_text_atomic(cache, json.dumps(rows, separators=(",", ":")))
    except OSError:
        pass  # a read-only home: slower next time, nothing else
    return days, table


def _cache_path() -> Path:
    import platformdirs

    month = datetime.now(timezone.utc).strftime("%Y-%m")
    return Path(platformdirs.user_cache_dir("dataengine", appauthor=False)) / f"xnys-{_calendar_build()}-{month}.json"


def _calendar_build() -> str:
    """Which installed exchange_calendars the cache was built with: its version from the ``.dist-info`` beside
    the package (a listdir; ``importlib.metadata.version`` scans every sys.path entry, ~90 ms a process)."""
    spec = importlib.util.find_spec("exchange_calendars")
    if spec is None or not spec.submodule_search_locations:
        return "unknown"
    site = Path(next(iter(spec.submodule_search_locations))).parent
    try:
        infos = sorted(n for n in os.listdir(site) if n.lower().startswith("exchange_calendars-") and n.endswith(".dist-info"))
    except OSError:
        return "unknown"
    return infos[-1][len("exchange_calendars-") : -len(".dist-info")] if infos else "unknown"


def _table_from_exchange_calendars() -> tuple[list[date], dict[date, tuple[datetime, datetime]]]:
    cal = _calendar()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schedule = cal.schedule
        days = [d.date() for d in schedule.index]
        opens = [o.to_pydatetime().astimezone(timezone.utc) for o in schedule["open"]]
        closes = [c.to_pydatetime().astimezone(timezone.utc) for c in schedule["close"]]
    return days, dict(zip(days, zip(opens, closes, strict=False), strict=False))


def sessions(first: date, last: date) -> list[date]:
    """Trading days from ``first`` to ``last`` inclusive."""
    days, _ = _table()
    return days[bisect.bisect_left(days, first) : bisect.bisect_right(days, last)]


def regular_hours(day: date) -> tuple[datetime, datetime]:
    """(open, close) of the regular session in UTC; close is 13:00 New York on early-close days."""
    return _table()[1][day]


def is_early_close(day: date) -> bool:
    return regular_hours(day)[1].astimezone(NEW_YORK).time() < time(16, 0)


def extended_minutes(day: date) -> int:
    """Minutes Alpaca's extended-hours window spans on a session: 960, or 780 on early closes."""
    end = EARLY_EXTENDED_CLOSE if is_early_close(day) else EXTENDED_CLOSE
    return (end.hour - EXTENDED_OPEN.hour) * 60


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
    days, _ = _table()
    i = bisect.bisect_right(days, local_day) - lag_sessions
    if i < 0:
        return moment - timedelta(days=lag_sessions)
    return session_start(days[i])
