"""The run ledger: one JSON line per ingest run in ``{root}/metadata/runs.jsonl``.

JSON Lines because it is append-only (one ``write`` per run, no rewrite of history), survives a crash with at
most a torn last line (skipped when read), and is readable by anything::

    duckdb -c "SELECT run_id, started, exit_code, rows_written FROM read_json('runs.jsonl')"
    polars.read_ndjson("runs.jsonl")

A record (:class:`RunRecord`) holds the run id, start and end (UTC, ISO 8601), the command line with secrets
masked, host and pid, what was asked (timeframe, feed, adjustment, range, number of symbols), the symbols
that succeeded, the failed ones with their reasons, rows written and added, requests, retries, 429s, the
error that stopped the run (if any) and the exit code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dataengine.errors import DataEngineError, StorageError, exit_code_for, outcome_for, signal_of
from dataengine.outcome import RunOutcome
from dataengine.storage import layout
from dataengine.storage.store import StorePath, open_store

log = logging.getLogger(__name__)
_SECRET_OPTION = re.compile(r"(key|secret|token|password|passwd)", re.IGNORECASE)
MASK = "***"


def mask_secrets(argv: Sequence[str], secrets: Iterable[str | None] = ()) -> list[str]:
    """The command line with secret values replaced by ``***``.

    Masks the value of any option whose name mentions a key, secret, token or password (``--x-key V`` and
    ``--x-key=V``), and any occurrence of the given secret values (e.g. the configured API keys).
    """
    known = [s for s in secrets if s]
    out: list[str] = []
    mask_next = False
    for arg in argv:
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        if arg.startswith("-") and _SECRET_OPTION.search(arg.split("=", 1)[0]):
            if "=" in arg:
                arg = arg.split("=", 1)[0] + "=" + MASK
            else:
                mask_next = True
        for secret in known:
            arg = arg.replace(secret, MASK)
        out.append(arg)
    return out


def new_run_id() -> str:
    """A run's id: when it started (UTC) and six random hex digits, ``20250102T060001Z-8c1f0a``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RunRecord(RunOutcome):
    """One run's line in the ledger: its outcome (:class:`~dataengine.outcome.RunOutcome`, the fields a run's
    result has too) in an envelope of when, where and by whom it ran and how it ended. ``exit_code`` follows
    the CLI's: 0, 1, 3, 130, 143 or 129."""

    run_id: str = field(default_factory=new_run_id)
    started: str = field(default_factory=_now)
    ended: str | None = None
    waited_s: float = 0.0  # time spent waiting for another run's lock (--wait) before ``started``
    command: list[str] = field(default_factory=list)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    symbols_requested: int = 0
    error: str | None = None
    exit_code: int | None = None

    @property
    def outcome(self) -> str:
        """``ok``, ``failures`` (exit 1), ``interrupted``, ``error`` (fatal), or ``running`` (no end yet)."""
        return outcome_for(self.exit_code)

    def begin(self, *, waited_s: float = 0.0) -> None:
        """Mark the moment the run got the store (after any wait for the lock)."""
        self.started = _now()
        self.waited_s = round(waited_s, 3)

    def close(self, *, result: Any = None, error: BaseException | None = None, elapsed_s: float | None = None) -> None:
        """Fill in the end: from an :class:`~dataengine.orchestration.result.IngestResult` (possibly the
        partial one attached to a fatal error), and the error that stopped the run, if any."""
        self.ended = _now()
        if result is not None:
            run_id = self.run_id
            self.take_outcome(result)
            self.run_id = run_id  # the ledger's id names the run, whatever the result carries
        if elapsed_s is not None:
            self.elapsed_s = round(elapsed_s, 3)
        self.exit_code = exit_code_for(
            error=error,
            failed=bool(result is not None and (result.failed or result.nothing_found or result.version_error)),
            interrupted=bool(result is not None and result.interrupted),
            signum=result.signal if result is not None else None,
        )
        if isinstance(error, KeyboardInterrupt):
            self.interrupted, self.error = True, "interrupted"
            self.signal = self.signal or signal_of(error)
        elif isinstance(error, DataEngineError):
            self.error = str(error)
        elif error is not None:
            self.error = f"internal error: {type(error).__name__}: {error}"

    def summary(self) -> str:
        """The record as one line: the run id, the exit code and its outcome, then what the run did (the
        reason a fatal run stopped is its own line, the CLI's ``Error:``)."""
        return (f"run {self.run_id} ended: exit {self.exit_code} ({self.outcome}); "
                f"{len(self.successful)} of {self.symbols_requested} symbol(s) done, {len(self.failed)} failed, "
                f"{self.rows_written:,} rows written, {self.requests:,} requests, {self.elapsed_s:.1f}s")

    def asdict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(**cls.known(data))


class RunLedger:
    """Append and read run records: a JSON Lines file appended with one write per record (on S3 one object
    per record, :mod:`.commit_log`). Concurrent appenders (a run and a refused run) never interleave or
    collide. Thread-safe."""

    def __init__(self, root: StorePath | str | Path) -> None:
        self.root = open_store(root)
        self.path = layout.ledger_path(self.root)
        # Unfenced: a record takes a fresh line or number and overwrites nothing, so even a run that lost the
        # lock leaves one, saying so.
        self._log = self.root.store.log(self.path.key, "run ledger", fenced=False)

    def append(self, record: RunRecord) -> None:
        """Add a record. A ledger that cannot be written is logged, never fatal: the run itself is done."""
        line = json.dumps(record.asdict(), separators=(",", ":"), default=str) + "\n"
        try:
            self._log.append(line, retry=True)
        except StorageError as exc:
            log.error("cannot add to the run ledger %s: %s", self.path, exc)

    def last(self, n: int = 5) -> list[RunRecord]:
        """The ``n`` most recent records, oldest first; reads only the tail of the ledger."""
        records: list[RunRecord] = []
        for raw in self._log.tail(n):
            try:
                data = json.loads(raw)
            except ValueError:
                continue  # a torn line from a crash mid-append
            if isinstance(data, dict):
                records.append(RunRecord.from_dict(data))
        return records[-n:] if n > 0 else []

    def all(self) -> list[RunRecord]:
        return self.last(n=10**9)
