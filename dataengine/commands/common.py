"""What every command shares: the resolved global options, the command line for the ledger, output helpers."""

from __future__ import annotations

import json
import logging
import math
import os
import struct
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dataengine.config import Settings

if TYPE_CHECKING:
    import polars as pl

    from dataengine.storage.store import StorePath


@dataclass
class Context:
    """What the global options resolve to; handed to every command as ``ctx.obj``."""

    config: Path | None
    storage_dir: str | None  # as given: a URI must reach the settings' check whole (Path() collapses "s3://")
    verbose: int
    quiet: bool
    log_file: Path | None = None
    secrets: set[str] = field(default_factory=set)  # values masked in every log record (the API keys)

    def settings(self, **overrides: Any) -> Settings:
        return Settings.load(config_path=self.config).with_overrides(storage_dir=self.storage_dir, **overrides)

    def store(self, settings: Settings | None = None) -> StorePath:
        """The store the command works on: the settings' location opened once, here (a local directory or
        s3://bucket/prefix; a malformed URL is a ConfigError, exit 2, before anything is read or written)."""
        from dataengine.storage.store import open_store

        settings = settings or self.settings()
        return open_store(settings.location, create=settings.storage_dir_is_default)

    def existing_store(self, settings: Settings | None = None) -> StorePath:
        """The store a reading command reads: one that exists, else ``no store at ...`` (exit 2). One rule for
        every reading command (status, query, gaps, verify, actions, index list/show, show)."""
        from dataengine.storage.store_root import check_readable_root

        return check_readable_root(self.store(settings))


def command_line(ctx: typer.Context) -> list[str]:
    """The command line as typed, for the run ledger: ``dataengine`` and its arguments in their order and
    spelling (``-t day`` stays ``-t day``; options equal to their defaults stay), credentials inside a URL
    masked (``http://***@host``). The API keys are masked where the ledger is written."""
    from dataengine.commands.global_options import argv_as_typed
    from dataengine.urls import mask_url

    argv = argv_as_typed(ctx)
    if argv is None:  # the command was invoked some other way (a test calling it directly): as Python saw it
        argv = sys.argv[1:]
    return ["dataengine", *(mask_url(arg) if "@" in arg else arg for arg in argv)]


def first_day(start: str | None, since: str | None, days: int | None, end: str | None) -> str | None:
    """Where an ingest starts, from ``--start``, its other name ``--since``, or ``--days N`` (the last N New York
    days up to today, or up to ``--end``, both included); a :class:`UsageError` when more than one is given."""
    from dataengine.errors import UsageError
    from dataengine.timerange import days_back

    given = [name for name, value in (("--start", start), ("--since", since), ("--days", days)) if value is not None]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} both say where the range starts: give one "
                         "(--since is another name for --start; --days N is the last N days up to --end or today)")
    if days is not None:
        return days_back(days, end).isoformat()
    return start if start is not None else since


def print_table(frame: pl.DataFrame, limit: int | None = None, *, right: tuple[str, ...] = ()) -> None:
    """A frame as a Rich table on stdout (``query``, ``show``): every value printed as itself, never as Rich
    markup (floats as :func:`float_text` shows them); piped, lines are not wrapped to an assumed 80 columns.
    ``right``: columns aligned right."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=4096)
    table = Table(show_edge=False)
    for name in frame.columns:
        table.add_column(Text(name), justify="right" if name in right else "left")
    singles = [_single(dtype) for dtype in frame.dtypes]
    for row in (frame.head(limit) if limit is not None else frame).iter_rows():
        table.add_row(*(Text(_cell(value, single)) for value, single in zip(row, singles, strict=True)))
    console.print(table)


def float_text(value: float, single: bool = False) -> str:
    """A float as a person reads it in a table: the shortest decimal that reads back as the value within its
    type's meaningful digits (15 significant digits of a double, a float32's own shortest), so an adjusted
    ``586.3677 * 0.1`` shows ``58.63677``, not ``58.636770000000006``; ``.0`` kept on whole numbers (a float
    column still looks like one); positional from 1e-7 to 1e21, as JavaScript prints numbers, so no price or
    volume reads as ``1.2e-05``. Only the text: csv, json and the values themselves stay exact."""
    if not math.isfinite(value):
        return str(value)
    if single:
        packed = _packed(value)
        digits = next(d for d in range(1, 10) if _packed(float(f"{value:.{d}g}")) == packed)
        value = float(f"{value:.{digits}g}")
    else:
        value = float(f"{value:.15g}")
    text = repr(value)
    if "e" in text and 1e-7 <= abs(value) < 1e21:
        text = format(Decimal(text), "f")
        text += "" if "." in text else ".0"
    return text


def _packed(value: float) -> bytes:
    """A value's float32 bytes; none (``b""``) for one past the largest float32, which struct refuses."""
    try:
        return struct.pack("<f", value)
    except OverflowError:
        return b""


