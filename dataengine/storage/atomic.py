"""Whole-file replacement that a crash cannot tear.

Every file dataengine rewrites (partitions, the coverage ledger after compaction, index CSVs, the dataset
record, the footer cache, ``query --output``) goes through :func:`write_atomic`: the new content is written to a
hidden temp file in the same directory, fsynced, renamed over the target with ``os.replace`` (atomic on POSIX
and Windows within one file system), and the directory is fsynced so the rename itself survives power loss.
A reader sees the old file or the new one, never a mix.

Temp names are ``.{target}.{pid}.{random}.tmp``: hidden, never ``*.parquet`` (so no dataset reader or glob
picks one up), and carrying the writer's pid so the next run can tell a dead writer's leftover from a live
one's file (:func:`is_temp_name`, :func:`temp_owner_pid`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from dataengine.storage.process_identity import pid_alive

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"


def temp_path(target: Path, directory: Path | None = None) -> Path:
    """A fresh temp-file path for this process: beside ``target``, or in ``directory`` (same file system)."""
    return (directory or target.parent) / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"


def is_temp_name(name: str, target_name: str | None = None) -> bool:
    """True for a name :func:`temp_path` makes (for ``target_name`` only, if given)."""
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return False
    parts = name[1 : -len(TEMP_SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != 8:
        return False
    return target_name is None or parts[0] == target_name


def temp_target(name: str) -> str | None:
    """The name of the file a temp file was going to replace, or None when ``name`` is not one of ours."""
    return name[1 : -len(TEMP_SUFFIX)].rsplit(".", 2)[0] if is_temp_name(name) else None


def temp_owner_pid(name: str) -> int | None:
    """The pid embedded in a temp-file name, or None when ``name`` is not one of ours."""
    if not is_temp_name(name):
        return None
    return int(name[1 : -len(TEMP_SUFFIX)].rsplit(".", 2)[1])


_NATIVE_OS_ERROR = re.compile(r"\(os error (\d+)\)")


@contextlib.contextmanager
def native_os_errors() -> Iterator[None]:
    """Raise an OSError for a system error a native writer reports in its own exception type: Polars' Parquet
    writer says a full disk as ``ComputeError: ... No space left on device (os error 28)``, which a store
    must treat as it treats Python's own ENOSPC (one line, the run stops), not as a bug in a symbol."""
    try:
        yield
    except Exception as exc:
        polars = sys.modules.get("polars")  # not imported: no Polars write ran (and none is imported for this)
        if polars is None or not isinstance(exc, polars.exceptions.PolarsError):
            raise  # only the native writer's own errors: a message of ours stays as it is
        found = _NATIVE_OS_ERROR.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code)) from exc


def write_atomic(target: Path, write: Callable[[Path], None], *, temp_dir: Path | None = None) -> None:
    """Replace ``target`` with what ``write(tmp)`` writes to a temp path, atomically and durably.

    If ``write`` raises, the temp file is removed and ``target`` is left exactly as it was. ``temp_dir`` (on
    the same file system) keeps the temp file out of the target's directory: a dataset directory must hold
    nothing a directory reader could pick up, even for the instant of a write or after a kill -9.
    """
    tmp = temp_path(target, temp_dir)
    try:
        with native_os_errors():
            write(tmp)
        fsync_path(tmp)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _replace_across_file_systems(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_path(target.parent)


def _replace_across_file_systems(tmp: Path, target: Path) -> None:
    """``target`` lies on another file system than the temp directory (a store directory that is a mount or a
    symlink): copy to a temp name beside it, then rename there, still atomically."""
    beside = temp_path(target)
    try:
        shutil.copyfile(tmp, beside)
        fsync_path(beside)
        os.replace(beside, target)
    except BaseException:
        with contextlib.suppress(OSError):
            beside.unlink()
        raise
    tmp.unlink()


def write_bytes_atomic(target: Path, data: bytes, *, temp_dir: Path | None = None) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    write_atomic(target, write, temp_dir=temp_dir)


def write_text_atomic(target: Path, text: str, *, temp_dir: Path | None = None) -> None:
    write_bytes_atomic(target, text.encode("utf-8"), temp_dir=temp_dir)


def fsync_path(path: Path) -> None:
    """fsync a file or a directory. A file that cannot be synced raises OSError naming it: its bytes may never
    reach the disk (a failed write-back: EIO; a thin volume or quota: ENOSPC), so it must not be renamed into
    place or recorded as stored. A file is opened for writing: Windows flushes only a handle that can write
    (``FlushFileBuffers``; a read-only one gets EBADF). A directory is synced where the system can (see
    :func:`_fsync_directory`)."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:  # POSIX: a directory cannot be opened for writing
        _fsync_directory(path)
        return
    except PermissionError:
        if os.path.isdir(path):  # Windows opens no directory at all; its renames are atomic anyway
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


# what an fsync of a directory answers where the file system does not do it (rather than where it failed)
_DIRECTORY_FSYNC_REFUSED = frozenset({errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES,
                                      errno.EPERM})


def _fsync_directory(path: Path) -> None:
    """Make the renames in a directory durable. Passed over where the directory may not be read (EACCES) or its
    file system refuses fsync on a directory (EINVAL on some; PostgreSQL allows for both); any other failure
    raises OSError naming it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except PermissionError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIRECTORY_FSYNC_REFUSED:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def sync_file_system(path: Path) -> bool:
    """Make everything written on the file system holding ``path`` durable with one ``syncfs(2)``: one journal
    commit for a batch of files instead of an fsync each (a page of daily bars places ~480 files; measured
    on this project's 2-core VM, 6,000 files fsynced with their directories took 2.0-2.4 s of system CPU,
    the same files under two syncfs per batch of 480 0.7-1.0 s).

    False, and the caller fsyncs file by file, where syncfs is not as good as fsync or not there: not Linux,
    a libc without it, a sandbox that refuses it, or a file system that is not a local disk's (on NFS, SMB
    or FUSE syncfs may return before the server has the bytes; fsync asks it). A failed sync raises OSError
    (Linux reports write-back errors here from 5.8 on)."""
    fn = _syncfs()
    if fn is None:
        return False
    device = os.stat(path).st_dev
    usable = _SYNCFS_DEVICES.get(device)
    if usable is None:
        usable = _SYNCFS_DEVICES[device] = _file_system_type(path) in _SYNCFS_TYPES
    if not usable:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        if fn(fd) != 0:
            import ctypes

            code = ctypes.get_errno()
            if code in (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL):  # refused, not failed
                _SYNCFS_DEVICES[device] = False
                return False
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)
    return True


