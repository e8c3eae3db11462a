"""Corporate actions: Alpaca's records as one table, stored beside the bars, and the price factors they imply.

Raw bars stay the record; adjustment is computed from them and these actions at read time, the way CRSP and
zipline do it, so an adjusted history never goes stale when a new split arrives.

Alpaca's ``/v1/corporate-actions`` body groups records by type (``forward_splits``, ``cash_dividends``,
``name_changes``, ...). Each record becomes one row of :data:`ACTION_SCHEMA`, keyed by Alpaca's ``id``; types
we do not model keep their symbol, dates and the whole record in ``raw``, never an error.

Massive's (ex-Polygon) ``/v3/reference/splits`` and ``/v3/reference/dividends`` records decode into the same
rows (:func:`decode_massive_splits`, :func:`decode_massive_dividends`), their ids prefixed ``massive:`` so the
two sources' records never collide and each row says where it came from (:func:`action_source`).

The store is one Parquet file, ``{root}/corporate_actions/actions.parquet``, replaced atomically on change:
DuckDB (``read_parquet``) and Polars (``pl.read_parquet``) read it directly. A record seen again with the same
``id`` replaces the stored one (Alpaca corrects actions in place).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import polars as pl

from dataengine.errors import TransientSourceError, UsageError
from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.storage.store_files import read_json_map, read_table, write_json_map, write_table

log = logging.getLogger(__name__)

ACTION_PAGE_LIMIT = 1000  # Alpaca's maximum ``limit`` for corporate actions

ACTION_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "type": pl.String(),  # Alpaca's type name in the singular: forward_split, cash_dividend, name_change, ...
    "symbol": pl.String(),  # the symbol the action is about (old_symbol of a rename, source of a spin-off)
    "ex_date": pl.Date(),  # or effective_date for the types that have one instead
    "process_date": pl.Date(),
    "payable_date": pl.Date(),
    "old_rate": pl.Float64(),
    "new_rate": pl.Float64(),
    "rate": pl.Float64(),  # cash per share of a dividend; the rate of other types as Alpaca sends it
    "special": pl.Boolean(),
    "new_symbol": pl.String(),  # the new ticker of a name change, the new security of a spin-off
    "raw": pl.String(),  # the record as Alpaca sent it (JSON)
}
SPLIT_TYPES = ("forward_split", "reverse_split")
DIVIDEND_TYPE = "cash_dividend"
TYPES = (
    "forward_split", "reverse_split", "unit_split", "stock_dividend", "cash_dividend", "spin_off", "cash_merger",
    "stock_merger", "stock_and_cash_merger", "redemption", "name_change", "worthless_removal",
    "rights_distribution",
)
_SYMBOL_FIELDS = ("symbol", "old_symbol", "source_symbol", "acquiree_symbol")
_EX_FIELDS = ("ex_date", "effective_date")


def empty_actions() -> pl.DataFrame:
    return pl.DataFrame(schema=ACTION_SCHEMA)


def parse_types(types: Iterable[str] | None) -> list[str] | None:
    """Alpaca type names, singular or plural (``split`` = both kinds of split); an unknown one is a UsageError."""
    if not types:
        return None
    out: list[str] = []
    for given in types:
        for name in str(given).split(","):
            key = name.strip().lower().replace("-", "_")
            key = key[:-1] if key.endswith("s") and key[:-1] in TYPES else key
            if key in ("split", "splits"):
                out += list(SPLIT_TYPES)
            elif key in ("dividend", "dividends"):
                out.append(DIVIDEND_TYPE)
            elif key in TYPES:
                out.append(key)
            else:
                raise UsageError(f"unknown corporate action type {name.strip()!r}; one of: split, dividend, {', '.join(TYPES)}")
    return sorted(set(out))


# -- the wire -------------------------------------------------------------------------------------------------


def decode_actions(body: bytes) -> tuple[pl.DataFrame, str | None]:
    """One ``/v1/corporate-actions`` page: (its records as rows, the next page's token or None)."""
    try:
        payload = json.loads(body)
        groups = payload.get("corporate_actions") or {}
        token = payload.get("next_page_token") or None
        if not isinstance(groups, dict):
            raise TypeError("corporate_actions is not an object")
        rows = [_row(group, record) for group, records in groups.items() for record in (records or [])]
    except (ValueError, TypeError, AttributeError) as exc:
        raise TransientSourceError(f"malformed corporate-actions page ({exc})", status=200) from None
    return (pl.DataFrame(rows, schema=ACTION_SCHEMA, orient="row") if rows else empty_actions()), token


def _row(group: str, record: dict[str, Any]) -> tuple[Any, ...]:
    kind = group[:-1] if group.endswith("s") else group
    symbol = next((record[f] for f in _SYMBOL_FIELDS if record.get(f)), None)
    ex = next((record[f] for f in _EX_FIELDS if record.get(f)), None)
    raw = json.dumps(record, sort_keys=True, separators=(",", ":"))
    # Alpaca's records carry an id; the older bodies in alpaca-py's tests do not: then the record itself is the key
    ident = record.get("id") or "sha1:" + hashlib.sha1(f"{kind}:{raw}".encode()).hexdigest()[:20]
    new_symbol = record.get("new_symbol")
    return (
        str(ident), kind, symbol, _date(ex), _date(record.get("process_date")), _date(record.get("payable_date")),
        _num(record.get("old_rate")), _num(record.get("new_rate")), _num(record.get("rate")),
        record.get("special") if isinstance(record.get("special"), bool) else None,
        str(new_symbol) if new_symbol else None, raw,
    )


def _date(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- Massive's wire ---------------------------------------------------------------------------------------------

MASSIVE_ID_PREFIX = "massive:"


def action_source() -> pl.Expr:
    """Which source a stored action came from, from its id: ``massive`` or ``alpaca``."""
    return pl.when(pl.col("id").str.starts_with(MASSIVE_ID_PREFIX)).then(pl.lit("massive")).otherwise(pl.lit("alpaca"))


def decode_massive_splits(body: bytes) -> tuple[pl.DataFrame, str | None]:
    """One ``/v3/reference/splits`` page: (its splits as rows, its ``next_url`` or None). A split of
    ``split_from`` shares into ``split_to`` (4-for-1: from 1, to 4) is a forward split with old_rate 1 and
    new_rate 4; fewer shares after it, a reverse split. Raises ValueError/TypeError on a body that is no page."""
    records, next_url = _massive_results(body)
    rows = []
    for record in records:
        old, new = _num(record.get("split_from")), _num(record.get("split_to"))
        kind = "reverse_split" if old and new and new < old else "forward_split"
        rows.append(_massive_row(kind, record, record.get("execution_date"), old_rate=old, new_rate=new))
    return (pl.DataFrame(rows, schema=ACTION_SCHEMA, orient="row") if rows else empty_actions()), next_url


def decode_massive_dividends(body: bytes) -> tuple[pl.DataFrame, str | None]:
    """One ``/v3/reference/dividends`` page: cash dividends (``dividend_type`` CD regular; SC special, LT/ST
    capital-gain distributions: ``special``), ``rate`` the cash per share. One paid in a currency other than
    USD keeps its record but no rate, so it never enters a price factor computed against USD closes."""
    records, next_url = _massive_results(body)
    rows = [
        _massive_row(
            DIVIDEND_TYPE, r, r.get("ex_dividend_date"), payable=r.get("pay_date"),
            rate=_num(r.get("cash_amount")) if str(r.get("currency") or "USD").upper() == "USD" else None,
            special=str(r["dividend_type"]).upper() != "CD" if r.get("dividend_type") else None,
        )
        for r in records
    ]
    return (pl.DataFrame(rows, schema=ACTION_SCHEMA, orient="row") if rows else empty_actions()), next_url


def _massive_results(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    payload = json.loads(body)
    records = payload.get("results") or [] if isinstance(payload, dict) and payload.get("status") != "ERROR" else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise TypeError("not a page of records")
    return records, payload.get("next_url") or None


def _massive_row(kind: str, record: dict[str, Any], ex: Any, *, payable: Any = None, old_rate: float | None = None,
                 new_rate: float | None = None, rate: float | None = None, special: bool | None = None) -> tuple[Any, ...]:
    raw = json.dumps(record, sort_keys=True, separators=(",", ":"))
    # Massive's records carry an id ("E36416cc..."); the older bodies in its client's tests do not
    ident = record.get("id") or "sha1:" + hashlib.sha1(f"{kind}:{raw}".encode()).hexdigest()[:20]
    symbol = record.get("ticker")
    return (MASSIVE_ID_PREFIX + str(ident), kind, str(symbol) if symbol else None, _date(ex), None, _date(payable),
            old_rate, new_rate, rate, special, None, raw)


# -- the store ------------------------------------------------------------------------------------------------


class ActionStore:
    """The stored corporate actions of one store root."""

    def __init__(self, root: StorePath) -> None:
        self.root = root
        self.path = layout.actions_path(root)

    def load(self) -> pl.DataFrame:
        return read_table(self.path, ACTION_SCHEMA)

    def merge(self, fetched: pl.DataFrame) -> pl.DataFrame:
        """Store ``fetched`` once per ``id`` (a changed record replaces the stored one); return the rows that
        are new or changed. Nothing is written when nothing changed."""
        stored = self.load()
        fetched = fetched.unique("id", keep="last", maintain_order=True)
        changed = fetched.join(stored, on=list(ACTION_SCHEMA), how="anti", nulls_equal=True)
        if changed.is_empty():
            return changed
        merged = pl.concat([stored.join(changed.select("id"), on="id", how="anti"), changed])
        merged = merged.sort("symbol", "ex_date", "process_date", "id", nulls_last=True)
        write_table(self.path, merged)
        log.info("corporate actions: %d new or changed, %d stored", changed.height, merged.height)
        return changed

    def select(
        self,
        symbols: Sequence[str] | None = None,
        *,
        types: Sequence[str] | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> pl.DataFrame:
        """Stored actions, filtered (dates apply to the ex-date, else the process date), sorted by date."""
        frame = self.load()
        day = pl.coalesce("ex_date", "process_date")
        if symbols:
            frame = frame.filter(pl.col("symbol").is_in(list(symbols)) | pl.col("new_symbol").is_in(list(symbols)))
        if types:
            frame = frame.filter(pl.col("type").is_in(list(types)))
        if start is not None:
            frame = frame.filter(day >= start)
        if end is not None:
            frame = frame.filter(day <= end)
        return frame.with_columns(day.alias("_day")).sort("_day", "symbol", "id").drop("_day")




class FetchedLog:
    """Per symbol, the first process date its actions were fetched from and when: ``corporate_actions/
    fetched.json``. It tells "no actions" apart from "never asked": adjusting a symbol never asked for is an
    error, not raw prices passed off as adjusted."""

    def __init__(self, root: StorePath) -> None:
        self.root = root
        self.path = layout.fetched_actions_path(root)

    def load(self) -> dict[str, dict[str, str]]:
        return read_json_map(self.path)

    def record(self, symbols: Iterable[str], start: date, at: str) -> None:
        known = self.load()
        for symbol in symbols:
            first = known.get(symbol, {}).get("from")
            known[symbol] = {"from": min(first, start.isoformat()) if first else start.isoformat(), "at": at}
        write_json_map(self.path, known)

    def missing(self, symbols: Iterable[str]) -> list[str]:
        known = self.load()
        return sorted(s for s in symbols if s not in known)


CLOSE_SCHEMA: dict[str, pl.DataType] = {"symbol": pl.String(), "ex_date": pl.Date(), "close": pl.Float64()}


class CloseStore:
    """C of the dividend formula: per (symbol, ex-date), the raw close of the last session before the ex-date,
    ``{root}/corporate_actions/closes.parquet``. Kept so that adjusting needs neither the daily dataset nor the
    network at read time."""

    def __init__(self, root: StorePath) -> None:
        self.root = root
        self.path = layout.closes_path(root)

    def load(self) -> pl.DataFrame:
        return read_table(self.path, CLOSE_SCHEMA)

    def add(self, closes: pl.DataFrame) -> int:
        if closes.is_empty():
            return 0
        closes = closes.select(list(CLOSE_SCHEMA)).unique(["symbol", "ex_date"], keep="last")
        stored = self.load()
        merged = pl.concat([stored.join(closes, on=["symbol", "ex_date"], how="anti"), closes]).sort("symbol", "ex_date")
        write_table(self.path, merged)
        return closes.height


# -- what an action does to prices ----------------------------------------------------------------------------


def describe(row: dict[str, Any]) -> str:
    """One line for a human: ``AAPL forward_split 2020-08-31 4:1``."""
    kind, symbol = row["type"], row["symbol"]
    day = row["ex_date"] or row["process_date"]
    if kind in SPLIT_TYPES and row["old_rate"] and row["new_rate"]:
        what = f"{_g(row['new_rate'])}:{_g(row['old_rate'])}"
    elif kind == DIVIDEND_TYPE and row["rate"] is not None:
        what = f"${row['rate']:g} per share" + (" (special)" if row["special"] else "")
    elif kind == "name_change":
        what = f"renamed {row['new_symbol']}"
    elif row["new_symbol"]:
        what = f"-> {row['new_symbol']}" + (f" rate {_g(row['rate'])}" if row["rate"] is not None else "")
    else:
        what = f"rate {_g(row['rate'])}" if row["rate"] is not None else ""
    return f"{symbol} {kind} {day}{(' ' + what) if what else ''}"


def _g(x: float) -> str:
    return f"{x:g}"


def renamed_to(actions: pl.DataFrame, symbol: str) -> tuple[str, date] | None:
    """(new symbol, date) of the latest name change away from ``symbol``, if any."""
    rows = actions.filter((pl.col("type") == "name_change") & (pl.col("symbol") == symbol)).sort("process_date")
    if rows.is_empty():
        return None
    last = rows.row(-1, named=True)
    return str(last["new_symbol"]), last["process_date"]


def factor_events(actions: pl.DataFrame, closes: pl.DataFrame, adjustment: str) -> pl.DataFrame:
    """Per symbol and ex-date, the factor every earlier bar's prices are multiplied by (``price_factor``) and its
    volume (``volume_factor``), for ``adjustment`` in split | dividend | all.

    split: old_rate / new_rate (a 4:1 forward split is 0.25; volume x 4). dividend: 1 - D / C, with D the cash
    per share and C the raw close of the last session before the ex-date (``closes``: symbol, ex_date, close);
    a dividend without a known close is left out (and named in the log). Several on one day multiply."""
    parts = []
    if adjustment in ("split", "all"):
        parts.append(
            actions.filter(pl.col("type").is_in(SPLIT_TYPES) & (pl.col("new_rate") > 0) & (pl.col("old_rate") > 0))
            .select("symbol", "ex_date", price=pl.col("old_rate") / pl.col("new_rate"),
                    volume=pl.col("new_rate") / pl.col("old_rate"))
        )
    if adjustment in ("dividend", "all"):
        dividends = actions.filter((pl.col("type") == DIVIDEND_TYPE) & pl.col("rate").is_not_null())
        with_close = dividends.join(closes, on=["symbol", "ex_date"], how="left")
        missing = with_close.filter(pl.col("close").is_null() | (pl.col("close") <= 0))
        if missing.height:
            log.warning("%d cash dividend(s) without the close before their ex-date: not applied (%s)",
                        missing.height, ", ".join(f"{s} {d}" for s, d in missing.select("symbol", "ex_date").rows()[:5]))
        parts.append(
            with_close.filter(pl.col("close") > 0)
            .select("symbol", "ex_date", price=1 - pl.col("rate") / pl.col("close"), volume=pl.lit(1.0))
        )
    if not parts:
        raise UsageError(f"adjustment must be split, dividend or all, not {adjustment!r}")
    events = pl.concat(parts).filter(pl.col("ex_date").is_not_null())
    return (
        events.group_by("symbol", "ex_date")
        .agg(price_factor=pl.col("price").product(), volume_factor=pl.col("volume").product())
        .sort("symbol", "ex_date")
    )


def cumulative_factors(events: pl.DataFrame) -> pl.DataFrame:
    """For each (symbol, ex_date): the product of its factor and every later one's, i.e. what a bar on a day
    before this ex-date (and on or after the previous one) is multiplied by."""
    return events.sort("symbol", "ex_date", descending=[False, True]).with_columns(
        price_factor=pl.col("price_factor").cum_prod().over("symbol"),
        volume_factor=pl.col("volume_factor").cum_prod().over("symbol"),
    ).sort("symbol", "ex_date")


PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")


def adjust_frame(bars: pl.LazyFrame, factors: pl.DataFrame) -> pl.LazyFrame:
    """Apply cumulative ``factors`` to bars (columns symbol, timestamp, OHLCV...): each bar takes the factor of
    the first ex-date after its New York trading day, none after the last. The test is on instants: a bar is
    before an ex-date when it starts before that day's midnight in New York (a day bar is stamped at midnight,
    a minute bar at its minute), so no per-bar time-zone conversion and no sort is needed: the bars come
    sorted by time within each symbol, as the store keeps them, and keep their order. trade_count is never
    changed."""
    table = factors.lazy().select(
        "symbol",
        pl.col("ex_date").cast(pl.Datetime("us")).dt.replace_time_zone("America/New_York")
        .dt.convert_time_zone("UTC").alias("_from"),
        "price_factor", "volume_factor",
    ).sort("_from")
    joined = bars.join_asof(
        table, left_on="timestamp", right_on="_from", by="symbol", strategy="forward", allow_exact_matches=False,
        check_sortedness=False,  # sorted by time within each symbol (measured exact); Polars can check only globally
    )
    price = pl.col("price_factor").fill_null(1.0)
    volume = pl.col("volume_factor").fill_null(1.0)
    return joined.with_columns(
        *[(pl.col(c) * price).alias(c) for c in PRICE_COLUMNS],
        (pl.col("volume").cast(pl.Float64) * volume).round(0).cast(pl.Int64).alias("volume"),
    ).drop("_from", "price_factor", "volume_factor")
