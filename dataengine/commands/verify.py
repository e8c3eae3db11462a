"""``dataengine verify``: is every partition readable, inside its month, and still there; ``--repair``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from dataengine.commands import completion
from dataengine.commands.common import command_line
from dataengine.datasets import DatasetKey
from dataengine.loaders.symbol_loader import clean_symbols

if TYPE_CHECKING:
    from dataengine.reports.verify import VerifyReport


def register(app: typer.Typer) -> None:
    app.command("verify")(verify_command)


def verify_command(
    ctx: typer.Context,
    symbols: Annotated[list[str] | None, typer.Argument(metavar="[SYMBOL]...", help="Symbols to check (default: all).", show_default=False)] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", "-t", metavar="SIZE", autocompletion=completion.timeframes, help="Only this bar size's datasets (default: every dataset).")] = None,
    repair_it: Annotated[bool, typer.Option("--repair", help="Move damaged files and lines to metadata/quarantine/, rebuild the metadata and fetch those months again.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --repair: wait for a run holding the store instead of exiting 3.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", metavar="S", help="With --repair: give up waiting after S seconds (exit 3).")] = None,
) -> None:
    """Check every partition from its Parquet footer: readable, its bars inside the month its path names, and
    none that was written once gone; and the metadata: coverage and run ledgers line by line, dataset records,
    corporate-action files, version tables (their Delta logs, the files the latest versions name). Names each
    damaged or missing partition, line and file.

    Examples: dataengine verify · dataengine verify AAPL -t minute --repair

    Exit 0 when the store is whole (after --repair: whole again), 1 when damage remains, 2 for bad input.
    """
    from dataengine.orchestration.progress import choose_reporter
    from dataengine.reports.verify import verify, verify_and_repair  # Polars: imported when the command runs
    from dataengine.storage import layout

    settings = ctx.obj.settings()
    root = ctx.obj.existing_store(settings)
    wanted = clean_symbols(symbols, source="symbols") if symbols else None
    datasets = None
    if timeframe is not None:
        label = DatasetKey.of(timeframe).timeframe.label
        datasets = [d for d in layout.dataset_names(root) if layout.describe_dataset(d)["label"] == label]
    if not repair_it:
        report = verify(root, datasets=datasets, symbols=wanted)
    else:
        from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

        progress = choose_reporter(quiet=ctx.obj.quiet, interval=settings.progress_interval, title="dataengine verify --repair")
        pipeline = IngestionPipeline(settings=settings, storage_dir=root, progress=progress,
                                     wait_for_lock=wait or wait_timeout is not None, lock_timeout=wait_timeout,
                                     command=command_line(ctx))
        try:
            report = verify_and_repair(root, pipeline, datasets=datasets, symbols=wanted)
        finally:
            progress.close()
        if report.repaired and not json_out:
            typer.echo(f"repaired {report.repaired} partition(s): damaged files kept in "
                       f"{layout.metadata_dir(root) / layout.QUARANTINE_DIR}")
        for note in report.mended if not json_out else ():
            typer.echo(f"repaired: {note}")
    typer.echo(json.dumps(report.asdict()) if json_out else render(report))
    raise typer.Exit(0 if report.ok else 1)


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
        lines.append(f"{len(report.versions)} problem(s) with the version tables: damaged log files, or files the "
                     "latest versions name missing or resized (run 'dataengine verify --repair'):")
        lines += [f"  {problem}" for problem in report.versions]
    if report.metadata:
        lines.append(f"{len(report.metadata)} damaged metadata line(s) or file(s) (run 'dataengine verify --repair'):")
        lines += [f"  {m.describe()}" for m in report.metadata]
    return "\n".join(lines)