def _single(dtype: pl.DataType) -> bool:
    """Whether a column's floats are float32s (a FLOAT, or a list or array of them)."""
    import polars as pl

    while isinstance(dtype, (pl.List, pl.Array)):
        dtype = dtype.inner  # type: ignore[assignment]
    return dtype == pl.Float32


def _cell(value: Any, single: bool) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (float, list, dict)):
        return _nested(value, single)
    return str(value)


def _nested(value: Any, single: bool) -> str:
    """Floats as :func:`float_text` shows them, inside lists and structs too; everything else as Python's ``str``
    of the list or dict shows it (``repr``)."""
    if isinstance(value, float):
        return float_text(value, single)
    if isinstance(value, list):
        return "[" + ", ".join(_nested(item, single) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {_nested(item, single)}" for key, item in value.items()) + "}"
    return repr(value)


_said: list[str] = []  # the last lines said by this process's commands (the CLI says an interrupt once)


def forget_last_line() -> None:
    """A new command in this process (tests, ``main()`` called again) has said nothing yet."""
    _said.clear()


def said_last_line() -> bool:
    """Whether a command already said its last line (:func:`last_line`); the CLI then says none of its own."""
    return bool(_said)


def last_line(level: int, line: str) -> None:
    """The CLI's last word on a command that did not finish (``Error: ...``, ``Interrupted.``): on stderr, and
    in the ``--log-file`` too, but only there: logged the usual way it would reach stderr a second time (or
    Python's last-resort handler, when no handler is set up yet). Masked like every record of the file."""
    _said.append(line)
    typer.echo(line, err=True)
    root = logging.getLogger("dataengine")
    record = root.makeRecord("dataengine.cli", level, __file__, 0, "%s", (line,), None)
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and level >= handler.level:
            handler.handle(record)


def emit(payload: Any, as_json: bool) -> None:
    typer.echo(json.dumps(payload, default=str) if as_json else payload)


def repair_exit(repairs: Iterable[Mapping[str, Any]], clean: bool) -> int:
    """The exit code of a command that repaired (``gaps --repair``, ``verify --repair``) from its repair runs'
    results (or their ``asdict()``): a run stopped by a signal gives that signal's code (130, 143, 129), as the
    run ledger records it; else 0 when ``clean``, 1 when anything remains."""
    from dataengine.errors import exit_code_for

    stopped = next((r for r in repairs if r["interrupted"]), None)
    if stopped is not None:
        return exit_code_for(interrupted=True, signum=stopped["signal"])
    return 0 if clean else 1


def exit_with(code: int) -> None:
    if code in (129, 130, 143) and threading.active_count() > 1:
        # A worker is stuck in a request that has not timed out yet; its partition writes are atomic, so
        # leaving now is safe and Ctrl-C (or SIGTERM) should not wait for a network timeout.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


def other_datasets_hint(root: StorePath, dataset: str) -> str:
    """When ``dataset`` is not in the store but others are, the ones there and how to name one (a new user
    who stored daily sample bars and ran ``gaps``: it looked at Alpaca's minute bars); else ''."""
    from dataengine.storage import layout

    names = layout.dataset_names(root)  # one listing (on S3 a LIST)
    if dataset in names or not names:
        return ""
    return f" (this store holds {', '.join(names)}: name one with -t/--timeframe and --source)"


def require_dataset(root: StorePath, dataset: str, named: str | None = None) -> None:
    """A :class:`UsageError` (exit 2) naming the datasets stored when the store holds others but not ``dataset``
    (``versions -t week`` said "no versions yet", exit 0, where ``show -t week`` exits 2); ``named``: how the
    message names what was asked for, when not by its dataset name."""
    from dataengine.errors import UsageError

    hint = other_datasets_hint(root, dataset)
    if hint:
        raise UsageError(f"no dataset {named or dataset} in {root}{hint}")
