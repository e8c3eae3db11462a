"""Bar timeframes: the names users type, alpaca-py's ``TimeFrame``, and the dataset directory suffix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataengine.errors import UsageError

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame

# Alpaca's unit spellings (alpaca-py's TimeFrameUnit values); alpaca-py itself is imported only when a
# request is built, so commands that only read the store start fast.
MINUTE, HOUR, DAY, WEEK, MONTH = "Min", "Hour", "Day", "Week", "Month"


@dataclass(frozen=True)
class Timeframe:
    """One supported bar size.

    ``label`` names the dataset directory (``equities_{label}``); ``bars_per_session`` is an upper estimate
    of bars one liquid symbol has in one trading session (04:00-20:00 New York), used to plan requests.
    """

    name: str
    label: str
    amount: int
    unit: str  # Alpaca's unit: Min, Hour, Day, Week, Month
    bars_per_session: float

    def to_alpaca(self) -> TimeFrame:
        """alpaca-py's TimeFrame. It refuses 4Month, which Alpaca serves: that one is sent by its ``wire``
        string instead (see ``AlpacaClient.build_params``)."""
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

        amount = self.amount if not (self.unit == MONTH and self.amount == 4) else 1
        return TimeFrame(amount, TimeFrameUnit(self.unit))

    @property
    def wire(self) -> str:
        """The value Alpaca's ``timeframe`` query parameter takes, e.g. ``5Min``."""
        return f"{self.amount}{self.unit}"

    @property
    def minutes(self) -> int | None:
        """Length of an intraday bar in minutes (None for day and longer)."""
        return self.amount * {MINUTE: 1, HOUR: 60}[self.unit] if self.intraday else None

    @property
    def intraday(self) -> bool:
        return self.unit in (MINUTE, HOUR)

    def __str__(self) -> str:
        return self.name


TIMEFRAMES: dict[str, Timeframe] = {
    tf.name: tf
    for tf in (
        Timeframe("minute", "1min", 1, MINUTE, 960),
        Timeframe("5min", "5min", 5, MINUTE, 192),
        Timeframe("15min", "15min", 15, MINUTE, 64),
        Timeframe("30min", "30min", 30, MINUTE, 32),
        Timeframe("hour", "1hour", 1, HOUR, 17),
        Timeframe("day", "1day", 1, DAY, 1),
        Timeframe("week", "1week", 1, WEEK, 0.2),
        Timeframe("month", "1month", 1, MONTH, 0.05),
    )
}
# Every size Alpaca serves: [1-59]Min, [1-23]Hour, 1Day, 1Week, [1,2,3,4,6,12]Month.
ALLOWED_AMOUNTS = {MINUTE: range(1, 60), HOUR: range(1, 24), DAY: (1,), WEEK: (1,), MONTH: (1, 2, 3, 4, 6, 12)}
_UNIT_WORDS = {
    "min": MINUTE, "mins": MINUTE, "minute": MINUTE, "minutes": MINUTE, "t": MINUTE,
    "hour": HOUR, "hours": HOUR, "h": HOUR, "hr": HOUR,
    "day": DAY, "days": DAY, "d": DAY,
    "week": WEEK, "weeks": WEEK, "w": WEEK,
    "month": MONTH, "months": MONTH, "mo": MONTH,
}
_SIZE = re.compile(r"^\s*(\d{1,3})\s*([A-Za-z]+)\s*$")
_ALIASES = {
    **{tf.label: tf for tf in TIMEFRAMES.values()},
    **{tf.wire.lower(): tf for tf in TIMEFRAMES.values()},
    "1minute": TIMEFRAMES["minute"],
    "min": TIMEFRAMES["minute"],
    "daily": TIMEFRAMES["day"],
    "hourly": TIMEFRAMES["hour"],
    "weekly": TIMEFRAMES["week"],
    "monthly": TIMEFRAMES["month"],
}
CHOICES = "minute, 5min, 15min, 30min, hour, day, week, month, or any Alpaca size: 1-59min, 1-23hour, 1/2/3/4/6/12month"


def sized(amount: int, unit: str) -> Timeframe:
    """The timeframe of ``amount`` ``unit`` (Alpaca's unit spelling); :class:`UsageError` if Alpaca has no such size."""
    if amount not in ALLOWED_AMOUNTS[unit]:
        raise UsageError(f"Alpaca has no {amount}{unit} bars; sizes are {CHOICES}")
    for known in TIMEFRAMES.values():
        if known.amount == amount and known.unit == unit:
            return known
    label = f"{amount}{unit.lower()}"
    # upper estimates per 04:00-20:00 session; buckets are aligned in UTC, so a size that does not divide the
    # session cuts one more bar at an edge
    per_session = {MINUTE: -(-960 // amount) + 1, HOUR: 16 // amount + 2, MONTH: 0.05 / amount}.get(unit, 1.0)
    return Timeframe(label, label, amount, unit, per_session)


def parse_timeframe(value: str | TimeFrame | Timeframe | Any) -> Timeframe:
    """Accept our names (``minute``, ``5min``, ``day``...), any size in our spelling (``10min``, ``2hour``,
    ``3month``), dataset labels (``1day``), Alpaca's spellings (``15Min``, ``10T``, ``2H``, ``3M``) or an
    alpaca-py ``TimeFrame``; raise :class:`UsageError` for anything else."""
    if isinstance(value, Timeframe):
        return value
    if hasattr(value, "amount_value") and hasattr(value, "unit_value"):  # alpaca-py's TimeFrame
        unit = getattr(value.unit_value, "value", value.unit_value)
        return sized(int(value.amount_value), str(unit))
    text = str(value).strip()
    found = TIMEFRAMES.get(text.lower()) or _ALIASES.get(text.lower())
    if found is not None:
        return found
    match = _SIZE.match(text)
    if match is not None:
        amount, word = int(match[1]), match[2]
        if word == "M":  # Alpaca's month letter; a lowercase "m" is ambiguous (minute? month?) and refused
            return sized(amount, MONTH)
        unit = _UNIT_WORDS.get(word.lower()) if word != "m" else None
        if unit is not None:
            return sized(amount, unit)
    raise UsageError(f"unknown timeframe {value!r}; choose {CHOICES}")
