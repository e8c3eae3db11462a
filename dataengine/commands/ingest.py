"""``dataengine ingest`` and ``ingest-csv``: parse, make one library call, render (one JSON object with --json)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dataengine.commands import completion
from dataengine.commands.common import Context, command_line, emit, exit_with, first_day, last_line
from dataengine.errors import UsageError, exit_code_for, signal_of
from dataengine.orchestration.progress import ProgressReporter

if TYPE_CHECKING:
    from dataengine.config import Settings


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command("ingest-csv")(ingest_csv)


Start = Annotated[str | None, typer.Option("--start", metavar="DATE", help="First day (YYYY-MM-DD, New York) or ISO datetime. Default: default_start (2016-01-01).")]
Since = Annotated[str | None, typer.Option("--since", metavar="DATE", help="Another name for --start.", show_default=False)]
Days = Annotated[int | None, typer.Option("--days", metavar="N", min=1, help="The last N New York days up to today (or --end), today included: --days 5. Not with --start.", show_default=False)]
End = Annotated[str | None, typer.Option("--end", metavar="DATE", help="Last day, inclusive (YYYY-MM-DD, New York) or ISO datetime. Default now.")]
TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", metavar="SIZE", autocompletion=completion.timeframes, help="minute, 5min, 15min, 30min, hour, day, week, month, or any size Alpaca serves: 1-59min, 1-23hour, 1/2/3/4/6/12month (also Alpaca's spellings: 10Min, 10T, 2H, 3M).")]
Feed = Annotated[str, typer.Option("--feed", metavar="FEED", autocompletion=completion.feeds, help="sip, iex, otc, boats, or delayed_sip (= sip: the same dataset, the last 15 minutes left out).")]
AdjustmentOpt = Annotated[str, typer.Option("--adjustment", metavar="ADJ", autocompletion=completion.adjustments, help="raw, split, dividend, spin-off, all, or a comma combination such as split,spin-off (adjusted bars go to their own dataset).")]
Asof = Annotated[str | None, typer.Option("--asof", metavar="DATE", help="Map renamed symbols as of this day (YYYY-MM-DD), or '-' for no mapping. Default: the day the dataset was created, kept for every later run.")]
Workers = Annotated[int | None, typer.Option("--workers", "-w", metavar="N", help="Worker threads (default from settings: 6 on macOS, 8 elsewhere).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object with the run's result on stdout.")]
Wait = Annotated[bool, typer.Option("--wait", help="If another run holds the store, wait for it instead of exiting 3 at once.")]
WaitTimeout = Annotated[float | None, typer.Option("--wait-timeout", metavar="SECONDS", help="With --wait: give up (exit 3) after this many seconds.", min=0)]
FullRefresh = Annotated[bool, typer.Option("--full-refresh", help="Ignore what is stored and fetch the whole range again.")]
Lag = Annotated[int, typer.Option("--lag", metavar="N", help="Sessions of the last fetch to fetch again for late corrections (0 = none).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the plan (what is stored, what would be fetched, estimated requests) and fetch nothing.")]
SourceOpt = Annotated[str | None, typer.Option("--source", metavar="NAME", autocompletion=completion.sources, help="Where bars come from: alpaca, massive, or sample (synthetic bars, no key, no network). Each source has its own datasets. Default: the source setting (alpaca).", show_default=False)]


def ingest(
    ctx: typer.Context,
    symbols: Annotated[list[str], typer.Argument(metavar="SYMBOL...", help="Symbols, e.g. AAPL MSFT BRK.B", show_default=False)],
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
    asof: Asof = None,
    since: Since = None,
    days: Days = None,
    source: SourceOpt = None,
) -> None:
    """Fetch bars for the given symbols and store each bar exactly once.

    Examples: dataengine ingest AAPL MSFT --start 2024-01-01 -t day · dataengine ingest NVDA --days 5 · dataengine ingest AAPL MSFT --source sample -t day --days 30

    Exit 0 all done · 1 some symbols failed (or none had data) · 2 bad input, nothing fetched · 3 fatal (keys, 4xx, store locked) · 130 Ctrl-C · 143 SIGTERM · 129 SIGHUP.
    """
    start = first_day(start, since, days, end)
    args = IngestArgs(symbols, None, None, start, end, timeframe, feed, adjustment, workers, json_out, wait,
                      wait_timeout, full_refresh, lag, dry_run, asof, source)
    _ingest(ctx.obj, args, command_line(ctx))


def ingest_csv(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", autocompletion=completion.symbol_files, help="CSV with a Symbol column (separated by , ; tab or |), or a text file with one symbol per line; a bare name is also looked up in the bundled lists/ (e.g. sp500-2025.csv).", show_default=False)],
    index_name: Annotated[str | None, typer.Option("--index-name", metavar="NAME", help="Also record the list as this index's membership from today.")] = None,
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
    asof: Asof = None,
    since: Since = None,
    days: Days = None,
    source: SourceOpt = None,
) -> None:
    """Fetch bars for every symbol of a CSV or text file.

    Examples: dataengine ingest-csv sp500-2025.csv --timeframe minute · dataengine ingest-csv my.csv -t day --json

    Exit 0 all done · 1 some symbols failed (or none had data) · 2 bad input, nothing fetched · 3 fatal (keys, 4xx, store locked) · 130 Ctrl-C · 143 SIGTERM · 129 SIGHUP.
    """
    start = first_day(start, since, days, end)
    args = IngestArgs(None, path, index_name, start, end, timeframe, feed, adjustment, workers, json_out, wait,
                      wait_timeout, full_refresh, lag, dry_run, asof, source)
    _ingest(ctx.obj, args, command_line(ctx))


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
    asof: str | None = None
    source: str | None = None


def _ingest(state: Context, args: IngestArgs, command: list[str]) -> None:
    """Run an ingest; with ``--json`` stdout gets exactly one JSON object whatever happens (errors included)."""
    progress: ProgressReporter | None = None
    try:
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {args.workers}")
        settings = state.settings(workers=args.workers, source=args.source)
        from dataengine.orchestration import sources

        state.secrets |= sources.secrets(settings)
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline  # imports Polars: only here
        from dataengine.orchestration.request import IngestOptions
        from dataengine.storage.metadata_store import validate_index_name

        if args.index_name is not None:
            validate_index_name(args.index_name)  # before the run, not after hours of it

        what = f"ingest-csv {args.path}" if args.path else "ingest"
        info = sources.chosen(settings, None)
        title = (f"dataengine {what} · {args.timeframe} · {args.start or '2016-01-01'}..{args.end or 'now'}"
                 f" · {args.feed}/{args.adjustment}" + (f" · {info.title}" if info.name != "alpaca" else ""))
        from dataengine.orchestration.api_progress import choose_reporter  # Rich: only on a terminal

        progress = choose_reporter(quiet=state.quiet, interval=settings.progress_interval, title=title)
        pipeline = IngestionPipeline(
            settings=settings, storage_dir=state.store(settings), progress=progress, wait_for_lock=args.wait or args.wait_timeout is not None,
            lock_timeout=args.wait_timeout, command=command,
        )
        options = IngestOptions(feed=args.feed, adjustment=args.adjustment, full_refresh=args.full_refresh,
                                lag=args.lag, asof=args.asof, source=info.name)
        keys = not args.dry_run  # a dry run sends nothing: it plans without keys, and says a run needs them
        if args.path is not None:
            request = pipeline.prepare_csv(args.path, args.start, args.end, args.timeframe, options, keys=keys)
        else:
            request = pipeline.prepare(args.symbols or [], args.start, args.end, args.timeframe, options, keys=keys)
        # What the range became (start moved into the plan's years, end pulled back) is said before the run,
        # not after an hour of it
        extra = _missing_keys(settings, info.name) if args.dry_run else []
        for note in [*request.range.notes, *extra] if not state.quiet else ():
            typer.echo(f"note: {note}", err=True)
        if args.dry_run:
            plan = pipeline.dry_run(request)
            emit(dict(plan, exit_code=0) if args.json_out else _format_plan(plan), args.json_out)  # as every --json
            return
        result = pipeline.run(request)
        if args.index_name is not None:
            pipeline.metadata.store(args.index_name, list(request.symbols))
    except KeyboardInterrupt as exc:
        # Stopped before the run had a result (while corporate actions came): still the one JSON object a cron
        # job parses, and the exit code of the signal (the CLI parser would turn every interrupt into 130).
        code = exit_code_for(error=exc)
        if args.json_out:
            partial = getattr(exc, "result", None)  # a run stopped before its bars has one, of the usual shape
            emit(dict(partial.asdict() if partial is not None else {"interrupted": True, "signal": signal_of(exc)},
                      error="interrupted", exit_code=code), True)
        last_line(logging.WARNING, "Interrupted.")
        raise typer.Exit(code) from None
    finally:
        if progress is not None:
            progress.close()
    for note in result.notes if not state.quiet else ():
        if note not in request.range.notes:  # said before the run
            typer.echo(f"note: {note}", err=True)
    warning = result.no_data_warning()
    if warning is not None:
        typer.echo(f"warning: {warning}", err=True)
    for symbol, reason in sorted(result.refetched.items()) if args.json_out else ():  # str(result) names them too
        typer.echo(f"re-fetched {symbol}: {reason}", err=True)
    emit(dict(result.asdict(), exit_code=result.exit_code) if args.json_out else str(result), args.json_out)
    exit_with(result.exit_code)


def _missing_keys(settings: Settings, source: str) -> list[str]:
    """What a real run would stop at, for a dry run that planned without keys: one note, or none."""
    from dataengine.orchestration import sources

    try:
        sources.check_keys(settings, source)
    except UsageError as exc:
        return [f"the run itself needs keys: {exc}"]
    return []


def _format_plan(plan: dict[str, Any]) -> str:
    lines = [
        f"dry run: {plan['symbols_to_fetch']} of {plan['symbols']} symbol(s) to fetch in {plan['units']} unit(s), "
        f"at most ~{plan['est_requests_max']:,} requests and ~{plan['est_bars_max']:,} bars"
        + (f" (and at least {plan['est_action_requests_min']:,} for corporate actions)" if plan.get("est_action_requests_min") else "")
        + (f" from {plan['source']}" if plan.get("source", "alpaca") != "alpaca" else "")
        + f"; {plan['symbols_up_to_date']} already up to date (ranges in New York time)"
    ]
    todo = [(s, spans) for s, spans in plan["todo"].items() if spans]
    for symbol, spans in todo[:20]:
        lines.append(f"  {symbol}: " + ", ".join(_span(a, b) for a, b in spans))
    if len(todo) > 20:
        lines.append(f"  ... and {len(todo) - 20} more")
    return "\n".join(lines)




def _span(start: str, end: str) -> str:
    """A planned range (UTC instants) in New York days, with a time only where it is not a whole day."""
    from datetime import datetime, timedelta

    from dataengine.timerange import NEW_YORK, ONE_MICROSECOND, ny_text

    last = datetime.fromisoformat(end)
    after = last + ONE_MICROSECOND
    whole_day = len(ny_text(after)) == 10  # ends at a New York midnight: its last day is the one before
    last_text = (after.astimezone(NEW_YORK).date() - timedelta(days=1)).isoformat() if whole_day else ny_text(last)
    return f"{ny_text(datetime.fromisoformat(start))}..{last_text}"
