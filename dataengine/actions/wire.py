"""Corporate actions on the wire: a source's pages decoded into rows of :data:`.schema.ACTION_SCHEMA`.

Alpaca's ``/v1/corporate-actions`` body groups records by type (``forward_splits``, ``cash_dividends``,
``name_changes``, ...). Each record becomes one row keyed by Alpaca's ``id``; types we do not model keep their
symbol, dates and the whole record in ``raw``, never an error. Massive's (ex-Polygon) ``/v3/reference/splits``
and ``/v3/reference/dividends`` records decode into the same rows, their ids prefixed ``massive:``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import polars as pl

from dataengine.actions.schema import ACTION_SCHEMA, DIVIDEND_TYPE, MASSIVE_ID_PREFIX, empty_actions
from dataengine.errors import TransientSourceError

ACTION_PAGE_LIMIT = 1000  # Alpaca's maximum ``limit`` for corporate actions
_SYMBOL_FIELDS = ("symbol", "old_symbol", "source_symbol", "acquiree_symbol")
_EX_FIELDS = ("ex_date", "effective_date")


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
