"""What a corporate action is, for dataengine: one row of :data:`ACTION_SCHEMA` per action (splits, reverse
splits, cash and stock dividends, spin-offs, mergers, name changes, ...), whichever source sent it, and how
one reads to a person.

Rows are keyed by the source's ``id``; every source but Alpaca prefixes its ids with its name (``massive:``), so
two sources' records never collide and each row says where it came from (:func:`action_source`). One store keeps
every source's actions in one table, but a dataset is adjusted with its own source's only
(:func:`dataengine.actions.factors.factor_events`): a split known from both vendors is applied once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import polars as pl

from dataengine.datasets import DEFAULT_SOURCE  # an id without a ``name:`` prefix (Alpaca's are UUIDs)
from dataengine.errors import UsageError

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


MASSIVE_ID_PREFIX = "massive:"


def id_prefix(source: str) -> str:
    """What ``source``'s action ids start with: nothing for Alpaca, ``massive:`` for Massive."""
    return "" if source == DEFAULT_SOURCE else f"{source}:"


def action_source() -> pl.Expr:
    """Which source a stored action came from, from its id: ``massive:E3641`` is Massive's, an id without a
    ``name:`` prefix Alpaca's."""
    prefix = pl.col("id").str.extract(r"^([a-z][a-z0-9]*):", 1)
    return pl.when(prefix.is_not_null()).then(prefix).otherwise(pl.lit(DEFAULT_SOURCE)).alias("source")


def of_source(actions: pl.DataFrame, source: str) -> pl.DataFrame:
    """The rows of ``actions`` that ``source`` sent."""
    return actions.filter(action_source() == source)


def describe(row: dict[str, Any]) -> str:
    """One line for a human: ``AAPL forward_split 2020-08-31 4:1``; another source's action says whose it is
    (``... 4:1 [massive]``)."""
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
    ident = str(row.get("id") or "")
    source = ident.split(":", 1)[0] if ":" in ident and ident.split(":", 1)[0].isalnum() else DEFAULT_SOURCE
    tag = f" [{source}]" if source != DEFAULT_SOURCE else ""
    return f"{symbol} {kind} {day}{(' ' + what) if what else ''}{tag}"


def _g(x: float) -> str:
    return f"{x:g}"


def renamed_to(actions: pl.DataFrame, symbol: str) -> tuple[str, date] | None:
    """(new symbol, date) of the latest name change away from ``symbol``, if any."""
    rows = actions.filter((pl.col("type") == "name_change") & (pl.col("symbol") == symbol)).sort("process_date")
    if rows.is_empty():
        return None
    last = rows.row(-1, named=True)
    return str(last["new_symbol"]), last["process_date"]
