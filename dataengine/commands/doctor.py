"""``dataengine doctor``: the effective settings and where each came from, the keys checked with one request,
the store's state. Renders :func:`dataengine.reports.doctor.diagnose`; writes and creates nothing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from dataengine.reports.doctor import Diagnosis, StoreState


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    offline: Annotated[bool, typer.Option("--offline", help="Do not send the request that checks the keys.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    source: Annotated[str | None, typer.Option("--source", metavar="NAME", help="Whose keys to check: alpaca, massive or sample. Default: the source setting.", show_default=False)] = None,
) -> None:
    """Check the set-up: settings and where each came from, the keys (one request), the store.

    Examples: dataengine doctor · dataengine doctor --storage-dir s3://team-bars/prod --json · dataengine doctor --offline

    Exit 0 ready · 2 keys missing, a setting malformed or a storage dir every command refuses (a file...) · 3 keys
    rejected, the data URL unreachable or the store not writable (read-only). Keys and store both failing: the larger.
    """
    from dataengine.orchestration.sources import secrets
    from dataengine.reports.doctor import diagnose

    settings = ctx.obj.settings(source=source)
    ctx.obj.secrets |= secrets(settings)
    report = diagnose(settings, ctx.obj.store(settings), check_keys=not offline)
    typer.echo(json.dumps(report.asdict(), default=str) if json_out else render(report))
    raise typer.Exit(report.exit_code)


def render(report: Diagnosis) -> str:
    lines = [f"dataengine {report.version} · Python {report.python} · {report.system}", ""]
    lines.append("Settings (each from: flag > environment > settings file > default)")
    width = max(len(row["name"]) for row in report.settings)
    value_width = min(max(len(row["value"]) for row in report.settings), 48)
    lines += [f"  {row['name']:<{width}}  {_clip(row['value'], 48):<{value_width}}  {row['origin']}"
              for row in report.settings]
    lines.append(f"  settings file: {report.settings_file or 'none found (./settings.ini, then the user config dir)'}")
    for alias, wanted in report.misnamed_keys.items():
        lines.append(f"  note: {alias} is set, but dataengine reads {wanted}")
    keys = report.keys
    mark = {True: "ok", False: "FAILED", None: "skipped"}[keys.ok]
    took = f" ({keys.requests} request{'' if keys.requests == 1 else 's'}, {keys.elapsed_ms:.0f} ms)" if keys.requests else ""
    lines += ["", f"Keys: {mark}: {keys.message}{took}", "", *_store_lines(report.store)]
    return "\n".join(lines)


def _store_lines(store: StoreState) -> list[str]:
    link = store.connection
    reached = [f"  reached at {link['endpoint']} ({link['region']}), credentials {link['credentials']}"] if link else []
    head, *rest = _state_lines(store)
    return [head, *reached, *rest]


def _state_lines(store: StoreState) -> list[str]:
    head = f"Store {store.location}"
    if store.unusable:
        return [f"{head}: not usable: {store.unusable}"]
    if store.error:
        return [f"{head}: cannot be read: {store.error}"]
    if not store.exists:
        return [f"{head}: none yet (the first ingest creates it)"]
    if not store.is_store:
        return [f"{head}: exists but is not a dataengine store (no metadata/, no datasets)"]
    marker: dict[str, Any] = store.marker or {}
    made = (f"format {marker.get('format_version', '?')}, created {marker.get('created', '?')}" if marker
            else "no store marker (written by an earlier version; the next run adds it)")
    lines = [f"{head}: {made}", f"  datasets: {', '.join(store.datasets) or 'none yet'}"]
    running = store.running
    if running:
        lines.append(f"  a run holds it now: pid {running.get('pid', '?')} on {running.get('host', '?')}, started "
                     f"{running.get('started', '?')}" + (f" ({running['command']})" if running.get("command") else ""))
    elif store.exited_holder:
        from dataengine.storage.run_lock import describe_holder

        lines.append(f"  no run holds it now, but the lock still names {describe_holder(store.exited_holder)}")
    else:
        lines.append("  no run holds it now")
    return lines


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
