"""One writer per store, and one ledger line per run: the lock and the run ledger around a run.

Every run that asks for the store leaves exactly one ledger record: refused the lock (exit 3, so cron sees
why), finished (0 or 1), stopped by a fatal error (3, with the partial result), interrupted (130) or killed by
a bug (1). The record is appended inside the lock, so the ledger has one writer, like the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dataengine.errors import LockError
from dataengine.storage.run_ledger import RunLedger, RunRecord
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import StorePath


@dataclass
class RunOutcome:
    """Set ``result`` before leaving the block; the ledger record is closed from it. ``lock`` is the held lock:
    ``lock.check_held()`` raises LockError once it is lost (a lease on S3 that was not renewed in time)."""

    result: Any = None
    lock: RunLock | None = None


def _note_storage_requests(result: Any, root: StorePath, before: dict[str, int]) -> None:
    """What the run cost in storage requests (S3: LIST, GET, PUT, ...), up to its ledger record and the lock's
    release (one PUT and one DELETE more on S3). Nothing for a local store."""
    if result is not None and hasattr(result, "storage_requests"):
        now = root.store.request_counts()
        result.storage_requests = {k: v - before.get(k, 0) for k, v in now.items() if v - before.get(k, 0)}


@contextmanager
def locked_and_recorded(
    root: StorePath,
    ledger: RunLedger,
    record: RunRecord,
    *,
    wait: bool = False,
    timeout: float | None = None,
    command: str = "",
    held: RunLock | None = None,
) -> Iterator[RunOutcome]:
    """Hold the store's run lock for the block and append ``record`` to the ledger however the block ends.

    Raises :class:`LockError` (after recording the refusal) when another process holds the store and
    ``wait`` is off or ``timeout`` passes. ``held``: a lock the caller took already and keeps after the block
    (a repair sets files aside and fetches them again under one hold).
    """
    started = time.monotonic()
    counted = root.store.request_counts()
    lock = held or RunLock(root, wait=wait, timeout=timeout, command=command)
    try:
        if held is None:
            lock.acquire()
    except LockError as exc:
        record.close(error=exc, elapsed_s=time.monotonic() - started)
        ledger.append(record)
        raise
    try:
        got_lock = time.monotonic()
        record.begin(waited_s=got_lock - started)
        outcome = RunOutcome(lock=lock)
        try:
            yield outcome
            lock.check_held()  # a lease lost during the run (S3) fails it, in the ledger too
        except BaseException as exc:
            partial = getattr(exc, "result", None) or outcome.result
            if partial is not None and isinstance(exc, LockError):
                exc.result = partial  # a lock lost at the very end: the run's result still goes out with the error
            _note_storage_requests(partial, root, counted)
            record.close(result=partial, error=exc, elapsed_s=time.monotonic() - got_lock)
            ledger.append(record)
            raise
        _note_storage_requests(outcome.result, root, counted)
        record.close(result=outcome.result)
        ledger.append(record)
    finally:
        if held is None:
            lock.release()
