"""What identifies a dataset on disk: its source, timeframe and price adjustment (and, in its record, its feed).

A dataset's directory name says all three: ``equities_1min`` (Alpaca's, named as before there were other
sources, so existing stores need no migration), ``massive_equities_1min``, ``sample_equities_1day_split``:
``[{source}_]equities_{label}[_{adjustment}]``. Two vendors' bars never share a directory, a coverage ledger
or a version table, and each directory stays a plain Hive-partitioned tree any engine reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataengine.errors import UsageError
from dataengine.timeframes import Timeframe, parse_timeframe

EQUITIES = "equities_"  # every dataset's name has it: after the source's prefix, before the bar size
# The sources by name: what each can do is dataengine.sources.source.SOURCES (a test holds the two equal); the
# names are here because a dataset's name says its source, and storage and the foundation read names.
DEFAULT_SOURCE = "alpaca"  # the source of a run that names none, and of every dataset recorded before sources
SOURCE_NAMES = ("alpaca", "massive", "sample")

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
    """Raw and adjusted bars, and two sources' bars, never share files: each (source, timeframe, adjustment)
    is its own directory."""

    timeframe: Timeframe
    adjustment: str = "raw"
    source: str = DEFAULT_SOURCE

    @classmethod
    def of(cls, timeframe: str | Timeframe, adjustment: str = "raw", source: str | None = None) -> DatasetKey:
        """A key from what a user typed (``source`` None: Alpaca's); :class:`UsageError` for anything unknown."""
        return cls(parse_timeframe(timeframe), parse_adjustment(adjustment), parse_source(source))

    @classmethod
    def from_name(cls, name: str) -> DatasetKey:
        """The key a directory name stands for (``massive_equities_1day`` -> massive, day, raw);
        :class:`UsageError` for a name this version cannot read."""
        source, label, adjustment = split_dataset_name(name)
        return cls(parse_timeframe(label), parse_adjustment(adjustment), source)

    @property
    def dirname(self) -> str:
        suffix = adjustment_suffix(self.adjustment)
        return f"{dataset_prefix(self.source)}{EQUITIES}{self.timeframe.label}" + (f"_{suffix}" if suffix else "")


def parse_source(value: str | None) -> str:
    """A source's name as stored (``alpaca``, ``massive``, ``sample``); None is Alpaca; UsageError otherwise."""
    if value is None:
        return DEFAULT_SOURCE
    text = str(value).strip().lower()
    if text not in SOURCE_NAMES:
        raise UsageError(f"unknown source {str(value)[:40]!r}; choose one of: {', '.join(SOURCE_NAMES)}")
    return text


def dataset_prefix(source: str) -> str:
    """What a source's dataset directories' names start with, before ``equities_``: nothing for Alpaca (stores
    written before there were other sources need no migration), else ``{name}_``."""
    return "" if source == DEFAULT_SOURCE else f"{source}_"


def dataset_prefixes() -> tuple[str, ...]:
    """What a dataset directory's name starts with, one per source: ``equities_``, ``massive_equities_``..."""
    return tuple(f"{dataset_prefix(name)}{EQUITIES}" for name in SOURCE_NAMES)


def split_dataset_name(name: str) -> tuple[str, str, str]:
    """(source, label, adjustment) of a dataset name: ``sample_equities_1day_split`` -> (sample, 1day, split);
    a name no source owns is Alpaca's, as it was before there were sources."""
    source, rest = DEFAULT_SOURCE, name
    for candidate in SOURCE_NAMES:
        prefix = f"{dataset_prefix(candidate)}{EQUITIES}"
        if candidate != DEFAULT_SOURCE and name.startswith(prefix):
            source, rest = candidate, name[len(prefix) :]
            break
    else:
        rest = name[len(EQUITIES) :] if name.startswith(EQUITIES) else name
    label, _, suffix = rest.partition("_")
    return source, label, adjustment_from_suffix(suffix)
