"""A local fake of Massive's (ex-Polygon) stock aggregates and reference API, for tests.

Wire protocol imitated (/work/shared/massive-api.md; bodies shaped after Massive's published OpenAPI examples
and the recorded responses in its Python client's tests; error bodies after ones Massive users logged):

* ``GET /v2/aggs/ticker/{T}/range/{n}/{timespan}/{from}/{to}?adjusted=&sort=asc&limit=`` ->
  ``{"ticker", "queryCount", "resultsCount", "adjusted", "results": [{"v", "vw", "o", "c", "h", "l", "t", "n"}],
  "status": "OK", "request_id", "count", "next_url"}``. ``from``/``to``: ms timestamps, or ``YYYY-MM-DD`` New
  York days; both ends inclusive on a bar's start ``t`` (ms UTC). ``adjusted`` defaults to true (split-adjusted
  bars). ``limit`` (default 5,000, at most 50,000) counts *base* aggregates: minute bars for minute/hour sizes,
  daily bars for day/week/month; a page holds whole bars built from at most ``limit`` of them. ``next_url``
  continues at the next bar (its ``t`` as the path's ``from``) with the query in a base64 ``cursor``, as Massive's
  do; ``results`` is absent when empty and ``next_url`` on the last page. ``v`` is written as a float.
* ``GET /v3/reference/splits?ticker=&execution_date.gte=&...`` and ``/v3/reference/dividends?ticker=&
  ex_dividend_date.gte=&...``: ``{"results": [...], "status": "OK", "request_id", "next_url"}``, ``limit``
  (default 10, at most 1,000) records a page.
* Auth: ``Authorization: Bearer KEY`` (or ``?apiKey=``); else 401 ``{"status": "ERROR", "error": "Unknown API
  Key"}``. A range before ``history_from``: 403 ``NOT_AUTHORIZED``. Over ``rate_limit``: 429, no headers.

Values come from the Alpaca fake's generators (tests/alpaca_server.py: the same sessions, 04:00-20:00 minute
bars, and a :class:`Universe` of symbols and corporate actions: raw bars of a split symbol jump at its ex-date).
Week bars are stamped on the Sunday starting the week, month bars on the 1st, midnight New York (Massive's
convention as far as it is known); N-minute and N-hour bars on multiples of N since the epoch.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import polars as pl

from tests.alpaca_server import (
    Universe,
    _aggregate,
    _Drop,
    _Handler,
    _HTTPServer,
    _Reply,
    serve_until_interrupted,
    synthetic_arrays,
)

NS, MIN_NS = 1_000_000_000, 60_000_000_000
HOUR_NS, DAY_NS = 60 * MIN_NS, 24 * 60 * MIN_NS
NY = ZoneInfo("America/New_York")
_EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
MAX_LIMIT, DEFAULT_LIMIT = 50_000, 5_000
FAULTS = frozenset({"429", "500", "502", "503", "504", "drop", "hang", "slow", "partial"})
SPLITS, DIVIDENDS = "/v3/reference/splits", "/v3/reference/dividends"
_REF = {SPLITS: ("execution_date", ("forward_split", "reverse_split")), DIVIDENDS: ("ex_dividend_date", ("cash_dividend",))}
_AGGS = "/v2/aggs/ticker/"
_SPANS = {"minute": ("m", 1), "hour": ("m", 60), "day": ("d", 1), "week": ("w", 1), "month": ("M", 1),
          "quarter": ("M", 3), "year": ("M", 12)}
RATE_ERROR = ("You've exceeded the maximum requests per minute, please wait or upgrade your subscription to "
              "continue. https://massive.com/pricing")
PLAN_ERROR = "Your plan doesn't include this data timeframe. Please upgrade your plan at https://massive.com/pricing"


def ny_midnight_ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=NY).timestamp()) * NS


def parse_bound(text: str, *, end: bool) -> int:
    """A path's ``from``/``to``: ms since the epoch, or a New York day (``to`` covers all of it) -> ns."""
    if text.isdigit():
        return int(text) * 1_000_000
    day = date.fromisoformat(text)  # ValueError: a 400
    return ny_midnight_ns(day + timedelta(days=1)) - 1 if end else ny_midnight_ns(day)


