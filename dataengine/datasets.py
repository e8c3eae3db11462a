"""What identifies a dataset on disk: timeframe, price adjustment and feed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataengine.errors import UsageError
from dataengine.timeframes import Timeframe, parse_timeframe

FEEDS = ("sip", "iex", "otc", "delayed_sip")
ADJUSTMENTS = ("raw", "split", "dividend", "all")


def parse_feed(value: str | Any) -> str:
    """A feed name, or alpaca-py's ``DataFeed`` enum."""
    text = str(getattr(value, "value", value)).strip().lower()
    if text not in FEEDS:
        raise UsageError(f"unknown feed {value!r}; choose one of: {', '.join(FEEDS)}")
    return text


def parse_adjustment(value: str | Any) -> str:
    """An adjustment name, or alpaca-py's ``Adjustment`` enum."""
    text = str(getattr(value, "value", value)).strip().lower()
    if text not in ADJUSTMENTS:
        raise UsageError(f"unknown adjustment {value!r}; choose one of: {', '.join(ADJUSTMENTS)}")
    return text


def wire_feed(feed: str) -> str:
    """The feed value sent on the historical bars endpoint.

    ``delayed_sip`` exists only on Alpaca's latest/snapshot endpoints; for history it is SIP data that is
    at least 15 minutes old, which is what ``sip`` plus our end clamp already gives.
    """
    return "sip" if feed == "delayed_sip" else feed


@dataclass(frozen=True)
class DatasetKey:
    """Raw and adjusted bars never share files: each (timeframe, adjustment) is its own directory."""

    timeframe: Timeframe
    adjustment: str = "raw"

    @classmethod
    def of(cls, timeframe: str | Timeframe, adjustment: str = "raw") -> DatasetKey:
        return cls(parse_timeframe(timeframe), parse_adjustment(adjustment))

    @property
    def dirname(self) -> str:
        base = f"equities_{self.timeframe.label}"
        return base if self.adjustment == "raw" else f"{base}_{self.adjustment}"
