"""What actions do to prices: the adjustment factors, defined once (here, in Polars) and used by ``read_bars``
(:func:`adjust_frame`) and by the SQL views (``adjustment_factors`` is :func:`factor_table`, registered).

split (``new_rate`` shares for ``old_rate``): earlier prices x old/new, volume x new/old. dividend (cash ``D``
per share): earlier prices x (1 - D / C), C the raw close of the last session before the ex-date. Several on
one day multiply; a bar takes the product over every later ex-date. Only the actions of the bars' own source
count (``source``): a store may hold a split from Alpaca and the same split from Massive, and applying both
would adjust twice.
"""

from __future__ import annotations

import logging

import polars as pl

from dataengine.actions.schema import DIVIDEND_TYPE, SPLIT_TYPES, of_source
from dataengine.datasets import DEFAULT_SOURCE
from dataengine.errors import UsageError

log = logging.getLogger(__name__)


def factor_events(
    actions: pl.DataFrame, closes: pl.DataFrame, adjustment: str, *, source: str = DEFAULT_SOURCE,
) -> pl.DataFrame:
    """Per symbol and ex-date, the factor every earlier bar's prices are multiplied by (``price_factor``) and its
    volume (``volume_factor``), for ``adjustment`` in split | dividend | all, from the actions ``source`` sent
    (the source of the bars being adjusted; the others are ignored).

    split: old_rate / new_rate (a 4:1 forward split is 0.25; volume x 4). dividend: 1 - D / C, with D the cash
    per share and C the raw close of the last session before the ex-date (``closes``: symbol, ex_date, close);
    a dividend without a known close is left out (and named in the log). Several on one day multiply."""
    actions = of_source(actions, source)
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


def factor_table(actions: pl.DataFrame, closes: pl.DataFrame, *, source: str = DEFAULT_SOURCE) -> pl.DataFrame:
    """Per symbol and ex-date: that day's own ratios (``split_ratio``, ``dividend_factor``) and the products
    over it and every later ex-date (``split_price_factor``, ``split_volume_factor``, ``dividend_price_factor``,
    ``all_price_factor``): what a bar on a day before this ex-date (and on or after the previous one) is
    multiplied by, from ``source``'s actions. The SQL view ``adjustment_factors`` is this table (Alpaca's;
    ``massive_adjustment_factors`` Massive's); ``read_bars`` uses the same events."""
    key = ["symbol", "ex_date"]
    split = factor_events(actions, closes, "split", source=source).rename({"price_factor": "sp", "volume_factor": "sv"})
    dividend = factor_events(actions, closes, "dividend", source=source).select(*key, dp="price_factor")
    days = split.join(dividend, on=key, how="full", coalesce=True).with_columns(
        pl.col("sp", "sv", "dp").fill_null(1.0)
    ).with_columns(spdp=pl.col("sp") * pl.col("dp"))
    later = days.sort("symbol", "ex_date", descending=[False, True]).with_columns(
        pl.col("sp", "sv", "dp", "spdp").cum_prod().over("symbol").name.prefix("cum_")
    )
    return later.sort(key).select(
        *key, split_ratio="sp", dividend_factor="dp", split_price_factor="cum_sp", split_volume_factor="cum_sv",
        dividend_price_factor="cum_dp", all_price_factor="cum_spdp",
    )


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
