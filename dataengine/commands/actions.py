"""``dataengine actions``: the stored corporate actions, one line each; ``--update`` fetches them."""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer

from dataengine.commands import completion
from dataengine.commands.common import command_line, exit_with

if TYPE_CHECKING:
    from dataengine.orchestration.result import IngestResult
    from dataengine.storage.store import StorePath


def register(app: typer.Typer) -> None:
    app.command("actions")(actions)


def actions(
    ctx: typer.Context,
    symbols: Annotated[list[str] | None, typer.Argument(metavar="[SYMBOL]...", help="Symbols (default: every symbol with stored actions).", show_default=False)] = None,
    types: Annotated[list[str] | None, typer.Option("--type", metavar="TYPE", autocompletion=completion.action_types, help="Only this type: split, dividend, or Alpaca's name (forward_split, reverse_split, cash_dividend, name_change, spin_off, ...). Repeatable.")] = None,
    start: Annotated[str | None, typer.Option("--start", metavar="DATE", help="From this ex-date (YYYY-MM-DD; the process date for types without one); with --update, the first process date to fetch (default: default_start).")] = None,
    end: Annotated[str | None, typer.Option("--end", metavar="DATE", help="Up to this ex-date, inclusive (YYYY-MM-DD).")] = None,
    update: Annotated[bool, typer.Option("--update", help="First fetch the corporate actions of the given symbols (default: every symbol of the source's datasets) from the source (--source, default the source setting), without fetching bars.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --update: wait for a run holding the store instead of exiting 3.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", metavar="S", help="With --update: give up waiting after S seconds (exit 3).", min=0)] = None,
    source: Annotated[str | None, typer.Option("--source", metavar="NAME", autocompletion=completion.sources, help="Only the actions this source sent (another source's lines end in [massive]); with --update, whose actions to fetch (default: the source setting).", show_default=False)] = None,
) -> None:
    """Show the corporate actions stored beside the bars: symbol, type, ex-date, ratio or amount.

    Examples: dataengine actions AAPL · dataengine actions --type split --start 2020-01-01 · dataengine actions --update

    Exit 0, 1 when --update could not fetch some symbols, 2 for bad input, 3 when another run holds the store (--wait waits for it).
    """
    from dataengine.actions.schema import describe, parse_types
    from dataengine.actions.store import ActionStore
    from dataengine.errors import UsageError
    from dataengine.loaders.symbol_loader import clean_symbols

    wanted = sorted(clean_symbols(symbols, source="symbols")) if symbols else None
    kinds = parse_types(types)
    first, last = _day(start, "--start"), _day(end, "--end")
    if first is not None and last is not None and first > last:
        raise UsageError(f"--start {first} is after --end {last}")
    settings = ctx.obj.settings(source=source)
    code = 0
    result = None
    if update:
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

        pipeline = IngestionPipeline(settings=settings, storage_dir=ctx.obj.store(settings), progress=False,
                                     wait_for_lock=wait or wait_timeout is not None, lock_timeout=wait_timeout,
                                     command=command_line(ctx))
        result = pipeline.update_corporate_actions(wanted, first or settings.default_start, source=settings.source)
        code = result.exit_code
        if not json_out and not ctx.obj.quiet:
            typer.echo(f"corporate actions: {result.actions_new} new or changed, {result.requests} request(s)", err=True)
            for symbol, reason in result.failed.items():
                typer.echo(f"  failed {symbol}: {reason}", err=True)
    root = ctx.obj.existing_store(settings)
    rows = ActionStore(root).select(wanted, types=kinds, start=first, end=last,
                                    source=settings.source if source is not None else None)
    if json_out:
        from dataengine.actions.schema import action_source

        rows = rows.with_columns(action_source())
        payload: dict[str, object] = {"actions": rows.drop("raw").to_dicts(), "count": rows.height}
        if result is not None:
            payload["update"] = result.asdict()
        typer.echo(json.dumps(payload, default=str))
    else:
        for row in rows.iter_rows(named=True):
            typer.echo(describe(row))
        if rows.is_empty() and not ctx.obj.quiet:
            filtered = (kinds or first or last) and not ActionStore(root).select(
                wanted, source=settings.source if source is not None else None).is_empty()
            typer.echo("no corporate actions stored" + (" for these symbols" if wanted else "")
                       + (" that match --type/--start/--end" if filtered else _why_none(root, settings.source, wanted, result)),
                       err=True)
    exit_with(code)


def _why_none(root: StorePath, source: str, wanted: list[str] | None, update: IngestResult | None) -> str:
    """Why the listing is empty, as advice that fits: right after --update, what the update found (telling
    the user to run --update then was wrong); else "never asked" or "asked, none known" (fetched.json tells
    them apart)."""
    if update is not None:
        if update.failed:
            return " (the update could not fetch some symbols: see above, then run it again)"
        if not update.successful:
            return " (the store holds no symbols to fetch them for: name some, e.g. dataengine actions AAPL --update)"
        whose = "them" if wanted else f"the store's {len(update.successful)} symbol(s)"
        return f": the update found none ({source} has none for {whose} since {update.start})"
    from dataengine.actions.store import FetchedLog

    asked = wanted is not None and not FetchedLog(root, source).missing(wanted)
    return f" ({source} was asked and knows none)" if asked else " (fetch them with --update)"


def _day(value: str | None, name: str) -> date | None:
    from dataengine.errors import UsageError

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
