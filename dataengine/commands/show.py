"""``dataengine show SYMBOL``: the latest bars of one symbol as a table, without writing SQL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from dataengine.commands import completion
from dataengine.commands.common import print_table

if TYPE_CHECKING:
    import polars as pl


def register(app: typer.Typer) -> None:
    app.command("show")(show)


def show(
    ctx: typer.Context,
    symbol: Annotated[str, typer.Argument(metavar="SYMBOL", help="One symbol, e.g. AAPL or BRK.B.", show_default=False)],
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", metavar="SIZE", autocompletion=completion.timeframes, help="Which bars: minute, 5min, hour, day, ... Default: day if stored, else the dataset that holds the symbol.", show_default=False)] = None,
    last: Annotated[int, typer.Option("--last", "-n", metavar="N", min=1, help="How many of the most recent bars.")] = 10,
    adjustment: Annotated[str, typer.Option("--adjustment", metavar="ADJ", autocompletion=completion.adjustments, help="raw, or split, dividend, all (computed from the stored corporate actions).")] = "raw",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (timestamps in UTC).")] = False,
    source: Annotated[str | None, typer.Option("--source", metavar="NAME", autocompletion=completion.sources, help="Whose bars: alpaca, massive or sample. Default: the source setting's if the store holds the symbol from it, else the first source that does.", show_default=False)] = None,
) -> None:
    """Print the latest bars of SYMBOL as a table, times in New York.

    Examples: dataengine show AAPL · dataengine show AAPL -t minute --last 30 · dataengine show MSFT --adjustment all --json · dataengine show AAPL --source massive

    Exit 0 · 1 a damaged partition (see verify) · 2 no store, no such dataset, or no bars of SYMBOL · 3 the store cannot be reached or read (S3: access denied, endpoint unreachable).
    """
    from dataengine.datasets import DatasetKey
    from dataengine.read.quick import datasets_holding, latest_bars  # Polars: imported when the command runs
    from dataengine.storage import layout

    settings = ctx.obj.settings(source=source)
    root = ctx.obj.existing_store(settings)
    holding = datasets_holding(symbol, root)
    if source is None:  # the setting's source if it holds the symbol, else whichever source does
        held = [layout.describe_dataset(n)["source"] for n in holding]
        source = settings.source if settings.source in held or not held else held[0]
    mine = [n for n in holding if layout.describe_dataset(n)["source"] == source]
    if timeframe is None:
        day = DatasetKey.of("day", "raw", source).dirname
        raw = [n for n in mine if layout.describe_dataset(n)["adjustment"] == "raw"]
        chosen = day if day in mine else (raw or mine or [day])[0]
        timeframe = layout.describe_dataset(chosen)["label"]
    bars = latest_bars(symbol, last, timeframe, root, adjustment=adjustment, source=source)
    key = DatasetKey.of(timeframe, adjustment, source)
    name = key.dirname if key.adjustment not in ("split", "dividend", "all") else f"{key.dirname} (from the raw bars)"
    from dataengine.sources.source import source_info

    synthetic = source_info(key.source).synthetic
    if synthetic:
        name += " (synthetic sample data, not market data)"
    if json_out:
        rows = bars.drop("symbol").to_dicts()
        typer.echo(json.dumps({"symbol": bars["symbol"][0], "dataset": key.dirname, "source": key.source,
                               "synthetic": synthetic, "timeframe": key.timeframe.name,
                               "adjustment": key.adjustment, "count": len(rows), "bars": rows},
                              default=lambda value: value.isoformat()))
        return
    typer.echo(f"{bars['symbol'][0]} · {name} · the last {bars.height} bar(s)")
    print_table(_for_people(bars, key.timeframe.intraday), right=("open", "high", "low", "close", "volume", "trades", "vwap"))


def _for_people(bars: pl.DataFrame, intraday: bool) -> pl.DataFrame:
    """New York times (dates for daily and longer bars), thousands separators, prices as stored."""
    import polars as pl

    local = pl.col("timestamp").dt.convert_time_zone("America/New_York")
    when = local.dt.strftime("%Y-%m-%d %H:%M") if intraday else local.dt.strftime("%Y-%m-%d")
    number = pl.col("volume").map_elements(lambda v: f"{v:,}", return_dtype=pl.String)
    trades = pl.col("trade_count").map_elements(lambda v: f"{v:,}", return_dtype=pl.String)
    return bars.select(
        when.alias("time (New York)" if intraday else "date"),
        "open", "high", "low", "close", number.alias("volume"), trades.alias("trades"), pl.col("vwap").round(4),
    )
