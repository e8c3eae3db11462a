"""The corporate actions a store keeps beside its bars, under ``{root}/corporate_actions/``:

* ``actions.parquet``: every action of the stored symbols, once per ``id`` (a record seen again replaces the
  stored one: Alpaca corrects actions in place), replaced atomically on change; DuckDB and Polars read it as is;
* ``closes.parquet``: the raw close before each cash dividend (C in the dividend factor);
* ``fetched.json``: which symbols' actions were asked for, from when ("none stored" must mean "none exist").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import date

import polars as pl

from dataengine.actions.schema import ACTION_SCHEMA, action_source, id_prefix
from dataengine.datasets import DEFAULT_SOURCE
from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.storage.store_files import read_json_map, read_table, write_json_map, write_table

log = logging.getLogger(__name__)


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
        source: str | None = None,
    ) -> pl.DataFrame:
        """Stored actions, filtered (dates apply to the ex-date, else the process date; ``source``: only the
        actions that source sent), sorted by date."""
        frame = self.load()
        if source is not None:
            frame = frame.filter(action_source() == source)
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
    """Per symbol and source, the first process date its actions were fetched from and when: ``corporate_actions/
    fetched.json``. It tells "no actions" apart from "never asked": adjusting a symbol never asked for is an
    error, not raw prices passed off as adjusted. Keys are the symbol for Alpaca (as before there were other
    sources) and ``{source}:{symbol}`` for the others (``massive:AAPL``): Alpaca's answer says nothing of
    Massive's."""

    def __init__(self, root: StorePath, source: str = DEFAULT_SOURCE) -> None:
        self.root = root
        self.path = layout.fetched_actions_path(root)
        self.prefix = id_prefix(source)

    def load(self) -> dict[str, dict[str, str]]:
        return read_json_map(self.path)

    def record(self, symbols: Iterable[str], start: date, at: str) -> None:
        known = self.load()
        for symbol in symbols:
            first = known.get(self.prefix + symbol, {}).get("from")
            known[self.prefix + symbol] = {"from": min(first, start.isoformat()) if first else start.isoformat(), "at": at}
        write_json_map(self.path, known)

    def missing(self, symbols: Iterable[str]) -> list[str]:
        known = self.load()
        return sorted(s for s in symbols if self.prefix + s not in known)


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
