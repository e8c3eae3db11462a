"""Bar timeframes: the names users type, alpaca-py's ``TimeFrame``, and the dataset directory suffix."""

from __future__ import annotations

from dataclasses import dataclass

from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from dataengine.errors import UsageError


@dataclass(frozen=True)
class Timeframe:
    """One supported bar size.

    ``label`` names the dataset directory (``equities_{label}``); ``bars_per_session`` is an upper estimate
    of bars one liquid symbol has in one trading session (04:00-20:00 New York), used to plan requests.
    """

    name: str
    label: str
    amount: int
    unit: TimeFrameUnit
    bars_per_session: float

    def to_alpaca(self) -> TimeFrame:
        return TimeFrame(self.amount, self.unit)

    @property
    def wire(self) -> str:
        """The value Alpaca's ``timeframe`` query parameter takes, e.g. ``5Min``."""
        return f"{self.amount}{self.unit.value}"

    @property
    def intraday(self) -> bool:
        return self.unit in (TimeFrameUnit.Minute, TimeFrameUnit.Hour)

    def __str__(self) -> str:
        return self.name


TIMEFRAMES: dict[str, Timeframe] = {
    tf.name: tf
    for tf in (
        Timeframe("minute", "1min", 1, TimeFrameUnit.Minute, 960),
        Timeframe("5min", "5min", 5, TimeFrameUnit.Minute, 192),
        Timeframe("15min", "15min", 15, TimeFrameUnit.Minute, 64),
        Timeframe("30min", "30min", 30, TimeFrameUnit.Minute, 32),
        Timeframe("hour", "1hour", 1, TimeFrameUnit.Hour, 17),
        Timeframe("day", "1day", 1, TimeFrameUnit.Day, 1),
        Timeframe("week", "1week", 1, TimeFrameUnit.Week, 0.2),
        Timeframe("month", "1month", 1, TimeFrameUnit.Month, 0.05),
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


def parse_timeframe(value: str | TimeFrame | Timeframe) -> Timeframe:
    """Accept our names (``minute``, ``5min``, ``day``...), dataset labels (``1day``), Alpaca's wire strings
    (``15Min``) or an alpaca-py ``TimeFrame``; raise :class:`UsageError` for anything else."""
    if isinstance(value, Timeframe):
        return value
    if isinstance(value, TimeFrame):
        for tf in TIMEFRAMES.values():
            if tf.amount == value.amount_value and tf.unit == value.unit_value:
                return tf
        raise UsageError(f"unsupported timeframe {value.value}; choose one of: {', '.join(TIMEFRAMES)}")
    key = str(value).strip().lower()
    tf = TIMEFRAMES.get(key) or _ALIASES.get(key)
    if tf is None:
        raise UsageError(f"unknown timeframe {value!r}; choose one of: {', '.join(TIMEFRAMES)}")
    return tf
