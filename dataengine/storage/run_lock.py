"""One writer per store: an OS advisory lock on ``{root}/metadata/run.lock``; on S3, where no OS lock exists,
the same file as an object with a lease (:mod:`dataengine.storage.lease_lock`) behind the same class.

The lock is ``fcntl.flock`` on POSIX and ``msvcrt.locking`` on Windows. The kernel drops it when the holding
process dies, however it dies (``kill -9``, OOM killer, power loss), so a stale lock cannot block cron: the
next run simply gets it. While held, the file names its holder (pid, host, start time, command line) for the
message a refused run prints; on a clean release the file is emptied, so a holder record found by the next
run means the previous holder died without releasing it, which is logged when the lock is taken over.

The lock file itself is never deleted: removing a lock file while another process has it open would let two
processes lock two different files of the same name.

Limits: advisory locks only bind processes that ask for them (every dataengine writer does); on network
file systems (NFS, SMB) ``flock`` may be local to one machine, so keep one writing host per store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from dataengine.config import storage_path
from dataengine.errors import LockError, StorageError
from dataengine.storage.atomic import pid_alive
from dataengine.storage.lease_lock import LeaseHolder, holder_status, lease_seconds
from dataengine.storage.store_path import StorePath, is_s3

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
_WINDOWS_LOCK_OFFSET = 0x7FFF_0000  # lock a byte far past the holder record, so others can still read it

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``pid 4242 on host db1, started 2025-01-02T06:00:00+00:00 (dataengine ingest ...)``."""
    if not holder:
        return "a process that has not written its details yet"
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
    command = holder.get("command")
    if command:
        text += f" ({command})"
    if holder.get("lease_until"):
        text += f"; its lease ends {holder['lease_until']} unless it renews it"
    return text


class RunLock:
    """An exclusive, process-wide lock on one store; a context manager.

    ``wait=False`` raises :class:`~dataengine.errors.LockError` (exit 3) at once when another process holds
    the lock, naming the holder; ``wait=True`` polls until it is free, or until ``timeout`` seconds have
    passed (then the same error). Not re-entrant; one instance is used by one thread.
    """

    def __init__(
        self,
        root: str | StorePath,
        *,
        wait: bool = False,
        timeout: float | None = None,
        poll_s: float = 0.25,
        command: str | Sequence[str] | None = None,
        name: str = LOCK_FILE,
    ) -> None:
        self.root = storage_path(root)
        self.path = self.root / "metadata" / name
        self.wait = wait or timeout is not None
        self.timeout = timeout
        self.poll_s = poll_s
        self.command = command if isinstance(command, str) or command is None else " ".join(command)
        self.taken_over: dict[str, Any] | None = None  # the record of a dead holder this lock replaced
        self._fd: int | None = None
        # On S3 the lock is an object with a lease (storage/lease_lock.py); locally an OS lock.
        self._lease = LeaseHolder(self.path, self.command, lease_seconds()) if is_s3(self.path) else None
        self._lease_held = False

    @property
    def held(self) -> bool:
        return self._fd is not None or self._lease_held

    def acquire(self) -> RunLock:
        if self.held:
            raise RuntimeError("RunLock is not re-entrant")
        if self._lease is not None:
            return self._acquire_lease(self._lease)
        fd = self._open()
        try:
            self._wait_for(lambda: (_try_lock(fd), _read_holder(fd)))
        except BaseException:
            os.close(fd)
            raise
        previous = _read_holder(fd)
        if previous:
            self.taken_over = previous
            log.warning(
                "taking over the store lock from %s, which ended without releasing it (killed or crashed)",
                describe_holder(previous),
            )
        self._fd = fd
        self._write_holder()
        return self

    def _acquire_lease(self, lease: LeaseHolder) -> RunLock:
        dead: list[dict[str, Any] | None] = [None]

        def attempt() -> tuple[bool, dict[str, Any] | None]:
            taken, dead[0], live = lease.try_acquire()
            return taken, live

        self._wait_for(attempt)
        if dead[0] is not None:
            self.taken_over = dead[0]
            log.warning("taking over the store lock from %s, whose lease ended (killed, crashed or cut off)",
                        describe_holder(dead[0]))
        lease.start_renewing()
        self._lease_held = True
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
                hint = "" if self.wait else "; pass --wait to wait for it"
                raise LockError(
                    f"the store {self.root} is in use by another dataengine run{waited}: "
                    f"{describe_holder(holder)}{hint}"
                )
            if not announced:
                log.warning("waiting for the store lock held by %s", describe_holder(holder))
                announced = True
            time.sleep(self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic())))

    def check_held(self) -> None:
        """Raise LockError when this run lost the lock while it ran: only possible on S3, where another run
        takes over a lease that was not renewed in time."""
        if self._lease is not None and self._lease_held and self._lease.check() is not None:
            raise LockError(self._lease.lost_message())

    def release(self) -> None:
        if self._lease is not None and self._lease_held:
            self._lease_held = False
            self._lease.release()  # raises LockError when the lease was lost during the run
            return
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # an empty file means "released cleanly"
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    @staticmethod
    def holder(root: str | StorePath, name: str = LOCK_FILE) -> dict[str, Any] | None:
        """The record of the run holding the store now, or None; for display only.

        It does not try the lock (a probe could make a starting run fail): it reads the holder record, which
        a clean release empties, and on this host checks that the pid is alive. ``alive`` is False for the
        record of a killed run (the next run takes the lock over) and None when the host is another one.
        """
        path = storage_path(root) / "metadata" / name
        if is_s3(path):
            return holder_status(path)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        record = _parse_holder(data)
        if record is None:
            return None
        pid = record.get("pid")
        if record.get("host") != socket.gethostname() or not isinstance(pid, int):
            record["alive"] = None
        else:
            record["alive"] = pid_alive(pid)
        return record

    # -- internals --------------------------------------------------------------------------------------------

    def _open(self) -> int:
        assert isinstance(self.path, Path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None

    def _write_holder(self) -> None:
        assert self._fd is not None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if self.command:
            record["command"] = self.command
        data = (json.dumps(record) + "\n").encode()
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, data)
        except OSError as exc:  # the lock is held; only the message for others is missing
            log.warning("cannot write the lock holder record to %s: %s", self.path, exc)


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
    except OSError:
        return None
    return _parse_holder(data)


def _parse_holder(data: bytes) -> dict[str, Any] | None:
    if not data.strip():
        return None
    try:
        record = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return None  # caught mid-write by its holder
    return record if isinstance(record, dict) else None
