"""``dataengine status [SYMBOL] [--json]``: what the store holds, from metadata and Parquet footers."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from dataengine.timerange import next_month


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    ctx: typer.Context,
    symbol: Annotated[str | None, typer.Argument(metavar="[SYMBOL]", help="Show one symbol's coverage per dataset instead.", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    runs: Annotated[int, typer.Option("--runs", metavar="N", help="How many recent runs to show.", min=0)] = 5,
) -> None:
    """Show the store: size, datasets (symbols, rows, first/last bar, feed), recent runs (each with the
    version of its dataset it left) and indices.

    Examples: dataengine status · dataengine status AAPL --json

    Exit 0 · 1 a damaged or missing partition was found (see verify) · 2 no store · 3 the store cannot be reached or read (S3: access denied, endpoint unreachable).
    """
    from dataengine.reports.status import store_status, symbol_status  # Polars: imported when the command runs

    settings = ctx.obj.settings()
    root = ctx.obj.existing_store(settings)
    report = (symbol_status(root, symbol, history_start=settings.default_start, sip_delay_minutes=settings.sip_delay_minutes,
                            settings=settings)
              if symbol else store_status(root, runs=runs))
    if json_out:
        typer.echo(json.dumps(report, default=str))
    elif symbol:
        typer.echo(render_symbol(report))
    else:
        typer.echo(render_store(report))
    damaged, missing = report.get("damaged", []), report.get("missing_partitions", [])
    if damaged or missing:
        shown = ", ".join([*damaged, *missing][:3])
        typer.echo(f"warning: {len(damaged)} damaged and {len(missing)} missing partition(s) ({shown}...): "
                   "run 'dataengine verify --repair'", err=True)
        raise typer.Exit(1)


# -- rendering (plain text on stdout; no colour, stable for scripts and tests) ----------------------------


def render_store(report: dict[str, Any]) -> str:
    lines = [f"Store {report['root']}: {_size(report['disk_bytes'])} on disk ({_size(report['data_bytes'])} of Parquet)"]
    running = report.get("running")
    if running:
        lines.append(
            f"Running now: pid {running.get('pid')} on {running.get('host')}, started {running.get('started')}"
            + (f" ({running['command']})" if running.get("command") else "")
        )
    if report.get("exited_holder"):
        from dataengine.storage.run_lock import describe_holder

        lines.append(f"No run now, but the lock still names {describe_holder(report['exited_holder'])}")
    lines.append("")
    if report["datasets"]:
        lines += _table(
            ["dataset", "source", "timeframe", "adjustment", "feed", "symbols", "rows", "first bar (UTC)", "last bar (UTC)", "on disk"],
            [
                [d["name"], _source(d), d["timeframe"], d["adjustment"], d["feed"] or "?", f"{d['symbols']:,}", f"{d['rows']:,}",
                 _when(d["first_bar"]), _when(d["last_bar"]), _size(d["disk_bytes"])]
                for d in report["datasets"]
            ],
            drop=() if _other_sources(report["datasets"]) else (1,),
        )
        lines += _synthetic_note(report["datasets"])
    else:
        lines.append("No bars stored yet.")
    lines += ["", "Recent runs:" if report["runs"] else "Recent runs: none recorded"]
    lines += _table(
        ["run", "started (UTC)", "took", "outcome", "symbols ok/failed", "rows written", "version", "command"],
        [
            [r["run_id"], _when(r["started"]), f"{r['elapsed_s']:.1f}s", f"{r['outcome']} ({r['exit_code']})",
             f"{r['symbols_ok']}/{r['symbols_failed']}", f"{r['rows_written']:,}", _version(r.get("version")),
             _clip(r["command"], 60)]
            for r in report["runs"]
        ],
        indent="  ",
    ) if report["runs"] else []
    for r in report["runs"]:
        if r.get("error"):
            lines.append(f"  {r['run_id']}: {r['error']}")
        if r.get("version_error"):
            lines.append(f"  {r['run_id']}: version not committed (the next run's commit takes its bars in): "
                         f"{r['version_error']}")
    if report.get("versions"):
        lines += ["", "Versions (every run a version; dataengine versions -t SIZE lists them):"]
        for v in report["versions"]:
            tags = ", ".join(f"{name}={n}" for name, n in sorted(v["tags"].items()))
            lines.append(f"  {v['dataset']}: {v['versions']} kept, current {v['current']}" + (f", tags {tags}" if tags else ""))
    lines += ["", "Indices:" if report["indices"] else "Indices: none recorded"]
    for i in report["indices"]:
        if "error" in i:
            lines.append(f"  {i['name']}: {i['error']}")
        else:
            lines.append(f"  {i['name']}: {i['members']} members, snapshots {', '.join(i['snapshots']) or '-'}")
    return "\n".join(lines)


def render_symbol(report: dict[str, Any]) -> str:
    actions = report.get("corporate_actions") or {}
    notes = []
    if actions.get("renamed"):
        notes.append(f"{report['symbol']} was renamed {actions['renamed']['to']} on {actions['renamed']['on']}: "
                     f"fetch {actions['renamed']['to']} for its later bars")
    if actions.get("count"):
        notes.append(f"corporate actions: {actions['count']} stored, latest {actions['latest']} (dataengine actions {report['symbol']})")
    if not report["datasets"]:
        return "\n".join([f"{report['symbol']}: no bars stored in {report['root']}", *notes])
    lines = [f"{report['symbol']} in {report['root']}", *notes, ""]
    lines += _table(
        ["dataset", "source", "feed", "rows", "first bar (UTC)", "last bar (UTC)", "months", "missing"],
        [
            [d["name"], _source(d), d["feed"] or "?", f"{d['rows']:,}", _when(d["first_bar"]), _when(d["last_bar"]),
             f"{d['months_held']} ({d['first_month']}..{d['last_month']})", _missing(d)]
            for d in report["datasets"]
        ],
        drop=() if _other_sources(report["datasets"]) else (1,),
    )
    lines += _synthetic_note(report["datasets"])
    return "\n".join(lines)


def _other_sources(datasets: list[dict[str, Any]]) -> bool:
    """A source column only where it says something: a store of Alpaca's bars alone shows its tables as before."""
    return any(d.get("source", "alpaca") != "alpaca" for d in datasets)


