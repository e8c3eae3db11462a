"""The ``dataengine`` command: parse, build library objects, make one library call, render.

stdout carries results (the summary, or one JSON object with ``--json``); progress, logs and errors go to
stderr. Exit codes: 0 all done, 1 some symbols failed, 2 usage or configuration error (nothing fetched),
3 fatal during the run, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from dataengine import __version__
from dataengine.commands.common import Context, forget_last_line, last_line, said_last_line
from dataengine.commands.global_options import GlobalOptionsAnywhere
from dataengine.errors import DataEngineError, StorageError, Terminated, UsageError, exit_code_for


def _human_placeholders() -> None:
    """Arguments show their metavar (``SYMBOL...``, ``FILE``) in usage lines and help, not Typer's internal
    type (``<list[str]>``, ``{symbols}``, ``{SYMBOL...}``): Typer offers no per-argument switch, so its usage
    line (and, from typer 0.29 on, its type display) is wrapped once here, for arguments that declare a metavar
    only."""
    argument = typer.core.TyperArgument
    if getattr(argument, "_dataengine_placeholders", False):
        return
    usage_pieces = argument.get_usage_pieces

    def usage(self: Any, ctx: Any) -> list[str]:
        return [str(self.metavar)] if self.metavar else usage_pieces(self, ctx)

    argument.get_usage_pieces = usage  # type: ignore[method-assign]
    if hasattr(argument, "display_type"):  # typer 0.29 adds the type to arguments' help (``<list[str]>``)
        show_type = argument.display_type

        def display_type(self: Any, ctx: Any) -> Any:
            return None if self.metavar else show_type(self, ctx)

        argument.display_type = display_type  # type: ignore[method-assign, unused-ignore]  # a method from typer 0.29 on
    argument._dataengine_placeholders = True  # type: ignore[attr-defined]


_human_placeholders()

app = typer.Typer(
    name="dataengine",
    cls=GlobalOptionsAnywhere,  # --storage-dir, --config, -v, -q, --log-file also after the command
    help="Pull historical US stock bars from Alpaca or Massive into a local, exactly-once, Hive-partitioned Parquet store.\n\n"
    "Example: dataengine ingest-csv sp500-2025.csv --timeframe minute\n\n"
    "Try it with no key: dataengine ingest AAPL MSFT --source sample -t day --days 30 (synthetic bars)\n\n"
    "Global options may come before or after the command: dataengine ingest AAPL --storage-dir ~/bars",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
log = logging.getLogger("dataengine")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dataengine {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", metavar="PATH", help="Settings file (else DATAENGINE_CONFIG, ./settings.ini, the user config dir).")] = None,
    storage_dir: Annotated[str | None, typer.Option("--storage-dir", metavar="PATH", help="Root of the store (else DATAENGINE_STORAGE_DIR, settings.ini, the user data dir).")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help="More log detail on stderr (-vv for debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final summary.")] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", metavar="PATH", help="Also write the full log here (INFO; DEBUG with -v), with timestamps and thread names.")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Global options, before or after the command: dataengine [--config PATH] [--storage-dir PATH] [-v|-q] COMMAND."""
    ctx.obj = Context(config=config, storage_dir=storage_dir, verbose=verbose, quiet=quiet, log_file=log_file)
    _setup_logging(ctx.obj, verbose, quiet, log_file)


