"""One writer per local store: an OS advisory lock on ``metadata/run.lock``.

The lock is ``fcntl.flock`` on POSIX and ``msvcrt.locking`` on Windows. The kernel drops it when the holding
process dies, however it dies (``kill -9``, OOM killer, power loss), so a stale lock cannot block cron: the
next run simply gets it. While held, the file names its holder (pid, host, start time, command line) for the
message a refused run prints; on a clean release the file is emptied, so a holder record found by the next
run means the previous holder died without releasing it.

The lock file is deleted only by its holder, and only with the new store a refused run takes away
(``release(remove=True)``). A process that opened the file before it went could then lock a file that no longer
has the name while a third locks the new one: so a lock is taken only on the file the name still holds, else
the name is opened again. Advisory locks only bind processes that ask for them
(every dataengine writer does); on network file systems (NFS, SMB) ``flock`` may be local to one machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dataengine.errors import StorageError
from dataengine.storage.process_identity import holder_alive, process_record

log = logging.getLogger(__name__)

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


class FlockBackend:
    """One process's hold on a lock file. The kernel owns the truth; a held lock is never lost."""

    def __init__(self, path: Path, command: str | None) -> None:
        self.path = path
        self.command = command
        self._fd: int | None = None

    def try_acquire(self) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        fd = self._fd if self._fd is not None else self._open()
        self._fd = None
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            return False, None, holder
        if not self._still_named(fd):  # deleted by its holder after we opened it: lock the file there now
            _unlock(fd)
            os.close(fd)
            return self.try_acquire()
        previous = _read_holder(fd)  # a record left behind: its holder died without releasing the lock
        self._fd = fd
        self._write_holder()
        return True, previous, None

    def lost(self) -> str | None:
        return None

    def release(self, *, remove: bool = False) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # an empty file means "released cleanly"
        if remove:  # while still held: whoever opened it meanwhile finds it gone (_still_named) and opens anew
            with contextlib.suppress(OSError):  # (Windows refuses to delete an open file: it stays, empty)
                self.path.unlink()
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def _open(self) -> int:
        for _ in range(3):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # its directory went in between, with a new store a refused run took away
                continue
            except OSError as exc:
                raise StorageError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from None
        raise StorageError(f"cannot create the lock file {self.path}: its directory keeps disappearing")

    def _still_named(self, fd: int) -> bool:
        """Whether ``fd`` is the file the lock's name holds now."""
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _write_holder(self) -> None:
        assert self._fd is not None
        record = {**process_record(),
                  "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if self.command:
            record["command"] = self.command
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
            os.write(self._fd, (json.dumps(record) + "\n").encode())
        except OSError as exc:  # the lock is held; only the message for others is missing
            log.warning("cannot write the lock holder record to %s: %s", self.path, exc)


def read_holder_file(path: Path) -> dict[str, Any] | None:
    """The record of the run holding the lock, for display; ``alive`` is whether its pid lives on this host
    (None on another host). It never tries the lock: a probe could make a starting run fail."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    record = _parse_holder(data)
    if record is None:
        return None
    record["alive"] = holder_alive(record)
    return record


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
