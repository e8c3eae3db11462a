"""``dataengine query "SQL"``: one read-only SQL statement against the store's views.

The statement runs through :func:`dataengine.read.query` (sandboxed connection, SELECT/EXPLAIN only).
Files are written only by this module, to ``--output``, and never inside the store.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dataengine.commands import completion
from dataengine.commands.common import print_table
from dataengine.errors import UsageError
from dataengine.storage.atomic import write_atomic

if TYPE_CHECKING:
    import polars as pl


FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROWS = 1000  # a terminal table past this is unreadable; the file formats carry every row


def register(app: typer.Typer) -> None:
    app.command("query")(query)


def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(metavar="SQL", help="One SELECT (or EXPLAIN [ANALYZE] SELECT) over bars_1min, bars_1day, ..., index_members.", show_default=False)],
    fmt: Annotated[str | None, typer.Option("--format", "-f", metavar="FORMAT", help="table, csv, json or parquet (default: table, or from the --output suffix).", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="PATH", help="Write the result to this file (outside the store) instead of stdout.", show_default=False)] = None,
    version: Annotated[int | None, typer.Option("--version", metavar="N", help="Read version N of the dataset --timeframe/--adjustment/--source name; a statement that reads another dataset's bars is refused (pin several with --tag or --as-of).", min=0)] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", metavar="TIME", help="Read every dataset as it was at this time (YYYY-MM-DD[THH:MM], New York).")] = None,
    tag: Annotated[str | None, typer.Option("--tag", metavar="NAME", help="Read the versions this tag pins.")] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", metavar="SIZE", help="With --version: the dataset's bar size.")] = "minute",
    adjustment: Annotated[str, typer.Option("--adjustment", metavar="ADJ", help="With --version: the dataset's adjustment.")] = "raw",
    source: Annotated[str | None, typer.Option("--source", metavar="NAME", autocompletion=completion.sources, help="With --version: whose dataset (alpaca, massive, sample). Default: the source setting.", show_default=False)] = None,
) -> None:
    """Run read-only SQL against the store and print a table or write csv/json/parquet. Each view reads one
    version of its dataset (the latest, unless --version, --as-of or --tag pins one), so a query during a
    run never mixes two runs.

    Examples: dataengine query "select symbol, count(*) from bars_1day group by all" · dataengine query "select * from bars_1min where symbol='AAPL' and year=2024" -o aapl.parquet · dataengine query "select count(*) from bars_1min" --version 12

    Exit 0 · 2 bad or non-read-only SQL, no store, no such version, a --version statement reading another dataset · 3 the store cannot be reached or read (S3: access denied, endpoint unreachable).
    """
    fmt = _choose_format(fmt, output)
    settings = ctx.obj.settings(source=source)
    if output is not None:
        _check_output(output, ctx.obj.store(settings).local)
    from dataengine import read as reader  # DuckDB, Polars, pyarrow: imported when a query runs, not at start-up
    from dataengine.read.pins import CLI_NAMES, pin

    pin(version, as_of, tag, names=CLI_NAMES)  # checked here too, so a bad pin names the options, not Python's names
    frame = reader.query(sql, storage_dir=ctx.obj.store(settings), limit=TABLE_ROWS + 1 if fmt == "table" else None,
                         version=version, as_of=as_of, tag=tag, timeframe=timeframe, adjustment=adjustment,
                         source=settings.source)
    for name in _synthetic_views(sql):
        typer.echo(f"note: {name}_* views hold synthetic bars from --source {name}, not market data", err=True)
    if fmt == "table":
        print_table(frame, TABLE_ROWS)
        if frame.height > TABLE_ROWS:
            typer.echo(f"note: showing the first {TABLE_ROWS:,} rows; use --output with csv, json or parquet for all", err=True)
    elif output is None:
        sys.stdout.write(_render(frame, fmt))
        sys.stdout.flush()
    else:
        _write(frame, fmt, output)
        typer.echo(f"wrote {frame.height:,} row(s) to {output}", err=True)


def _synthetic_views(sql: str) -> list[str]:
    """The synthetic sources (sample) whose views the statement names: their bars are said to be made up, on
    stderr, so a csv or json result stays clean."""
    from dataengine.sources.source import SOURCES

    return [name for name, info in SOURCES.items() if info.synthetic and re.search(rf"\b{name}_\w", sql, re.IGNORECASE)]


def _choose_format(fmt: str | None, output: Path | None) -> str:
    if fmt is None:
        if output is None:
            return "table"
        fmt = output.suffix.lstrip(".").lower()
        if fmt not in FORMATS[1:]:
            raise UsageError(f"cannot tell the format of {output} from its suffix; pass --format csv, json or parquet")
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "table" and output is not None:
        raise UsageError("--output needs --format csv, json or parquet")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs --output PATH")
    return fmt


def _check_output(output: Path, store: Path | None) -> None:
    """``store``: the store's local directory (None for a remote store: nothing local to protect)."""
    target = output.expanduser().resolve()
    store = store.resolve() if store is not None else None
    if store is not None and (target == store or store in target.parents):
        raise UsageError(f"refusing to write {output} inside the store {store}; choose a path outside it")
    if target.is_dir():
        raise UsageError(f"--output {output} is a directory")
    if not target.parent.is_dir():
        raise UsageError(f"--output {output}: directory {target.parent} does not exist")


def _render(frame: pl.DataFrame, fmt: str) -> str:
    import polars as pl

    try:
        frame = _timestamps_as_text(frame)
        return frame.write_csv() if fmt == "csv" else frame.write_json() + "\n"
    except pl.exceptions.PolarsError as exc:
        raise UsageError(f"cannot render the result as {fmt}: {exc}; try --format json or parquet") from None


def _timestamps_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Top-level datetime columns as RFC 3339 text (``2024-01-02T14:30:00+00:00``, a fraction only when there is
    one), the same in csv and json. Left to Polars, csv wrote ``...00.000000+0000`` (an offset Python 3.10's
    ``fromisoformat`` refuses) and json ``...00+00:00``, and naive times with a ``T`` in one and a space in the other."""
    import polars as pl

    texts = [
        pl.col(name).dt.to_string("%Y-%m-%dT%H:%M:%S%.f" + ("%:z" if dtype.time_zone else ""))
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime)
    ]
    return frame.with_columns(texts) if texts else frame


def _write(frame: pl.DataFrame, fmt: str, output: Path) -> None:
    def write(tmp: Path) -> None:
        if fmt == "parquet":
            frame.write_parquet(tmp, compression="zstd")
        else:
            tmp.write_text(_render(frame, fmt), encoding="utf-8")

    try:
        write_atomic(output.expanduser(), write)  # a failed write leaves the old file, never half a new one
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