def _source(dataset: dict[str, Any]) -> str:
    return f"{dataset['source']} (synthetic)" if dataset.get("synthetic") else str(dataset.get("source", "alpaca"))


def _synthetic_note(datasets: list[dict[str, Any]]) -> list[str]:
    """The sample source's datasets said to be what they are, under any table that shows them."""
    made_up = [d["name"] for d in datasets if d.get("synthetic")]
    if not made_up:
        return []
    return [f"note: {', '.join(made_up)}: synthetic bars from --source sample, not market data"]


def _missing(dataset: dict[str, Any]) -> str:
    """Months without a partition between the first and last, then what was never fetched (both ends)."""
    parts = [_ranges(dataset["missing_months"])] if dataset["missing_months"] else []
    never = dataset.get("never_fetched") or []
    if never:
        parts.append("never fetched " + ", ".join(f"{a}..{b}" if a != b else a for a, b in never))
    return "; ".join(parts) or "none"


def _table(headers: list[str], rows: list[list[str]], indent: str = "", drop: tuple[int, ...] = ()) -> list[str]:
    headers = [h for i, h in enumerate(headers) if i not in drop]
    rows = [[c for i, c in enumerate(r) if i not in drop] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = indent + "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*r).rstrip() for r in rows]


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    text = iso.replace("T", " ")
    for suffix in ("+00:00",):
        text = text.removesuffix(suffix)
    return text[:16] + "Z" if len(text) >= 16 else text


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _version(version: int | None) -> str:
    """The version a run left; ``-`` for none (its commit failed, or a ledger line from before runs named it)."""
    return "-" if version is None else str(version)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _ranges(months: list[str]) -> str:
    """``2020-03, 2020-04, 2020-05, 2021-01`` -> ``2020-03..2020-05, 2021-01``."""
    out: list[str] = []
    start = prev = None
    for month in months:
        if prev is not None and _next(prev) == month:
            prev = month
            continue
        if start is not None:
            out.append(start if start == prev else f"{start}..{prev}")
        start = prev = month
    if start is not None:
        out.append(start if start == prev else f"{start}..{prev}")
    return ", ".join(out)


def _next(month: str) -> str:
    y, m = next_month(int(month[:4]), int(month[5:]))
    return f"{y:04d}-{m:02d}"
