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
from dataengine.loaders.symbol_loader import SymbolLoader
from dataengine.orchestration.live_progress import choose_reporter
from dataengine.orchestration.progress import ProgressReporter
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
    log_file: Path | None = None

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
    log_file: Annotated[Path | None, typer.Option("--log-file", help="Also write the full log here (INFO; DEBUG with -v), with timestamps and thread names.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Global options come before the command: dataengine [--config PATH] [--storage-dir PATH] [-v|-q] COMMAND."""
    ctx.obj = Context(config=config, storage_dir=storage_dir, verbose=verbose, quiet=quiet, log_file=log_file)
    _setup_logging(verbose, quiet, log_file)


class _Redacting(logging.Formatter):
    """Masks every known secret (the API keys from the environment or settings) in formatted records."""

    secrets: set[str] = set()

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time, so the live display can route log lines above it."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(verbose: int, quiet: bool, log_file: Path | None = None) -> None:
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    _Redacting.secrets = {v for k in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY") if (v := os.environ.get(k, "")) and len(v) >= 4}
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)s [%(threadName)s] %(message)s", "%H:%M:%S"))
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        try:
            log_file.expanduser().parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file.expanduser(), encoding="utf-8", delay=False)
        except OSError as exc:
            raise UsageError(f"--log-file {log_file}: {exc.strerror or exc}") from None
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        file_handler.setFormatter(
            _Redacting("%(asctime)s.%(msecs)03d %(levelname)-7s [%(threadName)s] %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
        handlers.append(file_handler)
    root = logging.getLogger("dataengine")
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(min(h.level for h in handlers))
    root.propagate = False


# -- ingest ------------------------------------------------------------------------------------------------

Start = Annotated[str | None, typer.Option("--start", help="First day (YYYY-MM-DD, New York) or ISO datetime. Default 2016-01-01.")]
End = Annotated[str | None, typer.Option("--end", help="Last day, inclusive (YYYY-MM-DD, New York) or ISO datetime. Default now.")]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", help="minute, 5min, 15min, 30min, hour, day, week, month.")]
Feed = Annotated[str, typer.Option("--feed", help="sip, iex, otc or delayed_sip.")]
AdjustmentOpt = Annotated[str, typer.Option("--adjustment", help="raw, split, dividend or all (adjusted bars go to their own dataset).")]
Workers = Annotated[int | None, typer.Option("--workers", "-w", help="Worker threads (default from settings: 6 on macOS, 8 elsewhere).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object with the run's result on stdout.")]
Wait = Annotated[bool, typer.Option("--wait", help="If another run holds the store, wait for it instead of exiting 3 at once.")]
WaitTimeout = Annotated[float | None, typer.Option("--wait-timeout", help="With --wait: give up (exit 3) after this many seconds.", min=0)]
FullRefresh = Annotated[bool, typer.Option("--full-refresh", help="Ignore what is stored and fetch the whole range again.")]
Lag = Annotated[int, typer.Option("--lag", help="Sessions of the last fetch to fetch again for late corrections (0 = none).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan (what is stored, what would be fetched, estimated requests) and fetch nothing.")]


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
    wait: Wait = False,
    wait_timeout: WaitTimeout = None,
    full_refresh: FullRefresh = False,
    lag: Lag = 1,
    dry_run: DryRun = False,
) -> None:
    """Fetch bars for the given symbols and store each bar exactly once."""
    args = IngestArgs(symbols, None, None, start, end, timeframe, feed, adjustment, workers, json_out, wait,
                      wait_timeout, full_refresh, lag, dry_run)
    _ingest(ctx.obj, args, _command_line(ctx))


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
    wait: Wait = False,
    wait_timeout: WaitTimeout = None,
    full_refresh: FullRefresh = False,
    lag: Lag = 1,
    dry_run: DryRun = False,
) -> None:
    """Fetch bars for every symbol of a CSV or text file."""
    args = IngestArgs(None, path, index_name, start, end, timeframe, feed, adjustment, workers, json_out, wait,
                      wait_timeout, full_refresh, lag, dry_run)
    _ingest(ctx.obj, args, _command_line(ctx))


@dataclass
class IngestArgs:
    """What the two ingest commands were asked to do."""

    symbols: list[str] | None
    path: str | None
    index_name: str | None
    start: str | None
    end: str | None
    timeframe: str
    feed: str
    adjustment: str
    workers: int | None
    json_out: bool
    wait: bool
    wait_timeout: float | None
    full_refresh: bool
    lag: int
    dry_run: bool


def _ingest(state: Context, args: IngestArgs, command: list[str]) -> None:
    """Run an ingest; with ``--json`` stdout gets exactly one JSON object whatever happens (errors included)."""
    progress: ProgressReporter | None = None
    try:
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {args.workers}")
        settings = state.settings(workers=args.workers)
        _Redacting.secrets |= {s for s in (settings.api_key_id, settings.api_secret_key) if s and len(s) >= 4}
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline  # imports alpaca-py: only here

        what = f"ingest-csv {args.path}" if args.path else "ingest"
        title = (f"dataengine {what} · {args.timeframe} · {args.start or '2016-01-01'}..{args.end or 'now'}"
                 f" · {args.feed}/{args.adjustment}")
        progress = choose_reporter(quiet=state.quiet, interval=settings.progress_interval, title=title)
        pipeline = IngestionPipeline(
            settings=settings, progress=progress, wait_for_lock=args.wait or args.wait_timeout is not None,
            lock_timeout=args.wait_timeout, command=command,
        )
        options: dict[str, Any] = {
            "feed": args.feed, "adjustment": args.adjustment, "full_refresh": args.full_refresh, "lag": args.lag
        }
        if args.dry_run:
            wanted = SymbolLoader.from_file(args.path) if args.path is not None else args.symbols or []
            plan = pipeline.dry_run(pipeline.prepare(wanted, args.start, args.end, args.timeframe, **options))
            _emit(plan if args.json_out else _format_plan(plan), args.json_out)
            return
        if args.path is not None:
            result = pipeline.ingest_from_csv(args.path, args.start, args.end, args.timeframe, args.index_name, **options)
        else:
            result = pipeline.ingest_symbols(args.symbols or [], args.start, args.end, args.timeframe, **options)
    except DataEngineError as exc:
        if args.json_out:
            partial: IngestResult | None = getattr(exc, "result", None)
            payload = partial.asdict() if partial is not None else {}
            _emit(dict(payload, error=str(exc), exit_code=exc.exit_code), True)
        raise
    finally:
        if progress is not None:
            progress.close()
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    _emit(dict(result.asdict(), exit_code=result.exit_code) if args.json_out else str(result), args.json_out)
    _exit(result.exit_code)


def _format_plan(plan: dict[str, Any]) -> str:
    lines = [
        f"dry run: {plan['symbols_to_fetch']} of {plan['symbols']} symbol(s) to fetch in {plan['units']} unit(s), "
        f"at most ~{plan['est_requests_max']:,} requests and ~{plan['est_bars_max']:,} bars; "
        f"{plan['symbols_up_to_date']} already up to date"
    ]
    todo = [(s, spans) for s, spans in plan["todo"].items() if spans]
    for symbol, spans in todo[:20]:
        lines.append(f"  {symbol}: " + ", ".join(f"{a[:19]}..{b[:19]}" for a, b in spans))
    if len(todo) > 20:
        lines.append(f"  ... and {len(todo) - 20} more")
    return "\n".join(lines)


def _command_line(ctx: typer.Context) -> list[str]:
    """The command as parsed (global options, command, its arguments and options), for the run ledger.

    Rebuilt from the parsed parameters, so it is the same whether the CLI was started from a shell or via
    ``main(argv)``; only options that differ from their defaults appear. No option takes a secret today;
    the ledger masks any that would.
    """
    parts = ["dataengine"]
    chain = [c for c in (ctx.parent, ctx) if c is not None and c.command is not None]
    for c in chain:
        if c is ctx:
            parts.append(ctx.info_name or "")
        for param in c.command.params:
            value = c.params.get(param.name or "")
            if param.name == "version" or value is None or value is False or value == param.default or value == []:
                continue
            if param.param_type_name == "argument":
                parts += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
            elif getattr(param, "count", False):
                parts += [param.opts[0]] * int(value)
            elif value is True:
                parts.append(param.opts[0])
            else:
                parts += [param.opts[0], str(value)]
    return parts


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
    # each command module adds one line here: from dataengine.commands import x; x.register(app)
    from dataengine.commands import query; query.register(app)
    from dataengine.commands import status, index; status.register(app); index.register(app)
    from dataengine.commands import gaps; gaps.register(app)


_register_commands()


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map every error to a one-line message and its documented exit code."""
    try:
        # Without standalone mode the parser returns a command's typer.Exit code instead of exiting.
        code = app(args=argv, prog_name="dataengine", standalone_mode=False)
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
    return code if isinstance(code, int) else 0


def run() -> None:
    sys.exit(main())