@dataclass(frozen=True)
class Span:
    """A bar size as a path names it: ``kind`` m (minutes), d, w or M (months), ``amount`` of that kind."""

    kind: str
    amount: int

    @classmethod
    def parse(cls, multiplier: str, timespan: str) -> Span:
        kind, per = _SPANS[timespan]  # KeyError: a 400
        amount = int(multiplier) * per
        if amount < 1 or (kind in "dw" and amount != 1) or (kind == "M" and 12 % amount) or amount > 1440:
            raise ValueError(f"unsupported size {multiplier}/{timespan}")
        return cls(kind, amount)


def generate(universe: Universe, symbol: str, span: Span, lo: int, hi: int, adjusted: bool) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(bar starts ns, values o/h/l/c/v/n/vw, base aggregates per bar) of the bars starting in [lo, hi]."""
    adjustment = "split" if adjusted else "raw"
    if span.kind == "m":
        size = span.amount * MIN_NS
        ts, vals = synthetic_arrays(symbol, "1Min", lo, hi // size * size + size - MIN_NS, adjustment=adjustment, universe=universe)
        group = ts // size * size
        stamps = group
    else:
        extra = {"d": 0, "w": 7 * DAY_NS, "M": 32 * span.amount * DAY_NS}[span.kind]
        ts, vals = synthetic_arrays(symbol, "1Day", lo, hi + extra, adjustment=adjustment, universe=universe)
        days = [datetime.fromtimestamp(t / NS, NY).date() for t in ts.tolist()]
        if span.kind == "d":
            group = stamps = ts
        elif span.kind == "w":
            first = [d - timedelta(days=(d.weekday() + 1) % 7) for d in days]  # the Sunday starting the week
            group = np.array([d.toordinal() for d in first], dtype=np.int64)
            stamps = np.array([ny_midnight_ns(d) for d in first], dtype=np.int64)
        else:
            keys = [(d.year * 12 + d.month - 1) // span.amount * span.amount for d in days]
            group = np.array(keys, dtype=np.int64)
            stamps = np.array([ny_midnight_ns(date(k // 12, k % 12 + 1, 1)) for k in keys], dtype=np.int64)
    if len(ts) == 0:
        return ts, vals, np.empty(0, dtype=np.int64)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(group)) + 1))
    counts = np.diff(np.concatenate((starts, [len(group)])))
    bars, agg = (stamps, vals) if len(starts) == len(group) else _aggregate(group, stamps, vals)  # 1-minute, day
    keep = (bars >= lo) & (bars <= hi)
    return bars[keep], {k: v[keep] for k, v in agg.items()}, counts[keep]


def _ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(token: str) -> dict[str, str]:
    raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


@dataclass
class MassiveRequest:
    """One request as the server saw it."""

    time: float
    path: str
    query: str  # the raw query string
    params: dict[str, str]  # first value of each parameter (a cursor's own parameters not unpacked)
    ticker: str | None
    status: int = 0  # 0: no answer sent (dropped)
    bars: int = 0
    next_url: str | None = None
    fault: str | None = None


class FakeMassive:
    """Threaded fake of Massive's aggregates, splits and dividends endpoints on 127.0.0.1.

    Test controls (set on a running server): ``inject`` faults; ``loop_symbol`` (a request for it that carries
    a cursor gets its own URL back as ``next_url``); ``fractional`` (tickers whose first bar of each page has a
    fractional volume); ``history_from`` (the plan's first day: earlier ranges are refused, 403);
    ``rate_limit`` requests per ``rate_window_s``; ``status_text`` (``DELAYED`` as on delayed plans). Observed:
    ``peak_in_flight``, the most requests of an endpoint (``aggs``, ``reference``) it was answering at once
    (``latency_s`` holds each one open)."""

    def __init__(self, *, api_key: str = "test-key", universe: Universe | None = None, latency_s: float = 0.0,
                 slow_s: float = 0.3, hang_s: float = 30.0, rate_limit: int | None = None, rate_window_s: float = 60.0,
                 history_from: date | None = None, port: int = 0) -> None:
        self.api_key, self.universe = api_key, universe or Universe()
        self.latency_s, self.slow_s, self.hang_s = latency_s, slow_s, hang_s
        self.rate_limit, self.rate_window_s, self.history_from = rate_limit, rate_window_s, history_from
        self.loop_symbol: str | None = None
        self.fractional: set[str] = set()
        self.status_text = "OK"
        self.altered: dict[tuple[str, int], dict[str, float]] = {}  # (ticker, t ms) -> wire fields served instead
        self.dropped: set[tuple[str, int]] = set()  # (ticker, t ms): bars this vendor does not have
        self.errors: list[BaseException] = []
        self._port, self._lock, self._stop = port, threading.Lock(), threading.Event()
        self._log: list[MassiveRequest] = []
        self._faults: list[list[Any]] = []  # [fault, remaining, ticker, endpoint, with_cursor]
        self._win_start, self._win_count = 0.0, 0
        self._in_flight = {"aggs": 0, "reference": 0}
        self.peak_in_flight = dict(self._in_flight)
        self._httpd: _HTTPServer | None = None
        self._conns: set[Any] = set()
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> FakeMassive:
        self._stop.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _MassiveHandler)
        self._httpd.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeMassive:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _register(self, conn: Any) -> None:
        with self._lock:
            self._conns.add(conn)

    def _unregister(self, conn: Any) -> None:
        with self._lock:
            self._conns.discard(conn)

    # -- test controls -----------------------------------------------------------------------------------
    def inject(self, fault: str | int, *, count: int = 1, ticker: str | None = None, endpoint: str = "aggs",
               with_cursor: bool = False) -> None:
        """The next ``count`` requests of ``endpoint`` (``aggs`` or ``reference``; for ``ticker`` if given; that
        carry a cursor if ``with_cursor``) fail with ``fault``: 429 (no headers), 500, 502, 503, 504, ``drop``
        (close without answering), ``hang`` (answer after hang_s), ``slow`` (answer after slow_s), ``partial``
        (half the body, then close)."""
        if str(fault) not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        with self._lock:
            self._faults.append([str(fault), count, ticker, endpoint, with_cursor])

    def announce_split(self, ticker: str, execution_date: str | date, split_from: float, split_to: float) -> dict[str, Any]:
        """A split of ``split_from`` shares into ``split_to`` (4-for-1: 1, 4); raw bars jump at its date."""
        kind = "reverse_split" if split_to < split_from else "forward_split"
        with self._lock:
            return self.universe.announce(kind, symbol=ticker, ex_date=execution_date, process_date=execution_date,
                                          old_rate=split_from, new_rate=split_to, massive_id=_id(ticker, execution_date, kind))

    def announce_dividend(self, ticker: str, ex_dividend_date: str | date, cash_amount: float, *, pay_date: str | date | None = None,
                          dividend_type: str = "CD", currency: str = "USD") -> dict[str, Any]:
        ex = date.fromisoformat(str(ex_dividend_date))
        pay = pay_date or ex + timedelta(days=14)
        with self._lock:
            return self.universe.announce(
                "cash_dividend", symbol=ticker, ex_date=ex, process_date=pay, payable_date=pay, rate=cash_amount,
                record_date=ex + timedelta(days=1), declaration_date=ex - timedelta(days=30), dividend_type=dividend_type,
                currency=currency, massive_id=_id(ticker, ex, "cash_dividend"))

    def alter(self, ticker: str, when: datetime, **values: float) -> None:
        """Serve the bar of ``ticker`` starting at ``when`` with other values (``open``, ``high``, ``low``,
        ``close``, ``volume``): a vendor's tape that differs from the other's."""
        wire = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v"}
        with self._lock:
            self.altered[(ticker, _ms(when))] = {wire[k]: float(v) for k, v in values.items()}

    def drop(self, ticker: str, when: datetime) -> None:
        """Never serve the bar of ``ticker`` starting at ``when`` (a bar this vendor's tape does not have)."""
        with self._lock:
            self.dropped.add((ticker, _ms(when)))

    @property
    def requests(self) -> list[MassiveRequest]:
        """The aggregates requests (a copy)."""
        with self._lock:
            return [r for r in self._log if r.path.startswith(_AGGS)]

    @property
    def action_requests(self) -> list[MassiveRequest]:
        with self._lock:
            return [r for r in self._log if r.path in _REF]

    def synthetic_frame(self, symbol: str, multiplier: int, timespan: str, start: datetime, end: datetime, *, adjusted: bool = False) -> pl.DataFrame:
        """Exactly the bars served for ``symbol`` starting in [start, end], in the stored bar schema (no symbol)."""
        lo, hi = ((t - _EPOCH) // timedelta(microseconds=1) * 1000 for t in (start, end))
        ts, v, _ = generate(self.universe, symbol, Span.parse(str(multiplier), timespan), lo, hi, adjusted)
        return pl.DataFrame({
            "timestamp": pl.Series(ts // 1000, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "open": v["o"], "high": v["h"], "low": v["l"], "close": v["c"], "volume": pl.Series(v["v"], dtype=pl.Int64),
            "trade_count": pl.Series(v["n"], dtype=pl.Int64), "vwap": v["vw"]})

    # -- requests ----------------------------------------------------------------------------------------
    def _take_fault(self, ticker: str | None, endpoint: str, cursor: bool) -> str | None:
        with self._lock:
            for f in self._faults:
                if (f[2] is None or f[2] == ticker) and f[3] == endpoint and (cursor or not f[4]):
                    f[1] -= 1
                    if f[1] <= 0:
                        self._faults.remove(f)
                    return str(f[0])
        return None

    def _throttled(self) -> bool:
        with self._lock:
            now = time.time()
            if now >= self._win_start + self.rate_window_s:
                self._win_start, self._win_count = now, 0
            self._win_count += 1
            return self.rate_limit is not None and self._win_count > self.rate_limit

    def _dispatch(self, h: _Handler) -> None:
        endpoint = "aggs" if urlsplit(h.path).path.startswith(_AGGS) else "reference"
        with self._lock:
            self._in_flight[endpoint] += 1
            self.peak_in_flight[endpoint] = max(self.peak_in_flight[endpoint], self._in_flight[endpoint])
        try:
            self._answer(h)
        finally:
            with self._lock:
                self._in_flight[endpoint] -= 1

    def _answer(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        path = unquote(split.path)
        ticker = path[len(_AGGS):].split("/")[0] if path.startswith(_AGGS) else params.get("ticker")
        if "cursor" in params and path in _REF:
            ticker = _safe_cursor(params["cursor"]).get("ticker", ticker)
        rec = MassiveRequest(time.time(), path, split.query, params, ticker)
        reply, partial = None, False
        try:
            if self.latency_s and self._stop.wait(self.latency_s):
                raise _Drop
            rec.fault = fault = self._take_fault(ticker, "aggs" if path.startswith(_AGGS) else "reference", "cursor" in params)
            if fault in ("hang", "slow") and self._stop.wait(self.hang_s if fault == "hang" else self.slow_s):
                raise _Drop
            if fault == "drop":
                raise _Drop
            if fault in ("429", "500", "502", "503", "504"):
                raise _Reply(int(fault), _error(RATE_ERROR if fault == "429" else "Internal server error"))
            bearer = h.headers.get("Authorization", "")
            given = bearer[7:] if bearer.startswith("Bearer ") else params.get("apiKey")
            if given != self.api_key:
                raise _Reply(401, _error("Unknown API Key" if given else "API Key was not provided"))
            if self._throttled():
                raise _Reply(429, _error(RATE_ERROR))
            if path.startswith(_AGGS):
                reply = _Reply(200, self._aggs(h, path, params, rec))
            elif path in _REF:
                reply = _Reply(200, self._reference(path, params, rec))
            else:
                raise _Reply(404, {"status": "NOT_FOUND", "request_id": uuid.uuid4().hex, "message": "Not Found"})
            partial = fault == "partial"
        except _Reply as r:
            reply = r
        except _Drop:
            reply = None
        except Exception as e:
            self.errors.append(e)
            reply = _Reply(500, f"fake server bug: {e!r}".encode(), "text/plain")
        rec.status = 0 if reply is None else reply.status
        with self._lock:
            self._log.append(rec)
        if reply is None:
            h.close_connection = True
            return
        h.send_response(reply.status)
        h.send_header("Content-Type", reply.ctype)
        h.send_header("Content-Length", str(len(reply.body)))
        h.end_headers()
        h.wfile.write(reply.body[: len(reply.body) // 2] if partial else reply.body)
        if partial:
            h.close_connection = True

    def _aggs(self, h: _Handler, path: str, params: dict[str, str], rec: MassiveRequest) -> bytes:
        parts = path[len(_AGGS):].split("/")
        if len(parts) != 6 or parts[1] != "range":
            raise _Reply(404, {"status": "NOT_FOUND", "request_id": uuid.uuid4().hex, "message": "Not Found"})
        ticker, _, multiplier, timespan, from_text, to_text = parts
        query = _safe_cursor(params["cursor"]) if "cursor" in params else {k: v for k, v in params.items() if k != "apiKey"}
        unknown = sorted(set(query) - {"adjusted", "sort", "limit"})
        try:
            if unknown:
                raise ValueError(f"unknown query parameter(s): {', '.join(unknown)}")
            span = Span.parse(multiplier, timespan)
            lo, hi = parse_bound(from_text, end=False), parse_bound(to_text, end=True)
            limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
            if query.get("sort", "asc") != "asc" or limit < 1:
                raise ValueError("this fake serves sort=asc and a positive limit only")
        except (ValueError, KeyError) as exc:
            raise _Reply(400, _error(f"Could not parse the request: {exc}")) from None
        if self.history_from is not None and lo < ny_midnight_ns(self.history_from):
            raise _Reply(403, {"status": "NOT_AUTHORIZED", "request_id": uuid.uuid4().hex, "message": PLAN_ERROR})
        adjusted = query.get("adjusted", "true").lower() != "false"
        ts, vals, counts, following = self._page(ticker, span, lo, hi, adjusted, limit)
        body: dict[str, Any] = {"ticker": ticker, "queryCount": int(counts.sum()), "resultsCount": len(ts), "adjusted": adjusted}
        if len(ts):
            volumes = [float(v) for v in vals["v"].tolist()]
            if ticker in self.fractional:
                volumes[0] += 0.5
            body["results"] = [
                {"v": v, "vw": vw, "o": o, "c": c, "h": hi_, "l": lo_, "t": t // 1_000_000, "n": n}
                for v, vw, o, c, hi_, lo_, t, n in zip(volumes, *(vals[k].tolist() for k in ("vw", "o", "c", "h", "l")),
                                                        ts.tolist(), vals["n"].tolist(), strict=True)
                if (ticker, t // 1_000_000) not in self.dropped
            ]
            for bar in body["results"]:
                bar.update(self.altered.get((ticker, bar["t"]), {}))
        body.update(status=self.status_text, request_id=uuid.uuid4().hex, count=len(ts))
        if self.loop_symbol == ticker and "cursor" in params:
            body["next_url"] = self.url + h.path
        elif following is not None:
            nxt = following // 1_000_000
            cursor = _b64(urlencode({"adjusted": str(adjusted).lower(), "limit": limit, "sort": "asc"}))
            body["next_url"] = f"{self.url}{_AGGS}{ticker}/range/{multiplier}/{timespan}/{nxt}/{to_text}?cursor={cursor}"
        rec.bars, rec.next_url = len(ts), body.get("next_url")
        return msgspec.json.encode(body)

    def _page(self, ticker: str, span: Span, lo: int, hi: int, adjusted: bool, limit: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, int | None]:
        """The page starting at ``lo``: whole bars built from at most ``limit`` base aggregates (one bar at
        least), and the start of the bar after it (None: none left). Generated over a growing window, so a page
        of a long range costs about one page of generation."""
        window = (limit // 400 + 7) * DAY_NS if span.kind == "m" else hi - lo
        while True:
            top = min(hi, lo + window)
            ts, vals, counts = generate(self.universe, ticker, span, lo, top, adjusted)
            fits = max(1, int(np.searchsorted(np.cumsum(counts), limit, "right"))) if len(ts) else 0
            if fits < len(ts) or top >= hi:
                following = int(ts[fits]) if fits < len(ts) else None
                return ts[:fits], {k: v[:fits] for k, v in vals.items()}, counts[:fits], following
            window *= 2

    def _reference(self, path: str, params: dict[str, str], rec: MassiveRequest) -> bytes:
        field, kinds = _REF[path]
        query = _safe_cursor(params["cursor"]) if "cursor" in params else {k: v for k, v in params.items() if k != "apiKey"}
        allowed = {"ticker", "limit", "sort", "order", "offset", field} | {f"{field}.{op}" for op in ("gte", "gt", "lte", "lt")}
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise _Reply(400, _error(f"unknown query parameter(s): {', '.join(unknown)}"))
        limit = min(int(query.get("limit", 10)), 1000)
        with self._lock:
            records = [_record(a) for a in self.universe.actions if a["type"] in kinds]
        ops = {"gte": str.__ge__, "gt": str.__gt__, "lte": str.__le__, "lt": str.__lt__}
        rows = [r for r in records if query.get("ticker") in (None, r["ticker"]) and query.get(field) in (None, r[field])
                and all(op(r[field], query[f"{field}.{name}"]) for name, op in ops.items() if f"{field}.{name}" in query)]
        rows.sort(key=lambda r: (r[query.get("sort", field)], r["id"]), reverse=query.get("order") == "desc")
        offset = int(query.get("offset", 0))
        body: dict[str, Any] = {"results": rows[offset : offset + limit], "status": "OK", "request_id": uuid.uuid4().hex}
        if self.loop_symbol is not None and self.loop_symbol == query.get("ticker") and "cursor" in params:
            body["next_url"] = f"{self.url}{path}?cursor={params['cursor']}"
        elif offset + limit < len(rows):
            body["next_url"] = f"{self.url}{path}?cursor={_b64(urlencode({**query, 'offset': offset + limit}))}"
        rec.next_url = body.get("next_url")
        return msgspec.json.encode(body)


class _MassiveHandler(_Handler):
    server_version = "FakeMassive/1.0"


def _safe_cursor(token: str) -> dict[str, str]:
    try:
        return _unb64(token)
    except (ValueError, UnicodeDecodeError):
        raise _Reply(400, _error("Invalid cursor")) from None


def _error(message: str) -> dict[str, str]:
    return {"status": "ERROR", "request_id": uuid.uuid4().hex, "error": message}


def _id(ticker: str, day: Any, kind: str) -> str:
    return "E" + hashlib.sha256(f"{ticker}|{day}|{kind}".encode()).hexdigest()


def _record(action: dict[str, Any]) -> dict[str, Any]:
    """A Universe action (the Alpaca fake's shape) as Massive lists it."""
    if action["type"] == "cash_dividend":
        return {"cash_amount": action["rate"], "currency": action.get("currency", "USD"),
                "declaration_date": action.get("declaration_date"), "dividend_type": action.get("dividend_type", "CD"),
                "ex_dividend_date": action["ex_date"], "frequency": 4, "id": action.get("massive_id", action["id"]),
                "pay_date": action.get("payable_date"), "record_date": action.get("record_date"), "ticker": action["symbol"]}
    return {"execution_date": action["ex_date"], "id": action.get("massive_id", action["id"]),
            "split_from": action["old_rate"], "split_to": action["new_rate"], "ticker": action["symbol"]}


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.massive_server --port 8766`` from a source checkout: the fake by hand, for trying
    ``--source massive`` or ``verify --against massive`` without a key (point MASSIVE_API_URL at it)."""
    import argparse

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--rate-limit", type=int, default=None)
    ap.add_argument("--rate-window", type=float, default=60.0, help="seconds a request counts against the limit")
    a = ap.parse_args(argv)
    srv = FakeMassive(port=a.port, latency_s=a.latency, rate_limit=a.rate_limit, rate_window_s=a.rate_window).start()
    serve_until_interrupted(srv, f"FakeMassive serving on {srv.url} (MASSIVE_API_KEY=test-key)")


if __name__ == "__main__":
    main()
