"""``dataengine versions`` (every run a version: list, prune) and ``dataengine tag`` (pin one for a backtest)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from dataengine.commands.common import other_datasets_hint, require_dataset

TimeframeOpt = Annotated[str, typer.Option("--timeframe", "-t", metavar="SIZE", help="Which dataset: its bar size (minute, day, 10min, ...).")]
AdjustmentOpt = Annotated[str, typer.Option("--adjustment", metavar="ADJ", help="Which dataset: raw, split, dividend, all... (split/dividend/all read from the raw dataset's versions).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait for a run holding the store instead of exiting 3.")]
# versions: None when not given, so that --prune can tell "every dataset" from the one -t/--adjustment name
PickTimeframe = Annotated[str | None, typer.Option("--timeframe", "-t", metavar="SIZE", help="Which dataset: its bar size (minute, day, 10min, ...). Default: minute.", show_default=False)]
PickAdjustment = Annotated[str | None, typer.Option("--adjustment", metavar="ADJ", help="Which dataset: raw, split, dividend, all... (split/dividend/all read from the raw dataset's versions). Default: raw.", show_default=False)]
SourceOpt = Annotated[str | None, typer.Option("--source", metavar="NAME", help="Whose dataset: alpaca, massive or sample. Default: the source setting.", show_default=False)]


def register(app: typer.Typer) -> None:
    app.command("versions")(versions)
    app.command("tag")(tag_command)


def versions(
    ctx: typer.Context,
    timeframe: PickTimeframe = None,
    adjustment: PickAdjustment = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", metavar="N", help="Only the newest N versions.", min=1)] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Remove what only unpinned versions older than --keep-days reference, in every dataset, or only in the one -t/--adjustment name (with --source alone: every dataset of that source); the latest and tagged versions are kept.")] = False,
    keep_days: Annotated[float | None, typer.Option("--keep-days", metavar="N", help="With --prune: keep every version current in the last N days (default: keep_versions_days, 30).", min=0)] = None,
    json_out: JsonOut = False,
    wait: Wait = False,
    source: SourceOpt = None,
) -> None:
    """List a dataset's versions (every run that changed it is one), newest first: number, time, run, what
    made it, partitions changed, rows added and rows removed (a partition fetched again counts its old rows as
    removed and its new ones as added, so a re-fetch that changed values shows both), tags. Other engines open
    the Delta table it names (delta_path).

    Examples: dataengine versions · dataengine versions -t day --json · dataengine versions --prune --keep-days 7
    · dataengine versions --prune -t day

    Exit 0 · 2 bad input, no store, or no such dataset (the message names the ones stored) · 3 the store cannot be reached or read (S3: access denied, endpoint unreachable), or
    with --prune another run holds it.
    """
    from dataengine.datasets import DatasetKey
    from dataengine.reports.versions import prune_versions, table_of, versions_report
    from dataengine.storage.store_root import check_readable_root

    settings = ctx.obj.settings(source=source)
    root = check_readable_root(ctx.obj.store(settings))
    key = DatasetKey.of(timeframe or "minute", adjustment or "raw", settings.source)
    if prune:
        keys: list[DatasetKey] | None = None  # every dataset
        if timeframe is not None or adjustment is not None:
            require_dataset(root, table_of(root, key).dataset)
            keys = [key]
        elif source is not None:  # --source alone: every dataset of that source, not its minute bars only
            from dataengine.storage import layout

            keys = [DatasetKey.from_name(name) for name in layout.dataset_names(root, settings.source)]
            if not keys:
                require_dataset(root, table_of(root, key).dataset)
        days = keep_days if keep_days is not None else settings.keep_versions_days
        report = prune_versions(root, keys, days, wait=wait)
        if json_out:
            typer.echo(json.dumps(report.asdict()))
        else:
            typer.echo(f"pruned versions older than {days:g} day(s): {report.bytes_freed:,} bytes freed")
            for name, done in report.datasets.items():
                typer.echo(f"  {name}: {done['versions_dropped']} version(s) no longer readable, {done['files_deleted']} "
                           f"file(s) deleted, {done['bytes_freed']:,} bytes (files a newer version shares stay); "
                           f"versions kept from {done['oldest_kept']}, and the tagged ones")
        return
    shown = versions_report(root, key, limit=limit)
    if not shown["versions"]:
        require_dataset(root, shown["dataset"])
    typer.echo(json.dumps(shown) if json_out else render(shown))


def render(report: dict[str, Any]) -> str:
    from dataengine.read.pins import utc_text  # the form --as-of reads back to this very version

    if not report["versions"]:
        return f"{report['dataset']}: no versions yet (the next run makes the first)"
    lines = [f"{report['dataset']}: current version {report['current']}, {report['kept_bytes']:,} bytes held only by "
             f"older versions · Delta table {report['delta_path']}", ""]
    # added and removed apart, never their net: a re-fetch that replaced every value of a partition adds as many
    # rows as it removes, and "+0" read as "nothing happened" (a user's trial)
    lines.append(f"{'version':>7}  {'committed (UTC)':<24}  {'reason':<10}  {'partitions':>10}  {'rows added':>12}  "
                 f"{'rows removed':>12}  run / tags")
    for v in report["versions"]:
        added, removed = _signed(v["rows_added"], "+"), _signed(v["rows_removed"], "-")
        reason = "refetch" if v["reason"] == "refetch-after-corporate-action" else v["reason"] or ""
        tags = f"  [{', '.join(v['tags'])}]" if v["tags"] else ""
        if not v.get("readable", True):
            tags += "  (pruned: no longer readable)"
        if v.get("inferred"):
            tags += f"  (rebuilt by a repair; {', '.join(v['inferred'])} inferred)"
        lines.append(f"{v['version']:>7}  {utc_text(datetime.fromisoformat(v['timestamp'])):<24}  {reason:<10}  "
                     f"{v['partitions'] if v['partitions'] is not None else '?':>10}  {added:>12}  {removed:>12}  "
                     f"{v['run_id'] or ''}{tags}")
    if any(v["rows_added"] is None or v["rows_removed"] is None or v["partitions"] is None for v in report["versions"]):
        lines += ["", "?: not counted. A version that took in files already there (adopt: a store's first version; "
                  "repair: verify --repair recording files as they are) records their sizes, not their rows, so as "
                  "not to read every file back."]
    return "\n".join(lines)


def _signed(rows: int | None, sign: str) -> str:
    """``+19,200`` / ``-19,200``; ``0`` without a sign; ``?`` when the version did not count them."""
    return "?" if rows is None else f"{sign}{rows:,}" if rows else "0"


def tag_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The tag: letters, digits, '_', '.', '-'.", show_default=False)],
    version: Annotated[int | None, typer.Option("--version", metavar="N", help="The version to pin (default: the latest).", min=0)] = None,
    delete: Annotated[bool, typer.Option("--delete", "-d", help="Remove the tag instead: its version may be pruned from then on.")] = False,
    timeframe: TimeframeOpt = "minute",
    adjustment: AdjustmentOpt = "raw",
    json_out: JsonOut = False,
    wait: Wait = False,
    source: SourceOpt = None,
) -> None:
    """Pin a version of a dataset under a name: it is never pruned, and read_bars(..., tag=NAME),
    connect(tag=NAME) and dataengine query --tag NAME read it. A tag never moves: to pin another version under
    its name, remove it first with --delete.

    Examples: dataengine tag paper-2025 · dataengine tag before-split --version 41 -t day · dataengine tag
    before-split --delete -t day

    Exit 0 · 2 bad name, unknown version or tag, a tag already pinning another version, no store · 3 store busy, or
    the store cannot be reached or read (S3: access denied, endpoint unreachable).
    """
    from dataengine.datasets import DatasetKey
    from dataengine.errors import UsageError
    from dataengine.reports.versions import VersionError, pin_version, table_of, unpin_version
    from dataengine.storage.store_root import check_readable_root
    from dataengine.storage.versions import TagInUseError

    if delete and version is not None:
        raise UsageError("--delete removes the tag whatever version it pins: give no --version")
    settings = ctx.obj.settings(source=source)
    root = check_readable_root(ctx.obj.store(settings))
    key = DatasetKey.of(timeframe, adjustment, settings.source)
    try:
        if delete:
            pinned = unpin_version(root, key, name, wait=wait)
        else:
            pinned = pin_version(root, key, name, version, wait=wait)
    except TagInUseError as exc:
        raise VersionError(f"tag {name!r} pins version {exc.pinned} already (a tag never moves); remove it first: "
                           + _delete_command(ctx, name, timeframe, adjustment, source)) from None
    except VersionError as exc:
        raise VersionError(str(exc) + other_datasets_hint(root, table_of(root, key).dataset)) from None
    dataset = table_of(root, key).dataset
    if json_out:
        typer.echo(json.dumps({"tag": name, "dataset": dataset, "version": pinned, "deleted": delete}))
    else:
        typer.echo(f"removed tag {name!r} of {dataset} (it pinned version {pinned})" if delete
                   else f"tagged version {pinned} of {dataset} as {name!r}")


def _delete_command(ctx: typer.Context, name: str, timeframe: str, adjustment: str, source: str | None) -> str:
    """The command that removes tag ``name`` of the dataset this command named, as it was named (its options,
    and the global ones that chose the store), ready to paste."""
    import shlex

    from dataengine.urls import mask_url

    words = ["dataengine", "tag", name, "--delete"]
    words += ["-t", timeframe] if timeframe != "minute" else []
    words += ["--adjustment", adjustment] if adjustment != "raw" else []
    words += ["--source", source] if source else []
    words += ["--storage-dir", mask_url(ctx.obj.storage_dir)] if ctx.obj.storage_dir else []
    words += ["--config", str(ctx.obj.config)] if ctx.obj.config else []
    return " ".join(shlex.quote(word) for word in words)
