"""The ``dataengine`` command: parse, build library objects, make one library call, render.

stdout carries results (the summary, or one JSON object with ``--json``); progress, logs and errors go to
stderr. Exit codes: 0 all done, 1 some symbols failed, 2 usage or configuration error (nothing fetched),
3 fatal during the run, 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from dataengine import __version__
from dataengine.config import Settings
from dataengine.errors import DataEngineError, UsageError
from dataengine.orchestration.ingestion_pipeline import IngestionPipeline
from dataengine.orchestration.progress import PlainProgress, ProgressReporter
from dataengine.orchestration.result import IngestResult

app = typer.Typer(
    name="dataengine",
    help="Pull historical US stock bars from Alpaca into a local, exactly-once, Hive-partitioned Parquet store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
log = logging.getLogger("dataengine")


@dataclass
class Context:
    """What the global options resolve to; handed to every command."""

    config: Path | None
    storage_dir: Path | None
    verbose: int
    quiet: bool

    def settings(self, **overrides: Any) -> Settings:
        return Settings.load(config_path=self.config).with_overrides(storage_dir=self.storage_dir, **overrides)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dataengine {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="Settings file (else DATAENGINE_CONFIG, ./settings.ini, the user config dir).")] = None,
    storage_dir: Annotated[Path | None, typer.Option("--storage-dir", help="Root of the store (else DATAENGINE_STORAGE_DIR, settings.ini, the user data dir).")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log detail on stderr (-vv for debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final summary.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Global options come before the command: dataengine [--config PATH] [--storage-dir PATH] [-v|-q] COMMAND."""
    ctx.obj = Context(config=config, storage_dir=storage_dir, verbose=verbose, quiet=quiet)
    _setup_logging(verbose, quiet)


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(threadName)s] %(message)s", "%H:%M:%S"))
    root = logging.getLogger("dataengine")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# -- ingest ------------------------------------------------------------------------------------------------

Start = Annotated[str | None, typer.Option("--start", help="First day (YYYY-MM-DD, New York) or ISO datetime. Default 2016-01-01.")]
End = Annotated[str | None, typer.Option("--end", help="Last day, inclusive (YYYY-MM-DD, New York) or ISO datetime. Default now.")]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", help="minute, 5min, 15min, 30min, hour, day, week, month.")]
Feed = Annotated[str, typer.Option("--feed", help="sip, iex, otc or delayed_sip.")]
AdjustmentOpt = Annotated[str, typer.Option("--adjustment", help="raw, split, dividend or all (adjusted bars go to their own dataset).")]
Workers = Annotated[int | None, typer.Option("--workers", "-w", help="Worker threads (default from settings: 6 on macOS, 8 elsewhere).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object with the run's result on stdout.")]


@app.command()
def ingest(
    ctx: typer.Context,
    symbols: Annotated[list[str], typer.Argument(help="Symbols, e.g. AAPL MSFT BRK.B", show_default=False)],
    start: Start = None,
    end: End = None,
    timeframe: TimeframeOpt = "minute",
    feed: Feed = "sip",
    adjustment: AdjustmentOpt = "raw",
    workers: Workers = None,
    json_out: JsonOut = False,
) -> None:
    """Fetch bars for the given symbols and store each bar exactly once."""
    _ingest(ctx.obj, symbols, None, None, start, end, timeframe, feed, adjustment, workers, json_out)


@app.command("ingest-csv")
def ingest_csv(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="CSV with a Symbol column, or a text file with one symbol per line; a bare name is also looked up in the bundled lists/ (e.g. sp500-2025.csv).", show_default=False)],
    index_name: Annotated[str | None, typer.Option("--index-name", help="Also record the list as this index's membership from today.")] = None,
    start: Start = None,
    end: End = None,
    timeframe: TimeframeOpt = "minute",
    feed: Feed = "sip",
    adjustment: AdjustmentOpt = "raw",
    workers: Workers = None,
    json_out: JsonOut = False,
) -> None:
    """Fetch bars for every symbol of a CSV or text file."""
    _ingest(ctx.obj, None, path, index_name, start, end, timeframe, feed, adjustment, workers, json_out)


def _ingest(
    state: Context,
    symbols: list[str] | None,
    path: str | None,
    index_name: str | None,
    start: str | None,
    end: str | None,
    timeframe: str,
    feed: str,
    adjustment: str,
    workers: int | None,
    json_out: bool,
) -> None:
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    settings = state.settings(workers=workers)
    progress: ProgressReporter = ProgressReporter() if state.quiet else PlainProgress(sys.stderr, settings.progress_interval)
    pipeline = IngestionPipeline(settings=settings, progress=progress)
    try:
        if path is not None:
            result = pipeline.ingest_from_csv(path, start, end, timeframe, index_name, feed=feed, adjustment=adjustment)
        else:
            result = pipeline.ingest_symbols(symbols or [], start, end, timeframe, feed=feed, adjustment=adjustment)
    except DataEngineError as exc:
        partial: IngestResult | None = getattr(exc, "result", None)
        if partial is not None and json_out:
            _emit(dict(partial.asdict(), error=str(exc)), True)
        raise
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    _emit(result.asdict() if json_out else str(result), json_out)
    _exit(result.exit_code)


def _emit(payload: Any, as_json: bool) -> None:
    typer.echo(json.dumps(payload, default=str) if as_json else payload)


def _exit(code: int) -> None:
    if code == 130 and threading.active_count() > 1:
        # A worker is stuck in a request that has not timed out yet; its partition writes are atomic, so
        # leaving now is safe and Ctrl-C should not wait for a network timeout.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    raise typer.Exit(code)


# -- other commands (one module each under dataengine/commands) -------------------------------------------


def _register_commands() -> None:
    pass  # each command module adds one line here: from dataengine.commands import x; x.register(app)


_register_commands()


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every error to a one-line message and its documented exit code."""
    try:
        app(args=argv, prog_name="dataengine", standalone_mode=False)
    except DataEngineError as exc:
        typer.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("Interrupted.", err=True)
        return 130
    except typer.TyperException as exc:  # the CLI parser's own usage errors
        typer.echo(f"Error: {exc.format_message()}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return 130
    return 0


def run() -> None:
    sys.exit(main())