# Local file systems whose syncfs flushes to stable storage as fsync does (overlay: Docker's, synced through
# its upper layer).
_SYNCFS_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "zfs", "jfs", "tmpfs", "overlay"})
_MOUNT_ESCAPE = re.compile(r"\\([0-7]{3})")  # /proc/self/mounts writes space, tab, newline, backslash in octal
_SYNCFS_DEVICES: dict[int, bool] = {}  # st_dev -> syncfs usable there, decided once per process
_SYNCFS: list[Callable[[int], int] | None] = []  # looked up once: [] not yet, [None] not available


def _syncfs() -> Callable[[int], int] | None:
    if not _SYNCFS:
        fn = None
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                fn = ctypes.CDLL(None, use_errno=True).syncfs
                fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _SYNCFS.append(fn)
    return _SYNCFS[0]


def _file_system_type(path: Path) -> str | None:
    """The type (``ext4``, ``nfs4``, ``fuse.sshfs``...) of the mount holding ``path``: the longest mount point
    above it in /proc/self/mounts. None when that cannot be read."""
    where = os.path.realpath(path)
    best, kind = "", None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = _MOUNT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[1])  # a space is \040
                inside = where == point or where.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return None
    return kind


def cut_torn_tail(path: Path, aside_dir: Path) -> int:
    """Cut an append-only log back to its last complete line before appending to it.

    A crash or a full disk mid-append leaves a last line without its newline; appending after it would glue
    the next record onto it and lose both (and make the whole file unreadable to ``read_json`` /
    ``read_ndjson``). The cut bytes are kept in ``aside_dir`` for a look. Returns how many bytes were cut.
    Call it with the file's writer lock held.
    """
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return 0
            keep = _last_newline_end(handle, size)
            handle.seek(keep)
            torn = handle.read()
            aside_dir.mkdir(parents=True, exist_ok=True)
            aside = aside_dir / f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.torn"
            aside.write_bytes(torn)
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    except FileNotFoundError:
        return 0
    log.warning("%s ended in a torn line (%d bytes, kept in %s); cut back to the last complete line", path, len(torn), aside)
    return len(torn)


def _last_newline_end(handle: BinaryIO, size: int, block: int = 64 * 1024) -> int:
    pos = size
    while pos > 0:
        step = min(block, pos)
        pos -= step
        handle.seek(pos)
        chunk = handle.read(step)
        found = chunk.rfind(b"\n")
        if found >= 0:
            return pos + found + 1
    return 0


def remove_dead_stages(staging: Path) -> int:
    """Remove the temp files and batch staging directories in ``staging`` whose writer is gone (killed
    mid-write); a live process's are kept. Returns how many."""
    removed = 0
    try:
        names = os.listdir(staging)
    except OSError:
        return 0
    for name in names:
        pid = temp_owner_pid(name)
        if pid is None or pid_alive(pid):
            continue
        path = staging / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed += 1
    return removed