class _Redacting(logging.Formatter):
    """Masks every known secret (the API keys from the environment or settings) in formatted records; the
    set is shared with the command's context, which adds the keys it reads from settings."""

    def __init__(self, fmt: str, datefmt: str, secrets: set[str]) -> None:
        super().__init__(fmt, datefmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # subscripted only from Python 3.11 on
    """Writes to whatever ``sys.stderr`` is at the time, so the live display can route log lines above it."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(state: Context, verbose: int, quiet: bool, log_file: Path | None = None) -> None:
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    secrets = state.secrets
    secrets |= {v for k in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "MASSIVE_API_KEY") if (v := os.environ.get(k, "")) and len(v) >= 4}
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)s [%(threadName)s] %(message)s", "%H:%M:%S", secrets))
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        file_handler = _open_log_file(log_file)
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        file_handler.setFormatter(
            _Redacting("%(asctime)s.%(msecs)03d %(levelname)-7s [%(threadName)s] %(name)s: %(message)s",
                       "%Y-%m-%dT%H:%M:%S", secrets)
        )
        handlers.append(file_handler)
    root = logging.getLogger("dataengine")
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers
    root.setLevel(min(h.level for h in handlers))
    root.propagate = False


def _open_log_file(log_file: Path) -> logging.FileHandler:
    """The ``--log-file`` handler, its directory made; a path that cannot be a log file is a UsageError
    (exit 2) naming why in words, not the bare ``File exists`` a parent that is a regular file gives."""
    path = log_file.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return logging.FileHandler(path, encoding="utf-8", delay=False)
    except OSError as exc:
        raise UsageError(f"--log-file {log_file}: {_why_no_log_file(path, exc)}") from None


def _why_no_log_file(path: Path, exc: OSError) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):  # mkdir or open through a regular file
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a directory"
    if isinstance(exc, IsADirectoryError):
        return "that is a directory; give a file name in it (e.g. dataengine.log)"
    return exc.strerror or str(exc)


# -- other commands (one module each under dataengine/commands) -------------------------------------------


def _register_commands() -> None:
    # each command module registers itself: dataengine/commands/<name>.py has register(app)
    from dataengine.commands import actions, doctor, gaps, index, ingest, lists, query, show, status, verify, versions

    for module in (ingest, query, show, status, index, gaps, verify, actions, versions, lists, doctor):
        module.register(app)


_register_commands()


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None, *, restore_signals: bool = True) -> int:
    """Run the CLI; map every error to a one-line message and its documented exit code. ``restore_signals``:
    put the signal handlers back afterwards (False for the process's entry point: they are then ignored)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]  # a bare `dataengine` shows the help, exit 0 (not a usage error)
    # With --json, stdout gets exactly one JSON object however the command ends: its result, or the error
    # (a cron job parsing stdout always gets one). Commands print their own; errors are printed here.
    wants_json = "--json" in (args[: args.index("--")] if "--" in args else args)
    forget_last_line()
    with _signals_stop_like_ctrl_c(restore=restore_signals):
        try:
            # Without standalone mode the parser returns a command's typer.Exit code instead of exiting.
            code = app(args=args, prog_name="dataengine", standalone_mode=False)
            if code == 130 and (stop := stopped()) is not None:
                # typer turns a stop it sees (SIGTERM's Terminated too) into a silent 130: say it, with its code,
                # unless the command said it already (ingest stopped before its run)
                return exit_code_for(error=stop) if said_last_line() else _interrupted(stop)
        except DataEngineError as exc:
            return _failed(exc, wants_json)
        except PermissionError as exc:  # the file system refused where no command expected it (a store or its
            # metadata unreadable: chmod 000, another account's files): one line, exit 3, as a store that cannot
            # be written. Only this: another OSError here is a bug, and keeps its traceback
            logging.getLogger(__name__).debug("file system error", exc_info=True)
            return _failed(StorageError(_os_error_line(exc)), wants_json)
        except typer.Exit as exc:
            return exc.exit_code
        except typer.TyperException as exc:  # the CLI parser's own usage errors (Abort: an interrupt, below)
            if isinstance(exc, typer.Abort):
                return _interrupted(exc.__cause__ or exc.__context__)
            if type(exc).__name__ == "NoArgsIsHelpError":  # `dataengine index`: its help, as a bare `dataengine`
                typer.echo(exc.format_message())
                return 0
            message = _one_line(exc.format_message())
            if wants_json:
                typer.echo(json.dumps({"error": message, "exit_code": 2}))
            _error(message)
            return 2
        except KeyboardInterrupt as exc:
            return _interrupted(exc)
    return code if isinstance(code, int) else 0


def _failed(exc: DataEngineError, wants_json: bool) -> int:
    """A command's fatal error: the line (and with --json the object, with any partial result); its code."""
    message = _one_line(str(exc))
    if wants_json:
        partial = exc.result.asdict() if hasattr(exc.result, "asdict") else {}
        typer.echo(json.dumps(dict(partial, error=message, exit_code=exc.exit_code), default=str))
    _error(message)
    return exc.exit_code


def _os_error_line(exc: PermissionError) -> str:
    what = f" {exc.filename}" if exc.filename else ""
    why = exc.strerror or str(exc)
    return f"cannot access{what}: {why} (check the owner and permissions of the store and its metadata)"


def stopped() -> KeyboardInterrupt | None:
    """The stop a signal asked this command for (see :func:`_signals_stop_like_ctrl_c`), or None."""
    from dataengine.orchestration import stopping

    signum = stopping.requested()
    if signum is None:
        return None
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _error(message: str) -> None:
    """The command's final error: one line on stderr, and the same line in the log file (a cron mail that
    points to the log finds why the run failed there too)."""
    last_line(logging.ERROR, f"Error: {message}")


def _one_line(message: str, limit: int = 600) -> str:
    """An error as one line of reasonable length, whatever a user's input put into it."""
    text = " ".join(message.split())
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _interrupted(exc: BaseException | None) -> int:
    line = f"Interrupted by {signal.Signals(exc.signum).name}." if isinstance(exc, Terminated) else "Interrupted."
    last_line(logging.WARNING, line)
    return exit_code_for(error=exc if isinstance(exc, Terminated) else KeyboardInterrupt())


@contextlib.contextmanager
def _signals_stop_like_ctrl_c(*, restore: bool = True) -> Iterator[None]:
    """SIGTERM (systemd, Docker, cron timeouts) and SIGHUP (a closed terminal) stop a run as Ctrl-C does:
    finish the write in progress, write the ledger line and the JSON, exit 143 / 129.

    Only the first of these signals stops: it raises KeyboardInterrupt (Terminated) in the main thread. Once
    stopping has begun, any further one (an impatient second Ctrl-C) only hurries the stop (the run waits at
    most a second more for workers stuck in a request) and never interrupts what a stop still does: the
    coverage, the ledger line and the one JSON object a cron job parses."""
    wanted = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from dataengine.orchestration import stopping

    stopping.reset()
    begun: list[int] = []

    def stop_once(signum: int, _frame: object) -> None:
        if begun:
            if not stopping.hurried():
                log.warning("stopping already (%s): finishing the writes in progress, the ledger line and the "
                            "result; a second signal only hurries it", signal.Signals(signum).name)
            stopping.hurry()
            return
        begun.append(signum)
        stopping.request(signum)
        stopping.raise_if_requested()

    previous = {sig: signal.signal(sig, stop_once) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if restore else signal.SIG_IGN)


def run() -> None:
    # The process ends with the command: once it is done (its result and ledger line are out) a signal while
    # the interpreter winds down (joining threads, closing connections) must not turn its exit status into a
    # death by that signal, so the handlers are not restored but set to ignore.
    sys.exit(main(restore_signals=False))
