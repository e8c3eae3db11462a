"""One writer per store, and one ledger line per run: the lock and the run ledger around a run.

Every run that asks for the store leaves exactly one ledger record: refused the lock (exit 3, so cron sees
why), finished (0 or 1), stopped by a fatal error (3, with the partial result), interrupted (130) or killed by
a bug (1). The record is appended inside the lock, so the ledger has one writer, like the store. One exception:
a run that made a new store and was refused by its source before storing anything in it (keys rejected at its
first request, the source unreachable) takes the store away again, record and lock included, so a bad key or
URL leaves no empty store behind; its log line still says how it ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dataengine.errors import DataEngineError, FatalRunError, LockError, StorageError
from dataengine.storage.run_ledger import RunLedger, RunRecord
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import StorePath
from dataengine.storage.store_root import sweep_made_root, unmake_store

log = logging.getLogger(__name__)


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


def _unless_it_hides(step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Do a clean-up step of a run that failed, and return what it returns; its own failure (the store that
    stopped the run does not answer either) is logged, never raised (None is returned): it would hide the run's
    error and its partial result from the user."""
    try:
        return step(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure here is secondary to the run's own
        log.error("%s", exc if isinstance(exc, DataEngineError) else f"{type(exc).__name__}: {exc}")
        return None


def _release_or_warn(lock: RunLock, result: Any) -> None:
    """Release the lock of a run that succeeded. If the store cannot be reached for it (S3 stopped answering
    at the very end), the run still succeeded: its bars and version are stored, and the lease lapses by itself.
    A lease found lost by then is the run's error (exit 3, with its result), as it always was: another run may
    have taken the store over meanwhile."""
    try:
        lock.release()
    except LockError as exc:
        exc.result = result
        raise
    except DataEngineError as exc:
        log.warning("%s; the lock's lease lapses by itself and the next run takes the store over", exc)


def acquire_recorded(lock: RunLock, ledger: RunLedger, record: RunRecord) -> None:
    """Take ``lock`` (or wait for it, as it was made); when it is refused (exit 3) or the wait is stopped
    (Ctrl-C, SIGTERM), append ``record`` closed with that before raising: cron's ledger says why a job did not
    run."""
    asked = time.monotonic()
    try:
        lock.acquire()
    except (LockError, KeyboardInterrupt) as exc:
        record.close(error=exc, elapsed_s=time.monotonic() - asked)
        _unless_it_hides(_append, ledger, record)
        raise


def _refused_by_source(exc: BaseException) -> bool:
    """Whether a run stopped because its source refused it or could not be reached (keys rejected, a request
    refused whatever the symbol, the URL unreachable), not because of the store (not writable, or its lease
    lost: another run's store now, nothing of it ours to take away) nor a stop the user asked for (130: the
    ledger says so)."""
    return isinstance(exc, FatalRunError) and not isinstance(exc, (StorageError, LockError))


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
    new_store: bool = False,
) -> Iterator[RunOutcome]:
    """Hold the store's run lock for the block and append ``record`` to the ledger however the block ends.

    Raises :class:`LockError` (after recording the refusal) when another process holds the store and
    ``wait`` is off or ``timeout`` passes. ``held``: a lock the caller took already and keeps after the block
    (a repair sets files aside and fetches them again under one hold). ``new_store``: no store was there when
    the run was checked (:func:`~dataengine.storage.store_root.check_writable_root`); if the source refuses the
    block before it stored anything, what the run made is taken away under the lock instead of recorded
    (:func:`~dataengine.storage.store_root.unmake_store`), so the path is as it was.
    """
    made_root = new_store and root.local is not None and not root.local.exists()  # no request: S3 has no directory
    unmade = False
    started = time.monotonic()
    counted = root.store.request_counts()
    lock = held or RunLock(root, wait=wait, timeout=timeout, command=command)
    if held is None:
        acquire_recorded(lock, ledger, record)
    outcome = RunOutcome(lock=lock)
    failed = False
    try:
        got_lock = time.monotonic()
        if held is None:
            record.begin(waited_s=got_lock - started)
        else:  # the hold's own wait (gaps/verify --repair), told once: to the first run under it
            record.begin(waited_s=held.waited_s)
            held.waited_s = 0.0
        try:
            yield outcome
            lock.check_held()  # a lease lost during the run (S3) fails it, in the ledger too
        except BaseException as exc:
            failed = True
            partial = getattr(exc, "result", None) or outcome.result
            if partial is not None and isinstance(exc, DataEngineError):
                exc.result = partial  # a store lost at the very end: the run's result still goes out with the error
            _note_storage_requests(partial, root, counted)
            record.close(result=partial, error=exc, elapsed_s=time.monotonic() - got_lock)
            unmade = new_store and held is None and _refused_by_source(exc) and bool(_unless_it_hides(unmake_store, root))
            if unmade:
                log.info("%s", record.summary())  # the log still says how the run ended; its record went with the store
            else:
                _unless_it_hides(_append, ledger, record)
            raise
        _note_storage_requests(outcome.result, root, counted)
        record.close(result=outcome.result)
        try:
            _append(ledger, record)
        except DataEngineError as exc:  # the run is done and stored; its result still goes out with the error
            exc.result = outcome.result
            failed = True
            raise
    finally:
        if held is None:
            if failed:
                _unless_it_hides(lock.release, remove=unmade)
                if unmade:
                    _unless_it_hides(sweep_made_root, root, made=made_root)
            else:
                _release_or_warn(lock, outcome.result)


def _append(ledger: RunLedger, record: RunRecord) -> None:
    """The record into the ledger, and its one-line summary into the log: a log file (``--log-file``, the
    cron recipe's) then says how each run ended, with its id and exit code, next to that run's retries."""
    ledger.append(record)
    log.info("%s", record.summary())
