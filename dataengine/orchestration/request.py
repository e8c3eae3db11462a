"""An ingest request, validated: once built, nothing in it can fail the run with a usage error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, TypedDict

from dataengine.calendar import with_sip_note
from dataengine.datasets import DatasetKey, parse_adjustment, parse_feed
from dataengine.errors import UsageError
from dataengine.loaders.symbol_loader import clean_symbols
from dataengine.storage.coverage import Interval
from dataengine.timeframes import Timeframe, parse_timeframe
from dataengine.timerange import DEFAULT_START, SIP_SAFE_DELAY_MINUTES, TimeRange, resolve_range

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame

DateLike = str | date | datetime | None


@dataclass(frozen=True)
class IngestOptions:
    """How to ingest, whatever the symbols and dates: one value from the CLI or the Python API down to the
    request. ``feed``: sip, iex, otc, boats, delayed_sip; ``adjustment``: raw, split, dividend, spin-off, all
    or a comma combination; ``full_refresh``: ignore what is stored; ``lag``: sessions of the last fetch
    fetched again (late corrections); ``asof``: the date renamed symbols are mapped as of (``-``: none; None:
    the dataset's)."""

    feed: str = "sip"
    adjustment: str = "raw"
    full_refresh: bool = False
    lag: int = 1
    asof: str | date | None = None


class IngestKeywords(TypedDict, total=False):
    """:class:`IngestOptions` as the keyword arguments of the public ingest methods."""

    feed: str
    adjustment: str
    full_refresh: bool
    lag: int
    asof: str | date | None


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

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(self.timeframe, self.adjustment)


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
) -> IngestRequest:
    """Validate the user's input into a request; :class:`UsageError` names the first thing wrong."""
    clean = clean_symbols([symbols] if isinstance(symbols, str) else symbols)
    feed = parse_feed(options.feed)
    if options.lag < 0:
        raise UsageError(f"--lag must be 0 or more sessions, got {options.lag}")
    rng = with_sip_note(resolve_range(start_date if start_date is not None else default_start, end_date, feed=feed,
                                      sip_delay_minutes=sip_delay_minutes))
    return IngestRequest(
        symbols=tuple(clean),
        timeframe=parse_timeframe(timeframe),
        range=rng,
        feed=feed,
        adjustment=parse_adjustment(options.adjustment),
        start_given=start_date is not None,
        full_refresh=options.full_refresh,
        lag=options.lag,
        ranges={s: tuple(v) for s, v in ranges.items()} if ranges is not None else None,
        asof=parse_asof(options.asof),
    )


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
