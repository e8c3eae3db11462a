"""The exception tree of dataengine.

Every error the library raises on purpose derives from :class:`DataEngineError`, so the CLI catches once and
maps ``exit_code`` to the process exit status::

    DataEngineError                     exit 2 unless a subclass says otherwise
    ├── UsageError                      bad input from the user: dates, names, files (2)
    │   ├── ConfigError                 malformed settings file or value, missing keys (2)
    │   └── DatasetMismatchError        a run would mix feeds in one dataset (2)
    ├── FatalRunError                   the run cannot go on (3)
    │   ├── AuthError                   credentials rejected by Alpaca (3)
    │   ├── SourceUnreachableError      endpoint down or unreachable after all retries (3)
    │   ├── StorageError                store not writable (3)
    │   ├── LockError                   another run holds the store (3)
    │   └── RequestRejectedError        a 4xx about the request itself, naming no symbol (3)
    ├── DamagedPartitionError           a stored file cannot be read: verify --repair (1)
    ├── SourceError                     one request failed; the pipeline decides per symbol
    │   ├── TransientSourceError        429, 5xx, timeouts, dropped connections: retried
    │   └── TerminalSourceError         a 4xx naming a symbol, a page that cannot be stored as sent
    │       └── PagingLoopError         the server repeated a page token: paging would never end
    ├── DecodeProcessDied               a run's decode process ended mid-unit: that unit's symbols fail
    └── Interrupted                     Ctrl-C / SIGTERM (130)

    MissingSymbolWarning (a UserWarning)  read_bars of a symbol the dataset holds no bar of at all

Exit codes of a run are decided in one place, :func:`exit_code_for`: 0 all done, 1 finished with failed
symbols, 2 usage or configuration (nothing fetched), 3 fatal during the run, 130 interrupted.

Exceptions of the HTTP library (requests) are translated in exactly one place, for every vendor:
``dataengine.sources.http``; boto3's, for a store on S3, in ``dataengine.storage.s3_client``.
"""

from __future__ import annotations

import signal
from typing import Any


class DataEngineError(Exception):
    """Base of every error dataengine raises on purpose. ``result``: the partial result of the run it
    stopped, when a run was under way (see :class:`FatalRunError`)."""

    exit_code: int = 2
    result: Any = None


class UsageError(DataEngineError):
    """The user asked for something impossible; nothing was fetched or written."""

    exit_code = 2


class ConfigError(UsageError):
    """A settings file, environment variable or value is malformed or missing."""


class DatasetMismatchError(UsageError):
    """The dataset already holds bars of another feed (or adjustment)."""


class FatalRunError(DataEngineError):
    """The run cannot continue; stop every worker. ``result`` is the partial result of the run it stopped
    (set by the run before the error reaches the caller; None when it was raised before the run began)."""

    exit_code = 3


class AuthError(FatalRunError):
    """Alpaca rejected the credentials (401, or 403 that is not an entitlement message)."""


class SourceUnreachableError(FatalRunError):
    """The endpoint could not be reached at all."""


class StorageError(FatalRunError):
    """The store cannot be written."""


class LockError(FatalRunError):
    """Another dataengine run holds the store's lock. ``result`` is None when a run was refused the store (it
    fetched nothing); a run whose lease was lost while it ran (S3) carries its partial result."""


class RequestRejectedError(FatalRunError):
    """Alpaca refused the request itself (400/404/422 naming no symbol): every request would be refused."""


REPAIR_ADVICE = "run 'dataengine verify --repair'"


class DamagedPartitionError(DataEngineError):
    """A stored partition file cannot be read (truncated, garbage, emptied by something else). Exit 1: the
    command finished what it could; ``dataengine verify --repair`` puts the file aside and fetches it again."""

    exit_code = 1

    def __init__(self, path: object, detail: str = "", *, symbol: str | None = None, advice: str | None = None) -> None:
        reason = f" ({' '.join(detail.split())[:160]})" if detail else ""
        super().__init__(f"damaged partition {path}{reason}: {advice or REPAIR_ADVICE}")
        self.path = path
        self.symbol = symbol


class SourceError(DataEngineError):
    """One request to the data source failed."""

    exit_code = 1

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientSourceError(SourceError):
    """Worth retrying: 429, 5xx, timeouts, dropped connections."""

    def __init__(self, message: str, *, status: int | None = None, retry_at: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_at = retry_at  # epoch seconds the server asked us to wait until (X-RateLimit-Reset)
        self.retries = 0  # how many times the request was retried before this error was final


class TerminalSourceError(SourceError):
    """Retrying cannot help: the request itself is wrong (invalid symbol, bad parameter)."""

    def __init__(self, message: str, *, status: int | None = None, symbol: str | None = None) -> None:
        super().__init__(message, status=status)
        self.symbol = symbol  # the symbol the server named as invalid, if it named one


class PagingLoopError(TerminalSourceError):
    """A page token came back twice in one range: the run isolates the symbols that cause it."""


class DecodeProcessDied(DataEngineError):
    """A run's decode process (``orchestration.decode_pool``) ended while it streamed a unit's pages: the unit's
    symbols fail (what was written is complete and stays); the next unit gets a new process."""


class Interrupted(DataEngineError):
    """The run was interrupted by the user (Ctrl-C) or a signal."""

    exit_code = 130


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, Docker, cron timeouts) or SIGHUP, raised in the main thread by the CLI's handler, so a
    run stops the way Ctrl-C stops it: the write in progress finishes, the ledger line and JSON are written.
    Exit code 128 + the signal number (143, 129), as shells report a death by that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_of(stop: KeyboardInterrupt) -> int:
    """The number of the signal behind a stop: Terminated carries its own; a plain KeyboardInterrupt is Ctrl-C."""
    return stop.signum if isinstance(stop, Terminated) else int(signal.SIGINT)


class MissingSymbolWarning(UserWarning):
    """``read_bars``/``scan_bars`` were asked for a symbol the dataset holds no bar of at all: a typo, or a symbol
    never fetched (of a pinned older version: that version holds none, and the message says whether the
    latest does). Its rows are simply absent; ``warnings.simplefilter("error", MissingSymbolWarning)`` makes it
    an error."""


EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_FATAL = 3
EXIT_INTERRUPTED = 130


def exit_code_for(
    *, error: BaseException | None = None, failed: bool = False, interrupted: bool = False, signum: int | None = None
) -> int:
    """The exit code of a run: from the error that stopped it, else from what it finished with.
    ``signum``: the signal that interrupted it, if not Ctrl-C."""
    if isinstance(error, Terminated):
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt) or (error is None and interrupted):
        return 128 + signum if signum else EXIT_INTERRUPTED
    if isinstance(error, DataEngineError):
        return error.exit_code
    if error is not None:
        return EXIT_FAILURES  # an internal error: the run ended, something is wrong, cron must notice
    return EXIT_FAILURES if failed else EXIT_OK


def outcome_for(exit_code: int | None) -> str:
    """``ok``, ``failures`` (exit 1), ``interrupted``, ``error`` (fatal), or ``running`` (no end yet)."""
    if exit_code is None:
        return "running"
    if exit_code in (EXIT_INTERRUPTED, 129, 143):
        return "interrupted"
    return {EXIT_OK: "ok", EXIT_FAILURES: "failures"}.get(exit_code, "error")
