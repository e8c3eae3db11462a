"""Bar timeframes: the names users type, alpaca-py's ``TimeFrame``, and the dataset directory suffix."""

from __future__ import annotations

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
        from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

        return TimeFrame(self.amount, TimeFrameUnit(self.unit))

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


def parse_timeframe(value: str | TimeFrame | Timeframe | Any) -> Timeframe:
    """Accept our names (``minute``, ``5min``, ``day``...), dataset labels (``1day``), Alpaca's wire strings
    (``15Min``) or an alpaca-py ``TimeFrame``; raise :class:`UsageError` for anything else."""
    if isinstance(value, Timeframe):
        return value
    if hasattr(value, "amount_value") and hasattr(value, "unit_value"):  # alpaca-py's TimeFrame
        unit = getattr(value.unit_value, "value", value.unit_value)
        for known in TIMEFRAMES.values():
            if known.amount == value.amount_value and known.unit == unit:
                return known
        raise UsageError(f"unsupported timeframe {value.amount_value}{unit}; choose one of: {', '.join(TIMEFRAMES)}")
    key = str(value).strip().lower()
    found = TIMEFRAMES.get(key) or _ALIASES.get(key)
    if found is None:
        raise UsageError(f"unknown timeframe {value!r}; choose one of: {', '.join(TIMEFRAMES)}")
    return found
