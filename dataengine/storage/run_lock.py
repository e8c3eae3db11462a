"""One writer per store: ``{root}/metadata/run.lock``, held from planning to a run's last write.

The store gives the lock its form (:meth:`~dataengine.storage.store.Store.lock`): an OS advisory lock a dead
process releases on a local store (:mod:`.flock_lock`), an object with a lease a dead process stops renewing
on S3 (:mod:`.lease_lock`). This module waits for it, names the holder in the message a refused run prints,
logs a takeover, and **fences** the store while held: every write, data or metadata, first checks that this
run still holds the lock, so a run that lost it (a lease not renewed in time) writes nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dataengine.errors import LockError
from dataengine.storage.process_identity import holder_alive
from dataengine.storage.store import LockBackend, StorePath, open_store

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


def describe_holder(holder: dict[str, Any] | None, *, live: bool = True) -> str:
    """``pid 4242 on host db1, started 2025-01-02T06:00:00+00:00 (dataengine ingest ...)``; for a ``live``
    holder's lease, when it ends, and whether its process has exited already (on this host)."""
    if not holder:
        return "a process that has not written its details yet"
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
    command = holder.get("command")
    if command:
        text += f" ({command})"
    if live and holder.get("lease_until"):
        if holder_alive(holder) is False:
            # a lease is all another host can go by, so it is waited out here too: a pid reused on another
            # machine of the same name must not let two runs write
            text += (f"; that process has exited (killed, or cut off from the store): its lease lapses "
                     f"{holder['lease_until']}, and a run then takes the store over")
        else:
            text += f"; its lease ends {holder['lease_until']} unless it renews it"
    return text


def exited_holder(holder: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record of a lock whose run has exited (on this host) while its lease still stands, or None: the store
    is not in use, yet a run is refused it (or waits, with --wait) until the lease lapses. What status and
    doctor show, so they never call such a store free while ingest refuses it."""
    if not holder or holder.get("alive") is not False or not holder.get("lease_until"):
        return None
    from dataengine.storage.lease_lock import expired  # only a lease (S3) outlives its run

    return None if expired(holder) else holder


class RunLock:
    """An exclusive, process-wide lock on one store; a context manager.

    ``wait=False`` raises :class:`~dataengine.errors.LockError` (exit 3) at once when another process holds
    the lock, naming the holder; ``wait=True`` polls until it is free, or until ``timeout`` seconds have
    passed (then the same error). Not re-entrant; one instance is used by one thread.
    """

    def __init__(
        self,
        root: StorePath | str | Path,
        *,
        wait: bool = False,
        timeout: float | None = None,
        poll_s: float = 0.25,
        command: str | Sequence[str] | None = None,
        name: str = LOCK_FILE,
    ) -> None:
        self.root = open_store(root)
        self.path = self.root / "metadata" / name
        self.wait = wait or timeout is not None
        self.timeout = timeout
        self.poll_s = poll_s
        self.command = command if isinstance(command, str) or command is None else " ".join(command)
        self.taken_over: dict[str, Any] | None = None  # the record of a dead holder this lock replaced
        self.waited_s = 0.0  # how long acquire waited for another run to let go
        self._backend: LockBackend | None = None
        self._previous_fence: Callable[[], None] | None = None
        self._reported = False  # a LockError about a lost lock was raised already (once is enough)

    @property
    def held(self) -> bool:
        return self._backend is not None

    def acquire(self) -> RunLock:
        if self.held:
            raise RuntimeError("RunLock is not re-entrant")
        backend = self.root.store.lock(self.path.key, self.command)
        dead: list[dict[str, Any] | None] = [None]
        asked = time.monotonic()

        def attempt() -> tuple[bool, dict[str, Any] | None]:
            taken, dead[0], live = backend.try_acquire()
            return taken, live

        self._wait_for(attempt)
        self.waited_s = time.monotonic() - asked  # the ledger's waited_s, for a run under a hold taken here
        if dead[0] is not None:
            self.taken_over = dead[0]
            how = "whose lease ended (killed, crashed or cut off)" if dead[0].get("lease_until") else \
                "which ended without releasing it (killed or crashed)"
            log.warning("taking over the store lock from %s, %s", describe_holder(dead[0], live=False), how)
        self._backend = backend
        self._previous_fence = self.root.store.hold(self.check_held)
        return self

    def _wait_for(self, attempt: Callable[[], tuple[bool, dict[str, Any] | None]]) -> None:
        """Call ``attempt`` (-> taken, holder) until it takes the lock, or raise LockError (no wait, timeout)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        announced = False
        while True:
            taken, holder = attempt()
            if taken:
                return
            if not self.wait or (deadline is not None and time.monotonic() >= deadline):
                waited = " after waiting" if self.wait else ""
                hint = "" if self.wait else "; pass --wait to wait for it (wait_for_lock=True from Python)"
                raise LockError(
                    f"the store {self.root} is in use by another dataengine run{waited}: "
                    f"{describe_holder(holder)}{hint}"
                )
            if not announced:
                log.warning("waiting for the store lock held by %s", describe_holder(holder))
                announced = True
            time.sleep(self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic())))

    def check_held(self) -> None:
        """Raise LockError when this run lost the lock while it ran (only a lease can be lost: another run
        took over a lease that was not renewed in time). The store calls it before every write."""
        why = self._backend.lost() if self._backend is not None else None
        if why is not None:
            self._reported = True
            raise LockError(self._lost_message(why))

    def _lost_message(self, why: str) -> str:
        return (f"the store lock {self.path} was lost during the run: {why}; another run may have written "
                "meanwhile (run again: it fetches whatever is missing)")

    def release(self, *, remove: bool = False) -> None:
        """Release the lock (``remove``: and delete its file, see :meth:`LockBackend.release`); raises LockError
        when it was lost during the run and nobody was told yet."""
        backend, self._backend = self._backend, None
        if backend is None:
            return
        self.root.store.hold(self._previous_fence)
        why = backend.lost()
        backend.release(remove=remove)
        if why is not None and not self._reported:
            self._reported = True
            raise LockError(self._lost_message(why))

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    @staticmethod
    def holder(root: StorePath | str | Path, name: str = LOCK_FILE) -> dict[str, Any] | None:
        """The record of the run holding the store now, or None; for display only. ``alive`` is False for the
        record of a dead run (the next run takes the lock over) and None when it cannot be told (another host)."""
        return open_store(root).store.lock_holder(f"metadata/{name}")
