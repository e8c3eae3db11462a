"""``dataengine gaps``: sessions with no bars (true gaps) versus quiet minutes, and ``--repair``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from dataengine.commands import completion
from dataengine.commands.common import command_line, exit_with, repair_exit, require_dataset
from dataengine.datasets import DatasetKey
from dataengine.loaders.symbol_loader import clean_symbols
from dataengine.timerange import check_order, parse_bound

if TYPE_CHECKING:
    from dataengine.reports.gaps import SymbolGaps


def register(app: typer.Typer) -> None:
    app.command("gaps")(gaps)


def gaps(
    ctx: typer.Context,
    symbols: Annotated[list[str] | None, typer.Argument(metavar="[SYMBOL]...", help="Symbols to check (default: every stored symbol).", show_default=False)] = None,
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", metavar="SIZE", autocompletion=completion.timeframes, help="minute, 5min, 15min, 30min, hour, day, or any intraday size Alpaca serves (10min, 2hour...).")] = "minute",
    adjustment: Annotated[str, typer.Option("--adjustment", metavar="ADJ", autocompletion=completion.adjustments, help="Which dataset: raw, split, dividend, spin-off, all or a combination.")] = "raw",
    start: Annotated[str | None, typer.Option("--start", metavar="DATE", help="First day (YYYY-MM-DD, New York) or ISO datetime. Default: the first stored bar for true gaps; what was never fetched is judged from default_start.")] = None,
    end: Annotated[str | None, typer.Option("--end", metavar="DATE", help="Last day, inclusive (YYYY-MM-DD, New York) or ISO datetime. Default: the last stored bar.")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Fetch again the missing sessions and what was never fetched (from default_start: limit it with --start), nothing else.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --repair: wait for a run holding the store instead of exiting 3.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", metavar="S", help="With --repair: give up waiting after S seconds (exit 3).")] = None,
    source: Annotated[str | None, typer.Option("--source", metavar="NAME", autocompletion=completion.sources, help="Whose dataset: alpaca, massive or sample. Default: the source setting.", show_default=False)] = None,
) -> None:
    """Report sessions with no bars at all (true gaps) apart from quiet minutes inside sessions.

    Examples: dataengine gaps AAPL · dataengine gaps -t day --repair

    Exit 0 when there is no true gap and nothing was never fetched, 1 when there is (after --repair: when some remain), 2 for bad input or no such dataset (the message names the ones stored), 3 the store cannot be reached or read (S3: access denied, endpoint unreachable), or busy (--repair), 130/143/129 the repair was stopped by Ctrl-C, SIGTERM, SIGHUP.
    """
    settings = ctx.obj.settings(source=source)
    key = DatasetKey.of(timeframe, adjustment, settings.source)
    first = parse_bound(start, is_end=False, name="--start") if start else None
    last = parse_bound(end, is_end=True, name="--end") if end else None
    if start and end and first is not None and last is not None:
        check_order(start, end, first, last)
    wanted = clean_symbols(symbols) if symbols else None
    # Polars, the calendar and the pipeline are imported when the command runs: the help starts fast.
    from dataengine.reports.gaps import find_gaps, repair_gaps, require_gap_timeframe
    from dataengine.storage.parquet_storage import ParquetStorage

    require_gap_timeframe(key)  # bad input first, then the store
    root = ctx.obj.existing_store(settings)  # a missing store is no store, not a store without gaps (exit 2)
    if wanted is None:  # named symbols: never fetched, if so
        require_dataset(root, key.dirname)
    repaired = None
    if not repair:
        reports = find_gaps(ParquetStorage(root), key, wanted, first, last, history_start=settings.default_start,
                            sip_delay_minutes=settings.sip_delay_minutes, settings=settings)
    else:
        from dataengine.orchestration.api_progress import choose_reporter
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

        progress = choose_reporter(quiet=ctx.obj.quiet, interval=settings.progress_interval,
                                   title=f"dataengine gaps --repair · {key.dirname}")
        pipeline = IngestionPipeline(settings=settings, storage_dir=root, progress=progress,
                                     wait_for_lock=wait or wait_timeout is not None, lock_timeout=wait_timeout,
                                     command=command_line(ctx))
        try:
            reports, repaired = repair_gaps(pipeline, key, wanted, first, last, history_start=settings.default_start)
        finally:
            progress.close()
    remaining = sum(len(r.missing_sessions) for r in reports)
    holes = sum(1 for r in reports if r.has_gaps)
    code = repair_exit([repaired] if repaired is not None else [], clean=not holes)
    if json_out:
        payload: dict[str, object] = {"dataset": key.dirname, "symbols": [r.asdict() for r in reports],
                                      "missing_sessions": remaining,
                                      "never_fetched_symbols": sum(1 for r in reports if r.never_fetched),
                                      "fetched_once_symbols": sum(1 for r in reports if r.fetched_once),
                                      "exit_code": code}
        if repaired is not None:
            payload["repair"] = dict(repaired.asdict(), exit_code=repaired.exit_code)
        typer.echo(json.dumps(payload, default=str))
    else:
        typer.echo(render(key.dirname, reports))
        if repaired is not None:
            typer.echo(f"repair: {repaired}")
    exit_with(code)  # a stopped repair leaves at once, not after a stuck request times out


def render(dataset: str, reports: list[SymbolGaps]) -> str:
    if not reports:
        return f"{dataset}: no bars stored"
    missing = sum(len(r.missing_sessions) for r in reports)
    unfetched = sum(1 for r in reports if r.never_fetched)
    lines = [f"{dataset}: {_count(missing, 'missing session')} in {_count(len(reports), 'symbol')}"
             + (f", history never fetched for {_count(unfetched, 'symbol')}" if unfetched else "")
             + (f", files gone for {_count(gone, 'symbol')}" if (gone := sum(1 for r in reports if r.fetched_once)) else "")]
    width = max(len(r.symbol) for r in reports)
    for r in reports:
        never = ("  never fetched: " + ", ".join(f"{a}..{b}" if a != b else a for a, b in r.never_fetched)
                 if r.never_fetched else "")
        if r.fetched_once:  # not "never fetched": the ledger has them, their files are gone
            never += "  fetched once, files gone: " + ", ".join(f"{a}..{b}" if a != b else a for a, b in r.fetched_once)
        if not r.sessions_expected:
            lines.append(f"  {r.symbol:<{width}}  no bars in range{never}")
            continue
        shown = ", ".join(r.missing_sessions[:5]) + (f" (+{len(r.missing_sessions) - 5} more)" if len(r.missing_sessions) > 5 else "")
        lines.append(
            f"  {r.symbol:<{width}}  {r.first_session}..{r.last_session}  sessions {r.sessions_with_bars}/{r.sessions_expected} "
            f"({r.coverage_pct:.1f}%)  quiet bars {r.quiet_bars:,}" + (f"  missing: {shown}" if shown else "") + never
        )
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
