"""``dataengine index add|show|list``: point-in-time index membership under ``metadata/indices/NAME.csv``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dataengine.loaders.symbol_loader import SymbolLoader, clean_symbols

if TYPE_CHECKING:
    from dataengine.storage.metadata_store import MetadataStore

index_app = typer.Typer(
    name="index",
    help="Record and read index membership over time (survivorship-bias-free universes for backtests).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

AsOf = Annotated[str | None, typer.Option("--as-of", metavar="DATE", help="Effective date, YYYY-MM-DD (default today).", show_default=False)]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")


def _store(ctx: typer.Context, *, reading: bool = False) -> MetadataStore:
    """The store's index metadata; ``reading``: the store must exist (``no store at ...``, exit 2), as for every
    reading command, while ``index add`` may make a new store."""
    state = ctx.find_root().obj
    root = state.existing_store() if reading else state.store()
    from dataengine.storage.metadata_store import MetadataStore  # Polars: imported when the command runs

    return MetadataStore(root)


def looks_like_file(item: str) -> bool:
    """One argument names a file when it exists, has a path separator, or ends in .csv/.txt (``BRK.B`` does not)."""
    return Path(item).expanduser().is_file() or "/" in item or "\\" in item or item.lower().endswith((".csv", ".txt"))


def symbols_from(items: list[str]) -> list[str]:
    if len(items) == 1 and looks_like_file(items[0]):
        return SymbolLoader.from_file(items[0])
    return clean_symbols(items, source="the command line")


@index_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Index name: letters, digits, '_', '-', '.'.", show_default=False)],
    items: Annotated[list[str], typer.Argument(metavar="FILE|SYMBOL...", help="A CSV/text file of symbols, or the symbols themselves.", show_default=False)],
    as_of: AsOf = None,
    json_out: JsonOut = False,
) -> None:
    """Record the full membership of NAME in force from --as-of (default today).

    Examples: dataengine index add sp500 sp500-2025.csv --as-of 2025-12-22 · dataengine index add mine AAPL MSFT

    Exit 0 recorded · 2 bad name, date or file, or a storage dir no store can be made in (a file...) · 3 the
    store not writable (read-only, no permission, disk full), or another index add held its lock for 60 s.
    """
    from dataengine.storage.metadata_store import parse_day, validate_index_name

    validate_index_name(name)
    day = parse_day(as_of) or date.today()
    symbols = symbols_from(items)
    store = _store(ctx)
    before = set(store.members(name, day)) if store.exists(name) else set()
    path = store.store(name, symbols, as_of=day)
    added, removed = sorted(set(symbols) - before), sorted(before - set(symbols))
    if json_out:
        payload = {"name": name, "as_of": day.isoformat(), "members": len(set(symbols)), "added": added, "removed": removed, "path": str(path)}
        typer.echo(json.dumps(payload))
    else:
        typer.echo(f"{name} as of {day.isoformat()}: {len(set(symbols))} members (+{len(added)} -{len(removed)}) -> {path}")


@index_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Index name.", show_default=False)],
    as_of: Annotated[str | None, typer.Option("--as-of", metavar="DATE", help="Date, YYYY-MM-DD (default: the latest membership).", show_default=False)] = None,
    json_out: JsonOut = False,
) -> None:
    """Print the members of NAME in force on --as-of, one per line.

    Example: dataengine index show sp500 --as-of 2024-06-30

    Exit 0 · 2 unknown index, bad date or no store.
    """
    from dataengine.storage.metadata_store import parse_day, validate_index_name

    validate_index_name(name)
    day = parse_day(as_of)
    store = _store(ctx, reading=True)
    members = store.members(name, day)
    if json_out:
        typer.echo(json.dumps({"name": name, "as_of": day.isoformat() if day else None, "count": len(members), "symbols": members}))
        return
    if not members and day is not None:
        snaps = store.snapshots(name)
        first = snaps[0].date if snaps else "?"
        typer.echo(f"note: {name} had no members on {day.isoformat()} (first snapshot {first})", err=True)
    for symbol in members:
        typer.echo(symbol)


@index_app.command("list")
def list_indices(ctx: typer.Context, json_out: JsonOut = False) -> None:
    """List the recorded indices with their snapshots (the dates their membership changed).

    Example: dataengine index list --json

    Exit 0 · 2 no store.
    """
    store = _store(ctx, reading=True)
    report: list[dict[str, Any]] = []
    for name in store.names():
        snaps = store.snapshots(name)
        report.append(
            {
                "name": name,
                "members": snaps[-1].members if snaps else 0,
                "snapshots": [{"date": s.date, "members": s.members, "added": len(s.added), "removed": len(s.removed)} for s in snaps],
            }
        )
    if json_out:
        typer.echo(json.dumps({"indices": report}))
        return
    if not report:
        typer.echo("no indices recorded", err=True)
    for entry in report:
        typer.echo(f"{entry['name']}: {entry['members']} members now, {len(entry['snapshots'])} snapshot(s)")
        for s in entry["snapshots"]:
            typer.echo(f"  {s['date']}  {s['members']:>5} members  +{s['added']} -{s['removed']}")

