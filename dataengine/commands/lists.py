"""``dataengine lists``: the symbol lists shipped with dataengine, which ``ingest-csv NAME`` takes by name."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("lists")(lists)


def lists(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Name the bundled symbol lists and how many symbols each holds.

    Examples: dataengine lists · dataengine ingest-csv sp500-2025.csv -t day

    Exit 0.
    """
    from dataengine.loaders.symbol_loader import bundled_lists

    found = bundled_lists()
    if json_out:
        typer.echo(json.dumps({"lists": [{"name": b.name, "symbols": b.symbols, "path": str(b.path)} for b in found]}))
        return
    if not found:
        typer.echo("no bundled lists", err=True)
    width = max((len(b.name) for b in found), default=0)
    for b in found:
        typer.echo(f"{b.name:<{width}}  {b.symbols:>5,} symbols   dataengine ingest-csv {b.name}")
