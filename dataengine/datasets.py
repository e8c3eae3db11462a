"""What identifies a dataset on disk: timeframe, price adjustment and feed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataengine.errors import UsageError
from dataengine.timeframes import Timeframe, parse_timeframe

# Alpaca's historical feeds. ``delayed_sip`` exists only on Alpaca's latest/snapshot endpoints; for history it
# is SIP data at least 15 minutes old, which is what ``sip`` with the end pulled back gives, so it is stored as
# (and is the same dataset as) ``sip``.
FEEDS = ("sip", "iex", "otc", "boats", "delayed_sip")
_FEED_ALIASES = {"delayed_sip": "sip"}
# Alpaca's adjustments, combinable with commas (``split,spin-off``); ``all`` is all three.
ADJUSTMENT_PARTS = ("split", "dividend", "spin-off")
ADJUSTMENTS = ("raw", *ADJUSTMENT_PARTS, "all")


def parse_feed(value: str | Any) -> str:
    """A feed name, or alpaca-py's ``DataFeed`` enum, as stored: ``delayed_sip`` is ``sip``."""
    text = str(getattr(value, "value", value)).strip().lower()
    if text not in FEEDS:
        raise UsageError(f"unknown feed {_shown(value)}; choose one of: {', '.join(FEEDS)}")
    return _FEED_ALIASES.get(text, text)


def parse_adjustment(value: str | Any) -> str:
    """An adjustment, a comma combination of them, or alpaca-py's ``Adjustment`` enum, in canonical form:
    ``raw``, ``all``, or the parts in Alpaca's order (``split,spin-off``); all three parts are ``all``."""
    text = str(getattr(value, "value", value)).strip().lower()
    parts = {p.strip() for p in text.split(",") if p.strip()}
    unknown = parts - set(ADJUSTMENTS)
    if not parts or unknown:
        raise UsageError(
            f"unknown adjustment {_shown(value)}; choose {', '.join(ADJUSTMENTS)} or a comma combination "
            "such as split,spin-off"
        )
    if "all" in parts or parts >= set(ADJUSTMENT_PARTS):
        return "all"
    parts.discard("raw")
    return ",".join(p for p in ADJUSTMENT_PARTS if p in parts) or "raw"


def adjustment_suffix(adjustment: str) -> str:
    """The dataset-name suffix of an adjustment: ``split,spin-off`` -> ``split_spinoff`` (a directory name and
    a SQL identifier without quoting); empty for raw."""
    return "" if adjustment == "raw" else "_".join(p.replace("-", "") for p in adjustment.split(","))


def adjustment_from_suffix(suffix: str) -> str:
    """The inverse of :func:`adjustment_suffix`."""
    if not suffix:
        return "raw"
    names = {p.replace("-", ""): p for p in (*ADJUSTMENT_PARTS, "all")}
    return ",".join(names.get(p, p) for p in suffix.split("_"))


def wire_feed(feed: str) -> str:
    """The feed value sent on the historical bars endpoint (``delayed_sip`` is sent as ``sip``)."""
    return _FEED_ALIASES.get(feed, feed)


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(str(getattr(value, "value", value)))
    return text if len(text) <= limit else text[: limit - 4] + "...'"


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
        suffix = adjustment_suffix(self.adjustment)
        return f"equities_{self.timeframe.label}" + (f"_{suffix}" if suffix else "")
