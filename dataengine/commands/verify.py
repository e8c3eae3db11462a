"""``dataengine verify``: is every partition readable, inside its month, and still there; ``--repair``."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from dataengine.commands import completion
from dataengine.commands.common import command_line, exit_with, repair_exit, require_dataset
from dataengine.datasets import DatasetKey
from dataengine.errors import UsageError, exit_code_for, signal_of
from dataengine.loaders.symbol_loader import clean_symbols

if TYPE_CHECKING:
    from dataengine.config import Settings
    from dataengine.reports.crosscheck import CrossCheckReport
    from dataengine.reports.verify import VerifyReport
    from dataengine.storage.store import StorePath


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)


def verify_command(
    ctx: typer.Context,
    symbols: Annotated[list[str] | None, typer.Argument(metavar="[SYMBOL]...", help="Symbols to check (default: all).", show_default=False)] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", metavar="SIZE", autocompletion=completion.timeframes, help="Only this bar size's datasets (default: every dataset).")] = None,
    repair_it: Annotated[bool, typer.Option("--repair", help="Move damaged files and lines to metadata/quarantine/, rebuild the metadata and fetch those months again.")] = False,
    read_data: Annotated[bool, typer.Option("--read-data", help="Also read every byte of every partition, not only footers: finds a file damaged inside whose footer still reads, and bytes changed in place that still decode (reads the whole store).")] = False,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Also check the files of every version kept, not only the latest and tagged ones (a stat per file per version).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --repair: wait for a run holding the store instead of exiting 3.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", metavar="S", help="With --repair: give up waiting after S seconds (exit 3).")] = None,
    source: Annotated[str | None, typer.Option("--source", metavar="NAME", autocompletion=completion.sources, help="Only this source's datasets (default: every dataset; with --against: the stored side, default the source setting).", show_default=False)] = None,
    against: Annotated[str | None, typer.Option("--against", metavar="SOURCE", autocompletion=completion.sources, help="Fetch the same symbol-months from this other source (nothing stored) and report bars only one side has and prices or volumes beyond the tolerances.", show_default=False)] = None,
    sample: Annotated[int | None, typer.Option("--sample", metavar="N", min=1, help="With --against: check N symbol-months drawn at random (--seed), not all of them.", show_default=False)] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="S", help="With --sample: the draw's seed, 0 unless given (the same seed checks the same months).", show_default=False)] = 0,
    price_tolerance: Annotated[float, typer.Option("--price-tolerance", metavar="R", min=0, help="With --against: open/high/low/close may differ by this relative amount (0.002 = 0.2%).")] = 0.002,
    volume_tolerance: Annotated[float, typer.Option("--volume-tolerance", metavar="R", min=0, help="With --against: volume may differ by this relative amount (0.10 = 10%).")] = 0.10,
    max_share: Annotated[float, typer.Option("--max-share", metavar="R", min=0, help="With --against: a symbol-month is flagged when more than this share of its bars (0.01 = 1%) differ or are on one side only.")] = 0.01,
) -> None:
    """Check every partition from its Parquet footer: readable, its bars inside the month its path names, and
    none that was written once gone; and the metadata: coverage and run ledgers line by line, dataset records,
    corporate-action files, version tables (their Delta logs, the files the latest and tagged versions name;
    with --all-versions, every version kept). Names each
    damaged or missing partition, line and file. With --against SOURCE, compare the stored bars with another
    vendor's instead (nothing is stored or changed).

    Examples: dataengine verify · dataengine verify AAPL -t minute --repair · dataengine verify --against massive -t day --sample 20

    Exit 0 when the store is whole (after --repair: whole again; --against: within the tolerances), 1 when damage remains (or bars differ), 2 for bad input (--against: also when nothing could be compared, every month being outside what the other source serves on your plan), 3 the store cannot be reached or read (S3: access denied, endpoint unreachable), keys rejected (--against) or store busy (--repair), 130/143/129 the repair was stopped by Ctrl-C, SIGTERM, SIGHUP.
    """
    from dataengine.orchestration.api_progress import choose_reporter
    from dataengine.reports.verify import verify, verify_and_repair  # Polars: imported when the command runs
    from dataengine.storage import layout

    settings = ctx.obj.settings(source=source)
    root = ctx.obj.existing_store(settings)
    wanted = clean_symbols(symbols, source="symbols") if symbols else None
    if against is not None:
        if repair_it:
            raise UsageError("--against compares with another source and changes nothing: not with --repair")
        _against(ctx, root, settings, against, timeframe, wanted, sample, seed, json_out,
                 (price_tolerance, volume_tolerance, max_share))
        return
    datasets: list[str] | None = None  # every dataset of every source
    if timeframe is not None or source is not None:
        label = DatasetKey.of(timeframe).timeframe.label if timeframe is not None else None
        datasets = [d for d in layout.dataset_names(root, settings.source if source is not None else None)
                    if label is None or layout.describe_dataset(d)["label"] == label]
        if not datasets:  # as versions and gaps: a store that holds other datasets is not "whole" for checking none
            require_dataset(root, "", f"of {' '.join(filter(None, (timeframe, source)))}")
    if not repair_it:
        report = verify(root, datasets=datasets, symbols=wanted, all_versions=all_versions, read_data=read_data)
    else:
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

        progress = choose_reporter(quiet=ctx.obj.quiet, interval=settings.progress_interval, title="dataengine verify --repair")
        pipeline = IngestionPipeline(settings=settings, storage_dir=root, progress=progress,
                                     wait_for_lock=wait or wait_timeout is not None, lock_timeout=wait_timeout,
                                     command=command_line(ctx))
        try:
            report = verify_and_repair(root, pipeline, datasets=datasets, symbols=wanted, all_versions=all_versions,
                                       read_data=read_data)
        finally:
            progress.close()
        if report.repaired and not json_out:
            kept = (f"; the {report.quarantined} damaged file(s) kept in "
                    f"{layout.metadata_dir(root) / layout.QUARANTINE_DIR}") if report.quarantined else ""
            how = []
            if report.restored:
                how.append(f"{report.restored} put back from the latest version's copy (the bytes stored, nothing fetched)")
            if report.repaired > report.restored:
                how.append(f"{report.repaired - report.restored} fetched again")
            typer.echo(f"repaired {report.repaired} partition(s): {', '.join(how)}{kept}")
        for note in report.mended if not json_out else ():
            typer.echo(f"repaired: {note}")
    code = repair_exit((report.repair or {}).values(), clean=report.ok)
    typer.echo(json.dumps(dict(report.asdict(), exit_code=code)) if json_out else render(report))
    exit_with(code)  # a stopped repair leaves at once, not after a stuck request times out


def _against(ctx: typer.Context, root: StorePath, settings: Settings, against: str, timeframe: str | None,
             symbols: list[str] | None, sample: int | None, seed: int, json_out: bool,
             tolerance: tuple[float, float, float]) -> None:
    """``verify --against``: one library call per raw dataset of the stored source (``-t``: that size only)."""
    from datetime import datetime

    from dataengine.orchestration import sources
    from dataengine.reports.crosscheck import Tolerances, check_pair, comparable, crosscheck, nothing_compared
    from dataengine.storage import dataset_record, layout
    from dataengine.timerange import NEW_YORK

    other = sources.chosen(settings, against).name
    raw = [k for k in (DatasetKey.from_name(n) for n in layout.dataset_names(root, settings.source)) if k.adjustment == "raw"]
    # without -t, every raw dataset whose bars the two vendors stamp alike (not week or month: check_pair says why)
    keys = [k for k in raw if (k.timeframe == DatasetKey.of(timeframe).timeframe if timeframe is not None else comparable(k))]
    if not keys and timeframe is None and raw:  # week and month bars only: say why they are not compared
        check_pair(raw[0], other, "sip")
    if not keys:
        raise UsageError(f"no raw {timeframe or ''} dataset of {settings.source} in {root} to check against {other}"
                         .replace("  ", " "))
    for key in keys:
        check_pair(key, other, str((dataset_record.read(root, key) or {}).get("feed") or "sip"))
    sources.check_keys(settings, other)
    ctx.obj.secrets |= sources.secrets(settings)
    factory = sources.factory(settings, other)
    limits = sources.limits(settings, other, datetime.now(NEW_YORK).date())
    reports: list[CrossCheckReport] = []
    try:
        for key in keys:
            reports.append(crosscheck(root, key, other, factory, symbols=symbols, sample=sample, seed=seed,  # noqa: PERF401 - each kept as done
                                      tolerances=Tolerances(*tolerance), limits=limits))
    except KeyboardInterrupt as stop:  # --json promises one object however the command ends: the datasets done
        if json_out:
            typer.echo(json.dumps({**_Checks(reports).asdict(), "ok": False, "interrupted": True,
                                   "signal": signal.Signals(signal_of(stop)).name, "exit_code": exit_code_for(error=stop)},
                                  default=str))
        raise
    checks = _Checks(reports)
    why = nothing_compared(reports)
    if why is not None:
        # a check that compared nothing (every month outside the plan) must not pass a cron job as clean: the
        # check as asked cannot run, exit 2; the months and why each was skipped are still shown
        if not json_out:
            typer.echo("\n\n".join(render_crosscheck(r) for r in reports))
        checks.ok = False
        error = UsageError(why)
        error.result = checks
        raise error
    if json_out:
        typer.echo(json.dumps({**checks.asdict(), "exit_code": 0 if checks.ok else 1}, default=str))
    else:
        typer.echo("\n\n".join(render_crosscheck(r) for r in reports))
    raise typer.Exit(0 if checks.ok else 1)


class _Checks:
    """The reports of one ``verify --against``, as ``--json`` prints them (also under an error)."""

    def __init__(self, reports: list[CrossCheckReport]) -> None:
        self.reports = reports
        self.ok = all(r.ok for r in reports)

    def asdict(self) -> dict[str, object]:
        return {"checks": [r.asdict() for r in self.reports], "ok": self.ok}


def render_crosscheck(report: CrossCheckReport) -> str:
    t = report.tolerances
    skipped = sum(1 for m in report.months if m.skipped)
    failed = sum(1 for m in report.months if m.error)  # nothing compared: not "beyond the thresholds"
    lines = [f"{report.dataset} ({report.source}) against {report.against}: {len(report.months)} symbol-month(s), "
             f"{report.requests} request(s), {report.flagged - failed} beyond the thresholds (price {t.price:.2%}, "
             f"volume {t.volume:.0%}, more than {t.share:.0%} of a month's bars)"
             + (f", {failed} not compared ({report.against} failed: below)" if failed else "")
             + (f", {skipped} skipped (why: below)" if skipped else ""), ""]
    rows = [[m.symbol, m.month, str(m.stored), *(["-"] * 7 if m.skipped or m.error else [  # nothing was compared
                str(m.other), str(m.only_stored), str(m.only_other), str(m.price_differs), str(m.volume_differs),
                f"{m.max_price_diff:.3%}", f"{m.max_volume_diff:.1%}"]),
             "error" if m.error else "skipped" if m.skipped else "DIFFERS" if m.flagged else "ok"] for m in report.months]
    headers = ["symbol", "month", "stored", report.against, f"only {report.source}", f"only {report.against}",
               "price>tol", "volume>tol", "max price diff", "max volume diff", "result"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines += ["  ".join(f"{h:<{w}}" for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for m in report.months:
        if m.error or m.flagged:
            lines.append(f"  {m.symbol} {m.month}: {m.error or '; '.join(m.examples)}")
    reasons: dict[str, int] = {}  # one line per reason: a plan's window skips every old month alike
    for m in report.months:
        if m.skipped:
            reasons[m.skipped] = reasons.get(m.skipped, 0) + 1
    lines += [f"  {n} skipped: {why}" for why, n in reasons.items()]
    return "\n".join(lines)


def render(report: VerifyReport) -> str:
    if report.ok:
        return (f"store is whole: {report.partitions:,} partition(s) checked in {report.elapsed_s:.2f}s, "
                "and its ledgers, records and corporate actions")
    lines = []
    if report.damage:
        lines.append(f"{len(report.damage)} damaged or missing partition(s) of {report.partitions:,} checked "
                     "(run 'dataengine verify --repair'):")
        lines += [f"  {d.describe()}" for d in report.damage]
    if report.versions:
        mendable = any("cannot be restored" not in problem for problem in report.versions)
        lines.append(f"{len(report.versions)} problem(s) with the version tables: damaged log files, files versions "
                     "name missing or resized, or dataset files no version holds"
                     + (" (run 'dataengine verify --repair'):" if mendable else ":"))
        lines += [f"  {problem}" for problem in report.versions]
    if report.metadata:
        lines.append(f"{len(report.metadata)} damaged metadata line(s) or file(s) (run 'dataengine verify --repair'):")
        lines += [f"  {m.describe()}" for m in report.metadata]
    if report.unrepaired:
        lines.append(f"{len(report.unrepaired)} month(s) set aside and not fetched again whole (the repair was stopped, "
                     "or its symbol failed): their coverage was dropped, so 'dataengine gaps --repair' (or the same "
                     "ingest again) fetches them; a plain verify finds their files whole:")
        lines += [f"  {month}" for month in report.unrepaired]
    return "\n".join(lines)
