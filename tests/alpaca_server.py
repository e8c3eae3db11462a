"""A local fake of Alpaca's historical stock-bars API (Market Data v2), for tests and benchmarks.

Wire protocol imitated (see /work/shared/alpaca-api.md §1.1–1.8):

* ``GET /v2/stocks/bars?symbols=A,B&timeframe=...`` -> ``{"bars": {"A": [...], ...}, "next_page_token": ...}``
* ``GET /v2/stocks/{symbol}/bars?timeframe=...``     -> ``{"bars": [...], "symbol": "A", "next_page_token": ...}``

Data is synthetic and deterministic: a bar's values are a pure function of (symbol, timeframe, bar timestamp,
feed, adjustment), so the same bar is served whatever range or page it is requested in.  The ground truth a
test compares against is :func:`synthetic_bars` / :func:`synthetic_frame` (or the same-named methods of a
:class:`FakeAlpaca`, which apply the server's :class:`Universe`).

Calendar model (NYSE sessions from exchange_calendars "XNYS", 2000-01-01 .. today+1y):

* 1Min bars cover 04:00-19:59 America/New_York on full days (960 bars) and 04:00-16:59 on early-close days
  (780 bars).  Holidays and weekends have no bars.
* nMin / nHour bars aggregate the 1Min bars (o first, h max, l min, c last, v and n summed, vw volume-weighted)
  in buckets aligned to multiples of n minutes / n hours since the Unix epoch (= whole UTC hours for 1Hour).
  A bucket is stamped with its start, which can lie before 04:00 NY when n does not divide 60 minutes.
* 1Day: one bar per session stamped at midnight America/New_York (04:00Z in EDT, 05:00Z in EST).  Daily values
  are generated independently of the minute bars (as on the real API, daily != aggregated minutes).
* 1Week / nMonth: aggregate the daily bars of the (ISO, Monday-based) week / calendar month(s), stamped with the
  first session of the period on which the symbol has data.
* Date-only ``start`` / ``end`` (``YYYY-MM-DD``) are read as 00:00:00Z of that date.

Run standalone: ``python tests/alpaca_server.py --port 8765 [--latency 0.05] [--rate-limit 200] [--rate-window 60]
[--rate-model fixed|rolling]``,
or ``python tests/alpaca_server.py --bench`` to time serving 1M minute bars.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import socket
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
import numpy as np

__all__ = [
    "FAULTS",
    "RATE_MODELS",
    "FakeAlpaca",
    "RequestRecord",
    "Universe",
    "clear_cache",
    "decode_page_token",
    "encode_page_token",
    "parse_time",
    "parse_timeframe",
    "realistic_density",
    "sessions_between",
    "set_cache_limit",
    "synthetic_arrays",
    "synthetic_bars",
    "synthetic_frame",
]

NS = 1_000_000_000
MIN_NS = 60 * NS
HOUR_NS = 60 * MIN_NS
DAY_NS = 24 * HOUR_NS
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
FAULTS = frozenset({"500", "502", "503", "504", "429", "drop", "hang", "partial"})
RATE_MODELS = ("fixed", "rolling")
ALLOWED_PARAMS = frozenset(
    {"symbols", "timeframe", "start", "end", "limit", "adjustment", "feed", "asof", "currency", "page_token", "sort"}
)
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MASK64 = (1 << 64) - 1

# --------------------------------------------------------------------------------------------------------------
# Time parsing / formatting
# --------------------------------------------------------------------------------------------------------------

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)
_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def parse_time(value: str | datetime | date | int) -> int:
    """RFC-3339 string (any offset, up to 9 fraction digits), ``YYYY-MM-DD`` (00:00Z), tz-aware datetime
    (incl. pandas.Timestamp), date (00:00Z) or int ns -> int nanoseconds since the epoch (UTC).
    Raises ValueError on anything else (naive datetimes included)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime not allowed: {value!r}")
        ns_extra = int(getattr(value, "nanosecond", 0) or 0)
        return ((value - _EPOCH) // timedelta(microseconds=1)) * 1000 + ns_extra
    if isinstance(value, date):
        return (datetime(value.year, value.month, value.day, tzinfo=timezone.utc) - _EPOCH) // timedelta(
            microseconds=1
        ) * 1000
    if not isinstance(value, str):
        raise ValueError(f"unsupported time value: {value!r}")
    m = _RFC3339_RE.match(value)
    if m:
        y, mo, d, hh, mi, ss, frac, off = m.groups()
        if off in ("Z", "z"):
            tz = timezone.utc
        else:
            sign = 1 if off[0] == "+" else -1
            oh, om = int(off[1:3]), int(off[4:6])
            if oh > 23 or om > 59:
                raise ValueError(f"bad offset in {value!r}")
            tz = timezone(sign * timedelta(hours=oh, minutes=om))
        dt = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), tzinfo=tz)  # ValueError if out of range
        frac_ns = int((frac or "").ljust(9, "0")) if frac else 0
        return ((dt - _EPOCH) // timedelta(seconds=1)) * NS + frac_ns
    m = _DATE_RE.match(value)
    if m:
        dt = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=timezone.utc)
        return ((dt - _EPOCH) // timedelta(seconds=1)) * NS
    raise ValueError(f"cannot parse time {value!r}")


def _fmt_ns9(ts_ns: int) -> str:
    """2024-01-02T09:00:00.000000000Z"""
    sec, frac = divmod(int(ts_ns), NS)
    return (_EPOCH + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise TypeError(f"expected date/str, got {value!r}")


# --------------------------------------------------------------------------------------------------------------
# Timeframes
# --------------------------------------------------------------------------------------------------------------

_TF_RE = re.compile(r"^([0-9]{1,3})(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT_ALIASES = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}
_TOKEN_LETTER = {"Min": "M", "Hour": "H", "Day": "D", "Week": "W", "Month": "N"}


class _TF(NamedTuple):
    amount: int
    unit: str  # Min | Hour | Day | Week | Month
    bucket_ns: int  # for Min/Hour, else 0
    chunk: str  # "session" | "year" | "all"

    @property
    def name(self) -> str:
        return f"{self.amount}{self.unit}"


def parse_timeframe(tf: str) -> _TF:
    """Alpaca wire timeframe -> _TF.  Raises ValueError for anything the API would reject with 422."""
    m = _TF_RE.match(str(tf))
    if not m:
        raise ValueError(f"invalid timeframe {tf!r}")
    amount, unit = int(m[1]), _UNIT_ALIASES.get(m[2], m[2])
    if unit == "Min" and 1 <= amount <= 59:
        return _TF(amount, unit, amount * MIN_NS, "session")
    if unit == "Hour" and 1 <= amount <= 23:
        # a bucket of more than 8 h can hold the tail of one session and the head of the next
        return _TF(amount, unit, amount * HOUR_NS, "session" if amount <= 8 else "year")
    if unit == "Day" and amount == 1:
        return _TF(1, unit, 0, "year")
    if unit == "Week" and amount == 1:
        return _TF(1, unit, 0, "all")
    if unit == "Month" and amount in (1, 2, 3, 4, 6, 12):
        return _TF(amount, unit, 0, "all")
    raise ValueError(f"invalid timeframe {tf!r}")


# --------------------------------------------------------------------------------------------------------------
# Sessions (NYSE via exchange_calendars; extracted once into numpy arrays)
# --------------------------------------------------------------------------------------------------------------


class _Sessions:
    def __init__(self) -> None:
        import exchange_calendars as xcals
        import pandas as pd

        # exchange_calendars 4.13 triggers a Pandas4Warning under pandas 3.1 (Series.values on tz-aware data);
        # the project runs pytest with filterwarnings=error, so keep it contained here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cal = xcals.get_calendar("XNYS", start="2000-01-01")
            sched = cal.schedule
            days = pd.DatetimeIndex(sched.index)
            ny = "America/New_York"
            close_local = pd.DatetimeIndex(sched["close"]).tz_convert(ny)
            midnight = days.tz_localize(ny)
            four_am = (days + pd.Timedelta(hours=4)).tz_localize(ny)
            self.day_ns = np.asarray(midnight.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8, dtype=np.int64)
            self.ws_ns = np.asarray(four_am.tz_convert("UTC").tz_localize(None).as_unit("ns").asi8, dtype=np.int64)
            close_min = np.asarray(close_local.hour * 60 + close_local.minute, dtype=np.int64)
            self.dates = [d.date() for d in days]
        # minutes from 04:00 to close + 4h, which equals the close in minutes after midnight
        # (16:00 -> 04:00-19:59 = 960 bars; 13:00 early close -> 04:00-16:59 = 780 bars)
        self.nmin = close_min
        self.we_ns = self.ws_ns + (self.nmin - 1) * MIN_NS  # last minute bar of the window
        self.ordinal = np.array([d.toordinal() for d in self.dates], dtype=np.int64)
        self.year = np.array([d.year for d in self.dates], dtype=np.int64)
        self.week_key = self.ordinal - np.array([d.weekday() for d in self.dates], dtype=np.int64)
        self.month_key = np.array([d.year * 12 + d.month - 1 for d in self.dates], dtype=np.int64)
        self.early = self.nmin < 960
        self.n = len(self.dates)
        years = np.unique(self.year)
        self.year_bounds = {int(y): (int(np.searchsorted(self.year, y, "left")), int(np.searchsorted(self.year, y, "right"))) for y in years}


_SESSIONS: _Sessions | None = None
_SESSIONS_LOCK = threading.Lock()


def _sessions() -> _Sessions:
    global _SESSIONS
    if _SESSIONS is None:
        with _SESSIONS_LOCK:
            if _SESSIONS is None:
                _SESSIONS = _Sessions()
    return _SESSIONS


# Tiers of a realistic mix: (share of symbols, regular-hours minutes with a bar, extended-hours minutes with one).
# A model, not a measurement of Alpaca's data: it averages ~620 bars a full session (960 minutes) over many symbols.
DENSITY_TIERS = ((0.4, 1.0, 0.7), (0.4, 0.98, 0.35), (0.2, 0.75, 0.06))


def realistic_density(symbols: Iterable[str]) -> dict[str, tuple[float, float]]:
    """A ``Universe(density=...)`` for ``symbols``: each falls in a tier of :data:`DENSITY_TIERS` by a hash of its
    name (liquid, middling, thin), so the same symbol always has the same bars."""
    out = {}
    for symbol in symbols:
        u = (_mix64(_symkey(symbol) ^ _SALT_TIER) >> 11) / (1 << 53)
        tier = DENSITY_TIERS[-1]
        for candidate in DENSITY_TIERS:
            if u < candidate[0]:
                tier = candidate
                break
            u -= candidate[0]
        out[symbol] = (tier[1], tier[2])
    return out


def sessions_between(first: date | str, last: date | str) -> list[date]:
    """NYSE session dates in [first, last] (helper for tests)."""
    s = _sessions()
    a, b = _to_date(first).toordinal(), _to_date(last).toordinal()
    return [s.dates[i] for i in range(int(np.searchsorted(s.ordinal, a)), int(np.searchsorted(s.ordinal, b, "right")))]


# --------------------------------------------------------------------------------------------------------------
# Universe: per-symbol data configuration shared by the server and the ground truth
# --------------------------------------------------------------------------------------------------------------


class _SymCfg(NamedTuple):
    nodata: bool
    thin: bool
    first: int | None  # date ordinal, inclusive
    last: int | None
    holes: frozenset  # of date ordinals
    # corporate actions that move prices: (ex-date ordinal, split ratio new/old or 1.0, cash per share or 0.0)
    events: tuple = ()
    # (share of regular-hours minutes with a bar, share of extended-hours minutes with one); None: every minute
    density: tuple[float, float] | None = None


_PLAIN_CFG = _SymCfg(False, False, None, None, frozenset())
_NODATA_CFG = _SymCfg(True, False, None, None, frozenset())


class Universe:
    """Which symbols have which data.  Every valid-looking symbol has full synthetic data unless configured here.

    thin      -- symbols where ~half of the minutes (deterministic per minute) have no 1Min bar
    no_data   -- symbols that never have bars (absent from the response map)
    listings  -- {symbol: (first_date, last_date)}: bars only on sessions in [first, last] (either may be None)
    holes     -- {symbol: [dates]}: sessions on which the symbol has no bars at all
    only      -- if given, symbols outside this set have no data (like no_data)
    density   -- {symbol: (regular, extended)}: the share of regular-hours (09:30-close) and of extended-hours
                 minutes that have a 1Min bar (deterministic per minute), as real data is: a liquid name trades
                 nearly every regular minute and some of the pre- and after-market ones, a thin one far fewer
                 (:func:`realistic_density` makes such a mix)
    """

    def __init__(
        self,
        *,
        thin: Iterable[str] = (),
        no_data: Iterable[str] = (),
        listings: Mapping[str, tuple[Any, Any]] | None = None,
        holes: Mapping[str, Iterable[Any]] | None = None,
        only: Iterable[str] | None = None,
        density: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.thin = frozenset(thin)
        self.density = {s: (float(a), float(b)) for s, (a, b) in (density or {}).items()}
        self.no_data = frozenset(no_data)
        self.listings = {
            s: (None if a is None else _to_date(a), None if b is None else _to_date(b)) for s, (a, b) in (listings or {}).items()
        }
        self.holes = {s: frozenset(_to_date(d) for d in ds) for s, ds in (holes or {}).items()}
        self.only = None if only is None else frozenset(only)
        # corporate actions the server knows, in Alpaca's record shape plus "type" (forward_split, ...)
        self.actions: list[dict[str, Any]] = []
        self._cfgs: dict[str, _SymCfg] = {}

    def announce(self, kind: str, **record: Any) -> dict[str, Any]:
        """Add one corporate action (Alpaca's fields: symbol, ex_date, process_date, new_rate/old_rate, rate,
        ...; an ``id`` is made if not given). Bars served from then on reflect it: raw bars of a split symbol
        jump at the ex-date, and ``adjustment=`` bars are computed from every action known at request time."""
        if kind not in _ACTION_GROUPS:
            raise ValueError(f"unknown corporate action type {kind!r}")
        action = {"type": kind, **record}
        action.setdefault("id", str(uuid.UUID(hashlib.md5(repr(sorted(action.items())).encode()).hexdigest())))  # Alpaca's ids are UUIDs
        for key in ("ex_date", "process_date", "payable_date", "record_date", "effective_date"):
            if key in action and action[key] is not None:
                action[key] = _to_date(action[key]).isoformat()
        self.actions = [a for a in self.actions if a["id"] != action["id"]] + [action]
        self._cfgs.clear()
        return action

    def _key(self) -> tuple:
        return (
            self.thin,
            self.no_data,
            tuple(sorted(self.listings.items())),
            tuple(sorted(self.holes.items())),
            self.only,
            tuple(sorted(self.density.items())),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Universe) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Universe(thin={set(self.thin)}, no_data={set(self.no_data)}, listings={self.listings}, "
            f"holes={ {k: sorted(v) for k, v in self.holes.items()} }, only={self.only})"
        )

    def has_data(self, symbol: str) -> bool:
        return not self.config(symbol).nodata

    def config(self, symbol: str) -> _SymCfg:
        cfg = self._cfgs.get(symbol)
        if cfg is None:
            if symbol in self.no_data or (self.only is not None and symbol not in self.only):
                cfg = _NODATA_CFG
            else:
                first, last = self.listings.get(symbol, (None, None))
                cfg = _SymCfg(
                    False,
                    symbol in self.thin,
                    None if first is None else first.toordinal(),
                    None if last is None else last.toordinal(),
                    frozenset(d.toordinal() for d in self.holes.get(symbol, ())),
                    density=self.density.get(symbol),
                )
            events = _price_events(symbol, self.actions)
            if events:
                cfg = cfg._replace(events=events)
            if cfg == _PLAIN_CFG:
                cfg = _PLAIN_CFG
            self._cfgs[symbol] = cfg
        return cfg


def _price_events(symbol: str, actions: list[dict[str, Any]]) -> tuple:
    """(ex ordinal, split ratio, cash per share) of the actions that move ``symbol``'s prices, by ex-date."""
    out = []
    for a in actions:
        if a.get("symbol") != symbol or not a.get("ex_date"):
            continue
        ex = date.fromisoformat(a["ex_date"]).toordinal()
        if a["type"] in ("forward_split", "reverse_split"):
            out.append((ex, float(a["new_rate"]) / float(a["old_rate"]), 0.0))
        elif a["type"] == "cash_dividend":
            out.append((ex, 1.0, float(a["rate"])))
    return tuple(sorted(out))


_DEFAULT_UNIVERSE = Universe()
_AVAIL_CACHE: dict[_SymCfg, np.ndarray] = {}


def _available(cfg: _SymCfg) -> np.ndarray:
    """Bool mask over all sessions: does the symbol trade that session?"""
    m = _AVAIL_CACHE.get(cfg)
    if m is None:
        s = _sessions()
        m = np.full(s.n, not cfg.nodata)
        if cfg.first is not None:
            m &= s.ordinal >= cfg.first
        if cfg.last is not None:
            m &= s.ordinal <= cfg.last
        if cfg.holes:
            m &= ~np.isin(s.ordinal, np.fromiter(cfg.holes, dtype=np.int64))
        m.setflags(write=False)
        if len(_AVAIL_CACHE) > 10_000:
            _AVAIL_CACHE.clear()
        _AVAIL_CACHE[cfg] = m
    return m


# --------------------------------------------------------------------------------------------------------------
# Deterministic values
# --------------------------------------------------------------------------------------------------------------


def _mix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _mix64_arr(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_SYMKEY_CACHE: dict[str, int] = {}


def _symkey(symbol: str) -> int:
    k = _SYMKEY_CACHE.get(symbol)
    if k is None:
        k = int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "little")
        _SYMKEY_CACHE[symbol] = k
    return k


def _uniform(symkey: int, salt: int, ts_u: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per timestamp, deterministic in (symbol, salt, ts)."""
    seed = np.uint64(_mix64(symkey ^ ((salt * 0xD1B54A32D192ED03) & _MASK64)))
    return (_mix64_arr(ts_u ^ seed) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _level(symkey: int, ts: np.ndarray) -> np.ndarray:
    base = 10.0 + (symkey % 49_000) / 100.0  # 10 .. 500
    phase = ((symkey >> 20) % 1000) / 1000.0 * 2 * math.pi
    days = ts.astype(np.float64) / DAY_NS
    return base * np.exp(0.15 * np.sin(2 * math.pi * days / 97.0 + phase) + 0.05 * np.sin(2 * math.pi * days / 11.3 + 2 * phase))


_SALT_MIN, _SALT_DAY, _SALT_THIN, _SALT_DENSITY, _SALT_TIER = 1, 101, 201, 301, 401


def _raw_values(symbol: str, ts: np.ndarray, daily: bool) -> dict[str, np.ndarray]:
    """Unrounded SIP/raw values for bars stamped ts (int64 ns)."""
    key = _symkey(symbol)
    ts_u = ts.astype(np.uint64)
    salt = _SALT_DAY if daily else _SALT_MIN
    u = [_uniform(key, salt + k, ts_u) for k in range(7)]
    lvl = _level(key, ts)
    spread, wick = (0.03, 0.015) if daily else (0.004, 0.002)
    o = lvl * (1.0 + spread * (u[0] - 0.5))
    c = lvl * (1.0 + spread * (u[1] - 0.5))
    h = np.maximum(o, c) * (1.0 + wick * u[2])
    lo = np.minimum(o, c) * (1.0 - wick * u[3])
    vw = lo + (h - lo) * (0.25 + 0.5 * u[4])
    if daily:
        v = 100_000 + np.floor(u[5] ** 2 * 20_000_000).astype(np.int64)
        n = 1 + v // (50 + np.floor(u[6] * 100).astype(np.int64))
    else:
        v = 100 + np.floor(u[5] ** 3 * 50_000).astype(np.int64)
        n = 1 + v // (20 + np.floor(u[6] * 80).astype(np.int64))
    return {"o": o, "h": h, "l": lo, "c": c, "v": v, "n": n, "vw": vw}


_FEED_VOLUME = {"sip": 1.0, "iex": 0.02, "otc": 0.05, "boats": 0.01}
_ADJ_FACTORS = {"raw": (1.0, 1.0), "split": (0.5, 2.0), "dividend": (0.98, 1.0), "spin-off": (0.95, 1.0)}


def _adjustment_factors(adjustment: str) -> tuple[float, float]:
    """'raw' | 'split' | 'dividend' | 'spin-off' | 'all' or a comma combination -> (price factor, volume factor)."""
    parts = set(str(adjustment).split(","))
    if "all" in parts:
        parts = (parts - {"all"}) | {"split", "dividend", "spin-off"}
    pf = vf = 1.0
    for p in parts:
        if p not in _ADJ_FACTORS:
            raise ValueError(f"invalid adjustment {adjustment!r}")
        pf *= _ADJ_FACTORS[p][0]
        vf *= _ADJ_FACTORS[p][1]
    return pf, vf


def _normalize_adjustment(adjustment: str) -> str:
    parts = set(str(adjustment).split(","))
    if "all" in parts:
        return "all"
    _adjustment_factors(adjustment)
    return ",".join(sorted(parts))


def _finalize(vals: dict[str, np.ndarray], feed: str, adjustment: str) -> dict[str, np.ndarray]:
    """Apply feed/adjustment, round prices to 4 decimals and enforce l <= min(o,c) <= max(o,c) <= h, l <= vw <= h."""
    pf, vf = _adjustment_factors(adjustment)
    fv = _FEED_VOLUME[feed]
    o = np.round(vals["o"] * pf, 4)
    c = np.round(vals["c"] * pf, 4)
    h = np.maximum(np.round(vals["h"] * pf, 4), np.maximum(o, c))
    lo = np.minimum(np.round(vals["l"] * pf, 4), np.minimum(o, c))
    vw = np.clip(np.round(vals["vw"] * pf, 4), lo, h)
    v = vals["v"]
    n = vals["n"]
    if fv != 1.0 or vf != 1.0:
        v = np.maximum(1, np.floor(v * (fv * vf))).astype(np.int64)
    if fv != 1.0:
        n = np.maximum(1, np.floor(n * fv)).astype(np.int64)
    return {"o": o, "h": h, "l": lo, "c": c, "v": v, "n": n, "vw": vw}


def _split_factor(cfg: _SymCfg, day_ord: np.ndarray) -> np.ndarray:
    """Per bar: how many of today's shares one share was on that day (the product of later splits' ratios)."""
    factor = np.ones(len(day_ord))
    for ex, ratio, _ in cfg.events:
        if ratio != 1.0:
            factor[day_ord < ex] *= ratio
    return factor


def raw_close_before(symbol: str, cfg: _SymCfg, ex_ordinal: int) -> float:
    """The raw daily close the server serves for the last session before ``ex_ordinal`` (a dividend's C)."""
    s = _sessions()
    k = int(np.searchsorted(s.ordinal, ex_ordinal, "left")) - 1
    day = s.day_ns[k : k + 1]
    base = _raw_values(symbol, day, daily=True)["c"]
    return float(np.round(base * _split_factor(cfg, s.ordinal[k : k + 1]), 4)[0])


def _apply_events(symbol: str, cfg: _SymCfg, vals: dict[str, np.ndarray], day_ord: np.ndarray, adjustment: str) -> tuple[dict[str, np.ndarray], str]:
    """Raw bars of a symbol with corporate actions, or bars adjusted for them (the CRSP-style factors the
    issue names): the synthetic series is the split-adjusted price; raw prices before a split are higher by its
    ratio, raw volumes lower. Returns the values and the adjustment left for :func:`_finalize` ("raw")."""
    parts = set(adjustment.split(","))
    by_split = bool(parts & {"split", "all"})
    by_dividend = bool(parts & {"dividend", "all"})
    shares = _split_factor(cfg, day_ord)
    raw_volume = np.maximum(1, np.floor(vals["v"] / shares)).astype(np.int64)
    price = shares.copy()  # raw = synthetic x split ratios still to come
    if by_split:
        price /= shares
    if by_dividend:
        for ex, _, cash in cfg.events:
            if cash:
                price[day_ord < ex] *= 1.0 - cash / raw_close_before(symbol, cfg, ex)
    out = {k: vals[k] * price for k in ("o", "h", "l", "c", "vw")}
    out["v"] = np.floor(raw_volume * shares + 1e-9).astype(np.int64) if by_split else raw_volume
    out["n"] = vals["n"]
    return out, "raw"


def _aggregate(ts_group: np.ndarray, stamps: np.ndarray, vals: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Aggregate consecutive rows with equal ts_group; the bar is stamped with stamps[first row of the group]."""
    if len(ts_group) == 0:
        return ts_group, vals
    starts = np.concatenate(([0], np.flatnonzero(np.diff(ts_group)) + 1))
    ends = np.concatenate((starts[1:], [len(ts_group)]))
    v = np.add.reduceat(vals["v"], starts)
    o = vals["o"][starts]
    c = vals["c"][ends - 1]
    h = np.maximum.reduceat(vals["h"], starts)
    lo = np.minimum.reduceat(vals["l"], starts)
    vw = np.clip(np.round(np.add.reduceat(vals["vw"] * vals["v"], starts) / v, 4), lo, h)
    n = np.add.reduceat(vals["n"], starts)
    return stamps[starts], {"o": o, "h": h, "l": lo, "c": c, "v": v, "n": n, "vw": vw}


def _minute_grid(symbol: str, cfg: _SymCfg, idx: np.ndarray) -> np.ndarray:
    s = _sessions()
    if len(idx) == 0:
        return np.empty(0, dtype=np.int64)
    nmin = s.nmin[idx]
    offs = np.arange(int(nmin.max()), dtype=np.int64) * MIN_NS
    inside = offs[None, :] < (nmin[:, None] * MIN_NS)
    grid = (s.ws_ns[idx][:, None] + offs[None, :])[inside]
    if cfg.thin:
        grid = grid[_uniform(_symkey(symbol), _SALT_THIN, grid.astype(np.uint64)) < 0.5]
    elif cfg.density is not None:
        # regular hours: 09:30 (330 minutes after the 04:00 window start) to the close (nmin - 240 minutes after it)
        minute = np.broadcast_to(offs[None, :] // MIN_NS, inside.shape)[inside]
        close = np.broadcast_to((nmin - 240)[:, None], inside.shape)[inside]
        share = np.where((minute >= 330) & (minute < close), cfg.density[0], cfg.density[1])
        grid = grid[_uniform(_symkey(symbol), _SALT_DENSITY, grid.astype(np.uint64)) < share]
    return grid


def _gen_arrays(symbol: str, cfg: _SymCfg, tf: _TF, feed: str, adjustment: str, chunk_id: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bars (ts ascending, finalized values) of one chunk.  chunk_id: session index / year / 0."""
    s = _sessions()
    avail = _available(cfg)
    if tf.chunk == "session":
        idx = np.array([chunk_id] if avail[chunk_id] else [], dtype=np.int64)
    elif tf.chunk == "year":
        a, b = s.year_bounds.get(chunk_id, (0, 0))
        idx = np.arange(a, b, dtype=np.int64)[avail[a:b]]
    else:
        idx = np.flatnonzero(avail)
    if tf.unit in ("Min", "Hour"):
        ts = _minute_grid(symbol, cfg, idx)
        vals = _raw_values(symbol, ts, daily=False)
        if cfg.events:
            day_ord = s.ordinal[np.searchsorted(s.ws_ns, ts, "right") - 1]
            vals, adjustment = _apply_events(symbol, cfg, vals, day_ord, adjustment)
        vals = _finalize(vals, feed, adjustment)
        if tf.bucket_ns != MIN_NS:
            bucket = ts // tf.bucket_ns * tf.bucket_ns
            ts, vals = _aggregate(bucket, bucket, vals)
        return ts, vals
    ts = s.day_ns[idx]
    vals = _raw_values(symbol, ts, daily=True)
    if cfg.events:
        vals, adjustment = _apply_events(symbol, cfg, vals, s.ordinal[idx], adjustment)
    vals = _finalize(vals, feed, adjustment)
    if tf.unit == "Day":
        return ts, vals
    if tf.unit == "Week":
        group = s.week_key[idx]
    else:
        group = s.month_key[idx] // tf.amount
    return _aggregate(group, ts, vals)


# --------------------------------------------------------------------------------------------------------------
# Encoded chunk cache
# --------------------------------------------------------------------------------------------------------------


class _WireBar(msgspec.Struct, gc=False):
    t: str
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: int
    n: int
    vw: float


_ENCODER = msgspec.json.Encoder()
_OPEN_BRACE = ord("{")


class _Chunk:
    __slots__ = ("buf", "nbytes", "off", "ts")

    def __init__(self, ts: np.ndarray, buf: bytes, off: np.ndarray) -> None:
        self.ts = ts  # int64 ns, ascending
        self.buf = memoryview(buf)  # b'[{...},{...}]'
        self.off = off  # positions of '{' of each bar, plus len(buf) as sentinel
        self.nbytes = len(buf) + ts.nbytes + off.nbytes + 200

    def span(self, i: int, j: int) -> memoryview:
        """Bars i..j-1 as JSON objects separated by commas (no brackets)."""
        return self.buf[int(self.off[i]) : int(self.off[j]) - 1]


def _encode_chunk(ts: np.ndarray, vals: dict[str, np.ndarray]) -> _Chunk:
    if len(ts) == 0:
        return _Chunk(ts, b"[]", np.array([2], dtype=np.int64))
    t = np.datetime_as_string(ts.astype("datetime64[ns]").astype("datetime64[s]"), unit="s", timezone="UTC").tolist()
    if np.any(ts % NS):  # never happens for generated data, but keep the encoder honest
        t = [_fmt_ns9(x).replace(".000000000Z", "Z") for x in ts.tolist()]
    bars = list(
        map(
            _WireBar,
            t,
            vals["o"].tolist(),
            vals["h"].tolist(),
            vals["l"].tolist(),
            vals["c"].tolist(),
            vals["v"].tolist(),
            vals["n"].tolist(),
            vals["vw"].tolist(),
        )
    )
    buf = _ENCODER.encode(bars)
    arr = np.frombuffer(buf, dtype=np.uint8)
    off = np.concatenate((np.flatnonzero(arr == _OPEN_BRACE), [len(buf)])).astype(np.int64)
    assert len(off) == len(ts) + 1
    return _Chunk(ts, buf, off)


class _ChunkCache:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._d: OrderedDict[tuple, _Chunk] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, make) -> _Chunk:
        with self._lock:
            ch = self._d.get(key)
            if ch is not None:
                self._d.move_to_end(key)
                return ch
        ch = make()
        with self._lock:
            if key not in self._d:
                self._d[key] = ch
                self.size += ch.nbytes
                while self.size > self.limit and len(self._d) > 1:
                    _, old = self._d.popitem(last=False)
                    self.size -= old.nbytes
        return ch

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self.size = 0


_CACHE = _ChunkCache(1 << 30)


def set_cache_limit(nbytes: int) -> None:
    """Bound the process-wide cache of encoded bars (default 1 GiB, ~110 bytes per minute bar)."""
    _CACHE.limit = int(nbytes)


def clear_cache() -> None:
    _CACHE.clear()


def _chunk(symbol: str, cfg: _SymCfg, tf: _TF, feed: str, adjustment: str, chunk_id: int) -> _Chunk:
    key = (symbol, cfg, tf.amount, tf.unit, feed, adjustment, chunk_id)
    return _CACHE.get(key, lambda: _encode_chunk(*_gen_arrays(symbol, cfg, tf, feed, adjustment, chunk_id)))


def _chunk_ids(cfg: _SymCfg, tf: _TF, lo: int, hi: int) -> list[int]:
    """Ids of the chunks that can hold bars stamped in [lo, hi], ascending."""
    if cfg.nodata or hi < lo:
        return []
    s = _sessions()
    if tf.chunk == "session":
        # bars of session k are stamped in [ws_k - bucket, we_k]
        a = int(np.searchsorted(s.we_ns, lo, "left"))
        b = int(np.searchsorted(s.ws_ns - tf.bucket_ns, hi, "right"))
        if b <= a:
            return []
        avail = _available(cfg)
        return (np.flatnonzero(avail[a:b]) + a).tolist()
    if tf.chunk == "year":
        # every bar of session k is stamped in [midnight_k - 1 day, we_k]
        a = int(np.searchsorted(s.we_ns, lo, "left"))
        b = int(np.searchsorted(s.day_ns - DAY_NS, hi, "right"))
        if b <= a:
            return []
        return list(range(int(s.year[a]), int(s.year[b - 1]) + 1))
    return [0]


def _iter_spans(symbol: str, cfg: _SymCfg, tf: _TF, feed: str, adjustment: str, lo: int, hi: int, desc: bool = False) -> Iterator[tuple[_Chunk, int, int]]:
    """(chunk, i, j) with bars i..j-1 of chunk stamped in [lo, hi], non-empty, in sort order of chunks."""
    ids = _chunk_ids(cfg, tf, lo, hi)
    if desc:
        ids = ids[::-1]
    for cid in ids:
        ch = _chunk(symbol, cfg, tf, feed, adjustment, cid)
        if len(ch.ts) == 0:
            continue
        i = int(np.searchsorted(ch.ts, lo, "left"))
        j = int(np.searchsorted(ch.ts, hi, "right"))
        if j > i:
            yield ch, i, j


# --------------------------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------------------------


def _check_feed(feed: str) -> str:
    feed = getattr(feed, "value", feed)
    if feed not in _FEED_VOLUME:
        raise ValueError(f"invalid feed {feed!r}")
    return feed


def _ground_truth_args(symbol: str, timeframe: Any, feed: Any, adjustment: Any, universe: Universe | None) -> tuple:
    """Normalise the ground-truth functions' arguments (alpaca-py enums accepted) the way the server does."""
    tf = parse_timeframe(getattr(timeframe, "value", timeframe))
    adjustment = _normalize_adjustment(getattr(adjustment, "value", adjustment))
    return tf, _check_feed(feed), adjustment, (universe or _DEFAULT_UNIVERSE).config(symbol)


def synthetic_bars(
    symbol: str,
    timeframe: str,
    start: datetime | str,
    end: datetime | str,
    *,
    feed: str = "sip",
    adjustment: str = "raw",
    universe: Universe | None = None,
) -> list[dict]:
    """Exactly the bars the server serves for one symbol with start <= t <= end (wire dicts, ascending t).

    ``universe`` must be the server's (``FakeAlpaca.universe``); or call ``server.synthetic_bars(...)``."""
    tf, feed, adjustment, cfg = _ground_truth_args(symbol, timeframe, feed, adjustment, universe)
    parts = [ch.span(i, j) for ch, i, j in _iter_spans(symbol, cfg, tf, feed, adjustment, parse_time(start), parse_time(end))]
    return msgspec.json.decode(b"[" + b",".join(parts) + b"]")


def synthetic_arrays(
    symbol: str,
    timeframe: str,
    start: datetime | str,
    end: datetime | str,
    *,
    feed: str = "sip",
    adjustment: str = "raw",
    universe: Universe | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(ts int64 ns, {"o","h","l","c","v","n","vw": arrays}) — same bars as synthetic_bars, uncached."""
    tf, feed, adjustment, cfg = _ground_truth_args(symbol, timeframe, feed, adjustment, universe)
    lo, hi = parse_time(start), parse_time(end)
    tss, valss = [], []
    for cid in _chunk_ids(cfg, tf, lo, hi):
        ts, vals = _gen_arrays(symbol, cfg, tf, feed, adjustment, cid)
        keep = (ts >= lo) & (ts <= hi)
        tss.append(ts[keep])
        valss.append({k: v[keep] for k, v in vals.items()})
    keys = ("o", "h", "l", "c", "v", "n", "vw")
    if not tss:
        return np.empty(0, np.int64), {k: np.empty(0, np.int64 if k in "vn" else np.float64) for k in keys}
    return np.concatenate(tss), {k: np.concatenate([v[k] for v in valss]) for k in keys}


def synthetic_frame(
    symbol: str,
    timeframe: str,
    start: datetime | str,
    end: datetime | str,
    *,
    feed: str = "sip",
    adjustment: str = "raw",
    universe: Universe | None = None,
):
    """synthetic_bars as a polars DataFrame: timestamp Datetime[us, UTC], open/high/low/close f64,
    volume/trade_count i64, vwap f64 (sorted by timestamp)."""
    import polars as pl

    ts, v = synthetic_arrays(symbol, timeframe, start, end, feed=feed, adjustment=adjustment, universe=universe)
    return pl.DataFrame(
        {
            "timestamp": pl.Series("timestamp", ts // 1000, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "open": pl.Series(v["o"], dtype=pl.Float64),
            "high": pl.Series(v["h"], dtype=pl.Float64),
            "low": pl.Series(v["l"], dtype=pl.Float64),
            "close": pl.Series(v["c"], dtype=pl.Float64),
            "volume": pl.Series(v["v"], dtype=pl.Int64),
            "trade_count": pl.Series(v["n"], dtype=pl.Int64),
            "vwap": pl.Series(v["vw"], dtype=pl.Float64),
        }
    )


# --------------------------------------------------------------------------------------------------------------
# Page tokens
# --------------------------------------------------------------------------------------------------------------


def encode_page_token(symbol: str, tf_unit_letter: str, ts_ns: int) -> str:
    return base64.b64encode(f"{symbol}|{tf_unit_letter}|{_fmt_ns9(ts_ns)}".encode()).decode()


def decode_page_token(token: str) -> tuple[str, str, int]:
    """-> (symbol, type letter, last timestamp ns).  Raises ValueError if malformed."""
    try:
        raw = base64.b64decode(token.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError("invalid page token") from e
    parts = raw.split("|")
    if len(parts) != 3 or not parts[0]:
        raise ValueError("invalid page token")
    return parts[0], parts[1], parse_time(parts[2])


# --------------------------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------------------------


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    time: float  # time.time() on arrival
    method: str
    path: str
    params: dict[str, str]  # first value of each query parameter
    symbols: tuple[str, ...]  # from the symbols param or the path
    page_token: str | None
    status: int = 0  # 0 = no response sent (drop, or hang interrupted by stop())
    bars: int = 0  # bars in the response body
    next_page_token: str | None = None
    fault: str | None = None  # injected fault applied to this request
    duration: float = 0.0
    # when the rate limit counted it (time.time()): rolling, from arrival for the window's length; fixed, its window
    counted: tuple[float, float] | None = None
    remaining: int | None = None  # the X-RateLimit-Remaining it was answered with
    arrived: float | None = None  # when the rate limit saw it (time.time(); after the latency, if any)


_SINGLE_PATH_RE = re.compile(r"/v2/stocks/([^/]+)/bars")
ACTIONS_PATH = "/v1/corporate-actions"
# Alpaca's corporate action types and the group each is listed under in a response body
_ACTION_GROUPS = {
    "forward_split": "forward_splits", "reverse_split": "reverse_splits", "unit_split": "unit_splits",
    "stock_dividend": "stock_dividends", "cash_dividend": "cash_dividends", "spin_off": "spin_offs",
    "cash_merger": "cash_mergers", "stock_merger": "stock_mergers", "stock_and_cash_merger": "stock_and_cash_mergers",
    "redemption": "redemptions", "name_change": "name_changes", "worthless_removal": "worthless_removals",
    "rights_distribution": "rights_distributions",
}
_ACTION_SYMBOL_FIELDS = ("symbol", "old_symbol", "new_symbol", "source_symbol", "acquiree_symbol", "acquirer_symbol")
ACTIONS_MAX_LIMIT = 1000


class _Drop(Exception):
    """Close the connection without answering."""


class _Reply(Exception):
    def __init__(self, status: int, body: dict | bytes, ctype: str = "application/json; charset=UTF-8") -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else msgspec.json.encode(body)
        self.ctype = ctype


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAlpaca/1.0"

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._register(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        self.server.fake._unregister(self.connection)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.fake._dispatch(self)  # type: ignore[attr-defined]

    def _not_allowed(self) -> None:
        self.server.fake._dispatch(self)  # type: ignore[attr-defined]

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:  # connection resets etc.: stay quiet
        pass


class FakeAlpaca:
    """Threaded fake of Alpaca's historical stock-bars endpoints on 127.0.0.1.

    >>> with FakeAlpaca(thin={"THIN"}) as srv:
    ...     client = StockHistoricalDataClient("test-key", "test-secret", raw_data=True, url_override=srv.url)
    """

    def __init__(
        self,
        *,
        key_id: str = "test-key",
        secret_key: str = "test-secret",
        auth_status: int = 401,
        latency_s: float = 0.0,
        rate_limit: int | None = None,
        rate_window_s: float = 60.0,
        rate_model: str = "fixed",
        free_plan: bool = False,
        universe: Universe | None = None,
        thin: Iterable[str] = (),
        no_data: Iterable[str] = (),
        listings: Mapping[str, tuple[Any, Any]] | None = None,
        holes: Mapping[str, Iterable[Any]] | None = None,
        invalid_symbols: Iterable[str] = frozenset(),
        empty_last_page: bool = False,
        hang_s: float = 30.0,
        port: int = 0,
    ) -> None:
        if universe is not None and (thin or no_data or listings or holes):
            raise ValueError("pass either universe= or thin/no_data/listings/holes, not both")
        if auth_status not in (401, 403):
            raise ValueError("auth_status must be 401 or 403")
        self.universe = universe or Universe(thin=thin, no_data=no_data, listings=listings, holes=holes)
        self.key_id, self.secret_key, self.auth_status = key_id, secret_key, auth_status
        self.latency_s = latency_s
        if rate_model not in RATE_MODELS:
            raise ValueError(f"rate_model must be one of {RATE_MODELS}")
        # Rate limit (Alpaca's headers on every answer: X-RateLimit-Limit, -Remaining, -Reset in whole epoch
        # seconds, "when the remaining quota changes"; Alpaca does not say which window it counts in):
        # fixed   -- the first request after a window expired opens the next one; all quota comes back at its end,
        #            and Reset is that end.
        # rolling -- a request counts for rate_window_s after it arrived, then ages out on its own; Reset is when
        #            the oldest request still counted ages out (some quota comes back then, not all of it).
        # Both count every request that reaches them, refused ones too, and round Reset up to the whole second.
        self.rate_limit, self.rate_window_s, self.rate_model = rate_limit, rate_window_s, rate_model
        self.free_plan = free_plan
        self.invalid_symbols = frozenset(invalid_symbols)
        self.empty_last_page = empty_last_page
        # Test modes (set them on a running server):
        # loop_symbol -- a request including this symbol that carries a page token gets that same token back
        #                (a server bug or a caching proxy): a client that follows tokens blindly never ends.
        # reject_all  -- (status, body): every bars request is refused this way (a request-wide 4xx).
        # renames     -- {new symbol: date it took that name}: with asof "-" or before that date the symbol
        #                has no bars before it (Alpaca maps FB's history to META only as of a later date).
        # canned      -- bodies answered (status 200) in order, one per request, before any normal answer.
        self.loop_symbol: str | None = None
        self.reject_all: tuple[int, dict[str, Any]] | None = None
        self.renames: dict[str, date] = {}
        self.canned: list[bytes] = []
        # actions_no_future -- refuse corporate-actions requests whose end lies after today (422), as a server
        #                      that does not list declared actions ahead might
        self.actions_no_future = False
        self.hang_s = hang_s
        self._slow: list[Any] | None = None  # [requests still fast, latency after them, endpoint]: slow_after()
        self._slowed = 0
        self.errors: list[BaseException] = []  # unexpected exceptions inside the server (should stay empty)
        self._port = port
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._faults: list[list[Any]] = []  # [fault, remaining, symbol]
        self._action_faults: list[list[Any]] = []
        self._tokens: dict[str, set] = {}
        self._win_start: float | None = None
        self._win_count = 0
        self._arrivals: deque[float] = deque()  # rolling model: arrival times still counted
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> FakeAlpaca:
        _sessions()  # build the calendar before the first request
        self._stop.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.fake = self  # type: ignore[attr-defined]
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeAlpaca", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; returns promptly even with hung requests (they are dropped)."""
        self._stop.set()
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._httpd = None

    def __enter__(self) -> FakeAlpaca:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _register(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    # -- test controls ---------------------------------------------------------------------------------------
    def inject(self, fault: str | int, *, count: int = 1, symbol: str | None = None, with_token: bool = False,
               endpoint: str = "bars") -> None:
        """Make the next `count` bars requests (whose symbols include `symbol`, if given; that carry a page
        token, if `with_token`) fail with `fault`: "500" (text/plain body), "502", "503", "504", "429", "drop"
        (close without response), "hang" (answer after hang_s, or drop at stop()), "partial" (headers + half
        the body, then close). ``endpoint="actions"``: the next corporate-actions requests instead."""
        fault = str(fault)
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        if count < 1:
            raise ValueError("count must be >= 1")
        if endpoint not in ("bars", "actions"):
            raise ValueError("endpoint must be 'bars' or 'actions'")
        with self._lock:
            (self._faults if endpoint == "bars" else self._action_faults).append([fault, count, symbol, with_token])

    def slow_after(self, requests: int, latency_s: float, *, endpoint: str = "bars") -> None:
        """Answer the next ``requests`` bars requests (corporate-actions ones with ``endpoint="actions"``,
        every request with ``"all"``) after the server's :attr:`latency_s`, and every one arriving after them
        after the ``latency_s`` given here: a run a test stops after its ``requests``-th answer is certainly still under way when the
        test acts, however late a loaded machine lets it act. Decided on arrival, so set it before the run;
        :attr:`slowed` counts the requests held so (``slow_after(0, ...)`` then tells a test a request is under
        way, which the log, written on answering, cannot)."""
        if requests < 0 or latency_s < 0:
            raise ValueError("requests and latency_s must be >= 0")
        if endpoint not in ("bars", "actions", "all"):
            raise ValueError("endpoint must be 'bars', 'actions' or 'all'")
        with self._lock:
            self._slow, self._slowed = [requests, latency_s, endpoint], 0

    @property
    def slowed(self) -> int:
        """How many requests have arrived since :meth:`slow_after` past its fast ones (held at its latency)."""
        with self._lock:
            return self._slowed

    def _latency(self, actions: bool) -> float:
        """The latency of a request arriving now (see :meth:`slow_after`)."""
        with self._lock:
            slow = self._slow
            if slow is None or (slow[2] != "all" and (slow[2] == "actions") != actions):
                return self.latency_s
            if slow[0] > 0:
                slow[0] -= 1
                return self.latency_s
            self._slowed += 1
            return float(slow[1])

    def announce(self, kind: str, **record: Any) -> dict[str, Any]:
        """Announce a corporate action on the running server (see :meth:`Universe.announce`)."""
        with self._lock:
            return self.universe.announce(kind, **record)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._action_faults.clear()

    @property
    def pending_faults(self) -> list[tuple[str, int, str | None]]:
        with self._lock:
            return [(f[0], f[1], f[2]) for f in self._faults]

    @property
    def all_requests(self) -> list[RequestRecord]:
        """Snapshot of the request log (thread-safe copy): every request, bars and corporate actions."""
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> list[RequestRecord]:
        """The requests for bars (what most tests count and inspect)."""
        return [r for r in self.all_requests if r.path != ACTIONS_PATH]

    @property
    def action_requests(self) -> list[RequestRecord]:
        """The requests for corporate actions."""
        return [r for r in self.all_requests if r.path == ACTIONS_PATH]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def reset_rate_limit(self) -> None:
        with self._lock:
            self._win_start, self._win_count = None, 0
            self._arrivals.clear()

    def synthetic_bars(self, symbol: str, timeframe: str, start: Any, end: Any, *, feed: str = "sip", adjustment: str = "raw") -> list[dict]:
        return synthetic_bars(symbol, timeframe, start, end, feed=feed, adjustment=adjustment, universe=self.universe)

    def synthetic_frame(self, symbol: str, timeframe: str, start: Any, end: Any, *, feed: str = "sip", adjustment: str = "raw"):
        return synthetic_frame(symbol, timeframe, start, end, feed=feed, adjustment=adjustment, universe=self.universe)

    def prewarm(self, symbols: Iterable[str], timeframe: str, start: Any, end: Any, *, feed: str = "sip", adjustment: str = "raw") -> int:
        """Generate and cache the encoded bars a benchmark will fetch, so timings exclude generation.
        Returns the number of bars cached."""
        tf = parse_timeframe(timeframe)
        feed = _check_feed(feed)
        adjustment = _normalize_adjustment(adjustment)
        lo, hi = parse_time(start), parse_time(end)
        return sum(
            j - i for sym in symbols for _, i, j in _iter_spans(sym, self.universe.config(sym), tf, feed, adjustment, lo, hi)
        )

    # -- request handling ------------------------------------------------------------------------------------
    def _rate(self, rec: RequestRecord) -> tuple[bool, dict[str, str]]:
        with self._lock:
            now = time.time()
            if self.rate_model == "rolling":
                while self._arrivals and self._arrivals[0] <= now - self.rate_window_s:
                    self._arrivals.popleft()
                self._arrivals.append(now)
                count, reset = len(self._arrivals), self._arrivals[0] + self.rate_window_s
                rec.counted = (now, now + self.rate_window_s)
            else:
                if self._win_start is None or now >= self._win_start + self.rate_window_s:
                    self._win_start, self._win_count = now, 0
                self._win_count += 1
                count, reset = self._win_count, self._win_start + self.rate_window_s
                rec.counted = (self._win_start, reset)  # it spent its window's quota, whenever in the window
            limit = self.rate_limit if self.rate_limit is not None else 10_000
            ok = self.rate_limit is None or count <= self.rate_limit
            rec.remaining, rec.arrived = max(0, limit - count), now
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(max(0, limit - count)),
                "X-RateLimit-Reset": str(math.ceil(reset)),
            }
        return ok, headers

    def quota_use(self, start: float, end: float) -> float:
        """The share of the rate limit that answered requests (status 200) held from ``start`` to ``end``
        (time.time() instants), as this server counts them: the mean over that span of the answered requests
        it counted, divided by the limit. A request in a fixed window holds its slot for the whole window (the
        window's quota is spent, whenever in it the request came). A client that keeps the limit in use scores
        1.0; idle quota, and quota spent on refused requests, lower it. Every client's requests count: the quota
        is the key's."""
        if self.rate_limit is None or end <= start:
            return float("nan")
        held = 0.0
        for rec in self.all_requests:
            if rec.status == 200 and rec.counted is not None:
                held += max(0.0, min(rec.counted[1], end) - max(rec.counted[0], start))
        return held / (self.rate_limit * (end - start))

    def run_quota_use(self, records: list[RequestRecord]) -> tuple[float, float]:
        """:meth:`quota_use` over one client run's requests: (from its first request to its last, from the first
        of them the server counted at the limit to its last). Until a run first meets the limit it is held back
        only by how fast it sends, not by the limit; the second figure measures how it keeps the limit in use
        once it is (nan if it never met it)."""
        arrived = sorted((r.arrived, r.remaining) for r in records if r.arrived is not None)
        if not arrived:
            return float("nan"), float("nan")
        limited = [t for t, remaining in arrived if remaining == 0]
        last = arrived[-1][0]
        return self.quota_use(arrived[0][0], last), (self.quota_use(limited[0], last) if limited else float("nan"))

    def _take_fault(self, symbols: tuple[str, ...], has_token: bool = False, actions: bool = False) -> str | None:
        with self._lock:
            faults = self._action_faults if actions else self._faults
            for f in faults:
                if (f[2] is None or f[2] in symbols) and (has_token or not f[3]):
                    f[1] -= 1
                    if f[1] <= 0:
                        faults.remove(f)
                    return f[0]
        return None

    def _dispatch(self, h: _Handler) -> None:
        t0 = time.time()
        split = urlsplit(h.path)
        raw_params = parse_qs(split.query, keep_blank_values=True)
        params = {k: v[0] for k, v in raw_params.items()}
        path = split.path
        m = _SINGLE_PATH_RE.fullmatch(path)
        single = m is not None
        if m is not None:
            symbols: tuple[str, ...] = (unquote(m[1]),)
        else:
            symbols = tuple(s for s in params.get("symbols", "").split(",") if s)
        rec = RequestRecord(t0, h.command, path, params, symbols, params.get("page_token") or None)
        headers: dict[str, str] = {}
        reply: _Reply | None = None  # None: close the connection without answering
        partial = False
        latency_s = self._latency(path == ACTIONS_PATH)
        try:
            if latency_s > 0 and self._stop.wait(latency_s):
                raise _Drop
            ok, headers = self._rate(rec)
            if not ok:
                raise _Reply(429, {"message": "rate limit exceeded"})
            actions = path == ACTIONS_PATH
            fault = self._take_fault(symbols, rec.page_token is not None, actions=actions)
            rec.fault = fault
            if fault == "hang":
                if self._stop.wait(self.hang_s):
                    raise _Drop
            elif fault == "drop":
                raise _Drop
            elif fault == "429":
                headers["X-RateLimit-Remaining"] = "0"
                raise _Reply(429, {"message": "rate limit exceeded"})
            elif fault == "500":
                raise _Reply(500, b"internal server error", "text/plain; charset=utf-8")
            elif fault in ("502", "503", "504"):
                text = {"502": "bad gateway", "503": "service unavailable", "504": "gateway timeout"}[fault]
                raise _Reply(int(fault), text.encode(), "text/plain; charset=utf-8")
            if h.headers.get("APCA-API-KEY-ID") != self.key_id or h.headers.get("APCA-API-SECRET-KEY") != self.secret_key:
                raise _Reply(self.auth_status, {"message": "unauthorized" if self.auth_status == 401 else "forbidden"})
            if h.command != "GET":
                raise _Reply(405, {"message": "method not allowed"})
            if actions:
                raise _Reply(200, self._corporate_actions(params))
            if path != "/v2/stocks/bars" and not single:
                raise _Reply(404, {"message": "Not Found"})
            if self.reject_all is not None:
                raise _Reply(*self.reject_all)
            with self._lock:
                canned = self.canned.pop(0) if self.canned else None
            if canned is not None:
                raise _Reply(200, canned)
            body, rec.bars, rec.next_page_token = self._bars(params, symbols, single, path)
            reply = _Reply(200, body)
            partial = fault == "partial"
        except _Reply as r:
            reply = r
        except _Drop:
            reply = None
        except Exception as e:  # a bug in the fake: answer 500 and remember it
            self.errors.append(e)
            reply = _Reply(500, f"fake server bug: {e!r}".encode(), "text/plain; charset=utf-8")
        # log before answering, so a client that got its response always finds its request in the log
        rec.status = 0 if reply is None else reply.status
        rec.duration = time.time() - t0
        with self._lock:
            self._log.append(rec)
        if reply is None:
            h.close_connection = True
        else:
            self._send(h, reply.status, reply.body, reply.ctype, headers, partial=partial)

    def _send(self, h: _Handler, status: int, body: bytes, ctype: str, headers: dict[str, str], partial: bool = False) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            if partial:
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            else:
                h.wfile.write(body)
        except OSError:
            h.close_connection = True

    def _corporate_actions(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /v1/corporate-actions``: records grouped by type, filtered by symbols, types and *process* date
        (both default to today, as on Alpaca), ``limit`` records a page, sorted by process date."""
        allowed = {"symbols", "cusips", "types", "start", "end", "ids", "limit", "sort", "page_token"}
        unexpected = [k for k in params if k not in allowed]
        if unexpected:
            raise _Reply(400, {"code": 40010001, "message": f"unexpected query parameter(s): {', '.join(unexpected)}"})
        types = [t for t in (params.get("types") or "").split(",") if t]
        bad = [t for t in types if t not in _ACTION_GROUPS]
        if bad:
            raise _Reply(400, {"code": 40010001, "message": f"invalid types: {','.join(bad)}"})
        today = datetime.now(timezone.utc).date()
        try:
            start = date.fromisoformat(params["start"]) if params.get("start") else today
            end = date.fromisoformat(params["end"]) if params.get("end") else today
        except ValueError:
            raise _Reply(400, {"code": 40010001, "message": "invalid date: use YYYY-MM-DD"}) from None
        if self.actions_no_future and end > today:
            raise _Reply(422, {"code": 42210000, "message": "end must not be in the future"})
        try:
            limit = int(params.get("limit") or 100)
        except ValueError:
            raise _Reply(400, {"code": 40010001, "message": f"invalid limit: {params.get('limit')}"}) from None
        if not 1 <= limit <= ACTIONS_MAX_LIMIT:
            raise _Reply(422, {"code": 42210000, "message": f"invalid limit: must be between 1 and {ACTIONS_MAX_LIMIT}"})
        symbols = {x for x in (params.get("symbols") or "").split(",") if x}
        with self._lock:
            known = list(self.universe.actions)
        rows = [
            a for a in known
            if (not symbols or any(a.get(f) in symbols for f in _ACTION_SYMBOL_FIELDS))
            and (not types or a["type"] in types)
            and start.isoformat() <= a["process_date"] <= end.isoformat()
        ]
        rows.sort(key=lambda a: (a["process_date"], a["id"]), reverse=params.get("sort") == "desc")
        offset = 0
        if params.get("page_token"):
            try:
                offset = int(base64.urlsafe_b64decode(params["page_token"].encode()).decode().split(":")[1])
            except (ValueError, IndexError, binascii.Error):
                raise _Reply(400, {"code": 40010001, "message": "invalid page token"}) from None
        page = rows[offset : offset + limit]
        groups: dict[str, list[dict[str, Any]]] = {}
        for a in page:
            groups.setdefault(_ACTION_GROUPS[a["type"]], []).append({k: v for k, v in a.items() if k != "type"})
        more = offset + limit < len(rows)
        token = base64.urlsafe_b64encode(f"ca:{offset + limit}".encode()).decode() if more else None
        return {"corporate_actions": groups, "next_page_token": token}

    def _renamed(self, cfg: _SymCfg, symbol: str, asof: str | None) -> _SymCfg:
        """A renamed symbol's history before its rename is served only when asof maps it (a date on or after
        the rename, or no asof: today)."""
        renamed = self.renames.get(symbol)
        if renamed is None or (asof not in ("-",) and (asof is None or asof == "" or date.fromisoformat(asof) >= renamed)):
            return cfg
        first = max(cfg.first or 0, renamed.toordinal())
        return cfg._replace(first=first)

    def _bars(self, params: dict[str, str], symbols: tuple[str, ...], single: bool, path: str) -> tuple[bytes, int, str | None]:
        unexpected = [k for k in params if k not in ALLOWED_PARAMS or (single and k == "symbols")]
        if unexpected:
            raise _Reply(400, {"message": f"unexpected query parameter(s): {', '.join(unexpected)}"})
        if not single and "symbols" not in params:
            raise _Reply(400, {"code": 40010001, "message": "missing symbols"})
        if not symbols:
            raise _Reply(400, {"code": 40010001, "message": "invalid symbol: "})
        for s in symbols:
            if not SYMBOL_RE.match(s) or s in self.invalid_symbols:
                raise _Reply(400, {"code": 40010001, "message": f"invalid symbol: {s}"})
        try:
            tf = parse_timeframe(params.get("timeframe", ""))
        except ValueError:
            raise _Reply(422, {"code": 42210000, "message": "invalid timeframe"}) from None
        limit_s = params.get("limit", "")
        if limit_s == "":
            limit = DEFAULT_LIMIT
        else:
            try:
                limit = int(limit_s)
            except ValueError:
                raise _Reply(400, {"code": 40010001, "message": f"invalid limit: {limit_s}"}) from None
            if not 1 <= limit <= MAX_LIMIT:
                raise _Reply(422, {"code": 42210000, "message": f"invalid limit: must be between 1 and {MAX_LIMIT}"})
        try:
            adjustment = _normalize_adjustment(params.get("adjustment") or "raw")
        except ValueError:
            raise _Reply(400, {"code": 40010001, "message": f"invalid adjustment: {params.get('adjustment')}"}) from None
        feed_param = params.get("feed")
        if feed_param is not None and feed_param not in _FEED_VOLUME:
            raise _Reply(400, {"code": 40010001, "message": f"invalid feed: {feed_param}"})
        sort = params.get("sort") or "asc"
        if sort not in ("asc", "desc"):
            raise _Reply(400, {"code": 40010001, "message": f"invalid sort: {sort}"})
        asof = params.get("asof")
        if asof not in (None, "", "-") and not _DATE_RE.match(asof):
            raise _Reply(400, {"code": 40010001, "message": f"invalid asof: {asof}"})
        currency = params.get("currency")
        if currency not in (None, "") and not re.fullmatch(r"[A-Z]{3}", currency):
            raise _Reply(400, {"code": 40010001, "message": f"invalid currency: {currency}"})
        now_ns = time.time_ns()
        delayed = now_ns - 15 * MIN_NS
        try:
            start = parse_time(params["start"]) if params.get("start") else None
        except ValueError:
            raise _Reply(400, {"code": 40010001, "message": f"invalid start: {params['start']}"}) from None
        try:
            end = parse_time(params["end"]) if params.get("end") else None
        except ValueError:
            raise _Reply(400, {"code": 40010001, "message": f"invalid end: {params['end']}"}) from None
        feed = feed_param or ("iex" if self.free_plan and (end is None or end > delayed) else "sip")
        if end is None:
            end = delayed if (self.free_plan and feed == "sip") else now_ns
        if start is None:
            start = now_ns - now_ns % DAY_NS
        if start > end:
            raise _Reply(400, {"code": 40010001, "message": "end should not be before start"})
        if self.free_plan and feed == "sip" and end > delayed:
            raise _Reply(403, {"message": "subscription does not permit querying recent SIP data"})
        if feed == "otc" and self.free_plan:
            raise _Reply(403, {"message": "subscription does not permit querying OTC data"})

        syms = sorted(set(symbols))
        desc = sort == "desc"
        letter = _TOKEN_LETTER[tf.unit]
        fingerprint = (path, tuple(sorted((k, v) for k, v in params.items() if k not in ("page_token", "limit"))))
        token = params.get("page_token") or None
        tok_sym, tok_ts = None, 0
        if token is not None:
            try:
                tok_sym, tok_letter, tok_ts = decode_page_token(token)
            except ValueError:
                raise _Reply(400, {"code": 40010001, "message": "invalid page token"}) from None
            if tok_sym not in syms or tok_letter != letter:
                raise _Reply(400, {"code": 40010001, "message": "invalid page token"})
            with self._lock:
                issued = self._tokens.get(token)
            if issued is not None and fingerprint not in issued:
                raise _Reply(400, {"code": 40010001, "message": "page token does not match the query parameters"})

        need = limit
        more = False
        segments: list[tuple[str, list]] = []
        last: tuple[str, int] | None = None
        for sym in syms:
            if tok_sym is not None and sym < tok_sym:
                continue
            cfg = self._renamed(self.universe.config(sym), sym, asof)
            lo, hi = start, end
            if sym == tok_sym:
                if desc:
                    hi = min(hi, tok_ts - 1)
                else:
                    lo = max(lo, tok_ts + 1)
            parts: list = []
            for ch, i, j in _iter_spans(sym, cfg, tf, feed, adjustment, lo, hi, desc):
                if need == 0:
                    more = True
                    break
                take = min(j - i, need)
                if desc:
                    a = j - take
                    parts.extend(ch.span(k, k + 1) for k in range(j - 1, a - 1, -1))
                    last = (sym, int(ch.ts[a]))
                else:
                    parts.append(ch.span(i, i + take))
                    last = (sym, int(ch.ts[i + take - 1]))
                need -= take
                if take < j - i or (need == 0 and self.empty_last_page):
                    # more bars in this chunk; with empty_last_page a full page always carries a token
                    more = True
                    break
            if parts:
                segments.append((sym, parts))
            if more:
                break
        nbars = limit - need
        next_token = encode_page_token(last[0], letter, last[1]) if (more and last is not None) else None
        if self.loop_symbol in syms and token is not None:
            next_token = token  # the looping server: the token it was given, again
        if next_token is not None:
            with self._lock:
                if len(self._tokens) > 1_000_000:
                    self._tokens.clear()
                self._tokens.setdefault(next_token, set()).add(fingerprint)
        tok_json = b"null" if next_token is None else b'"' + next_token.encode() + b'"'
        if single:
            parts = segments[0][1] if segments else []
            body = b'{"bars":[' + b",".join(parts) + b'],"symbol":' + msgspec.json.encode(symbols[0]) + b',"next_page_token":' + tok_json + b"}"
        else:
            inner = b",".join(b'"' + sym.encode() + b'":[' + b",".join(parts) + b"]" for sym, parts in segments)
            body = b'{"bars":{' + inner + b'},"next_page_token":' + tok_json + b"}"
        return body, nbars, next_token




# --------------------------------------------------------------------------------------------------------------
# Standalone use / benchmark
# --------------------------------------------------------------------------------------------------------------


def _bench(n_bars: int = 1_000_000, page: int = 10_000) -> None:
    import requests

    syms = [f"S{i:03d}" for i in range(10)]
    days_needed = math.ceil(n_bars / len(syms) / 960)
    sess = sessions_between("2024-01-01", "2024-12-31")[:days_needed]
    start = f"{sess[0].isoformat()}T00:00:00Z"
    end = f"{(sess[-1] + timedelta(days=1)).isoformat()}T00:00:00Z"
    with FakeAlpaca() as srv, requests.Session() as http:
        hdr = {"APCA-API-KEY-ID": "test-key", "APCA-API-SECRET-KEY": "test-secret"}
        for label in ("cold (generate+encode+serve)", "warm (cached)", "warm + json decode"):
            t0 = time.perf_counter()
            total, pages, token, nbytes = 0, 0, None, 0
            while total < n_bars:
                q = {"symbols": ",".join(syms), "timeframe": "1Min", "start": start, "end": end, "limit": page, "feed": "sip"}
                if token:
                    q["page_token"] = token
                r = http.get(srv.url + "/v2/stocks/bars", params=q, headers=hdr)
                r.raise_for_status()
                nbytes += len(r.content)
                if label.endswith("decode"):
                    d = msgspec.json.decode(r.content)
                    token = d["next_page_token"]
                else:
                    token = r.content.rsplit(b'"next_page_token":', 1)[1][:-1].strip(b'"').decode()
                    token = None if token == "null" else token
                total += page
                pages += 1
                if not token:
                    break
            dt = time.perf_counter() - t0
            print(f"{label}: {total:,} bars in {pages} pages, {nbytes / 1e6:.0f} MB, {dt:.2f} s ({total / dt / 1e6:.2f} M bars/s)")


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--rate-limit", type=int, default=None)
    ap.add_argument("--rate-window", type=float, default=60.0, help="seconds a request counts against the limit")
    ap.add_argument("--rate-model", choices=RATE_MODELS, default="fixed")
    ap.add_argument("--free-plan", action="store_true")
    ap.add_argument("--bench", action="store_true", help="time serving 1M minute bars in pages of 10,000 and exit")
    a = ap.parse_args(argv)
    if a.bench:
        _bench()
        return
    srv = FakeAlpaca(port=a.port, latency_s=a.latency, rate_limit=a.rate_limit, rate_window_s=a.rate_window,
                     rate_model=a.rate_model, free_plan=a.free_plan).start()
    serve_until_interrupted(srv, f"FakeAlpaca serving on {srv.url} (key test-key / test-secret)")


def serve_until_interrupted(server: Any, announce: str) -> None:
    """Say where a fake started by hand serves, then serve until Ctrl-C (the Massive fake's main too)."""
    print(f"{announce}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
