"""The file operations a version table needs from its store: the seam between the Delta log (which knows
nothing of disks or buckets) and a backend.

Paths are store-relative POSIX strings (``metadata/versions/equities_1min/_delta_log/...``). :class:`LocalFiles`
implements the protocol on a directory; an S3 store implements the same operations with requests:

=================  ==========================================  ============================================
operation          local (:class:`LocalFiles`)                 S3
=================  ==========================================  ============================================
``link``           ``os.link`` (a copy across file systems)    ``CopyObject`` (server-side; no bytes move)
``put_if_absent``  temp file, fsync, ``os.link`` onto the name  ``PutObject`` with ``If-None-Match: *``
``put``            temp file, fsync, ``os.replace``            ``PutObject`` (a PUT is atomic)
``read``           read the file (``limit``: its first bytes)  ``GetObject`` (``Range: bytes=0-{limit-1}``)
``stat``           ``os.stat``                                 ``HeadObject``
``stat_many``      ``os.stat`` each (~5 us)                    ``ListObjectsV2`` of their common prefix
``list``           walk the directory                          ``ListObjectsV2`` (``StartAfter``)
``delete``         ``os.unlink``                               ``DeleteObject``
``uri``            the absolute path                           ``s3://bucket/prefix/...``
=================  ==========================================  ============================================

A ``fingerprint`` says whether two names hold the same bytes without reading them: locally the inode (a hard
link shares it; a file replaced by rename gets a new one), on S3 the ETag (a server-side copy of a one-PUT
object keeps its MD5 ETag). Two equal fingerprints must mean the same bytes; two different ones may still
(a copy across file systems): that only costs a needless re-link, never a lost change.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class FileInfo:
    """One file: its store-relative path, size in bytes and fingerprint (see the module docstring)."""

    path: str
    size: int
    fingerprint: str


class VersionFiles(Protocol):
    """What a version table asks of its store. Implementations must be safe to call from several threads."""

    @property
    def storage_options(self) -> dict[str, str] | None:
        """Options for deltalake/Polars to open :meth:`uri` (S3: endpoint, region, credentials); None locally."""
        ...

    def uri(self, path: str) -> str:
        """``path`` as deltalake, Polars and DuckDB open it: an absolute local path or an ``s3://`` URL."""
        ...

    def link(self, src: str, dst: str) -> None:
        """Make ``dst`` a new name for the bytes of ``src`` without rewriting them anywhere ``src`` is named.

        Raises FileExistsError if ``dst`` exists (it is never replaced: a committed version may name it) and
        FileNotFoundError if ``src`` does not. Creates ``dst``'s parents as needed.
        """
        ...

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data``, durably; False (and nothing written) if it already exists."""
        ...

    def put(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically and durably: a reader sees the old bytes or the new."""
        ...

    def read(self, path: str, limit: int | None = None) -> bytes:
        """The bytes of ``path`` (only its first ``limit`` bytes, if given); FileNotFoundError if absent."""
        ...

    def stat(self, path: str) -> FileInfo | None:
        """The file at ``path``, or None if there is none."""
        ...

    def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        """:meth:`stat` of each path, in order, however the backend does that cheapest (54,000 files: a stat
        each locally; on S3 a listing, not 54,000 HEADs)."""
        ...

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[FileInfo]:
        """Every file under the directory ``prefix``, recursively, in no particular order (``start_after``: a
        hint that only paths sorting after it are wanted; a backend may ignore it)."""
        ...

    def delete(self, path: str) -> int:
        """Remove ``path``; the bytes this freed (0 when another hard link still holds them, or none was there)."""
        ...


class LocalFiles:
    """:class:`VersionFiles` on a local directory (the store root). Thread-safe: every call is system calls.

    Durability: commits and records are fsynced (file and directory); links are not, one by one (500 directory
    fsyncs would cost a nightly commit seconds). On ext4 and XFS the fsync of the commit file also makes the
    metadata journaled before it durable, the run's links included; elsewhere a power cut could lose a link a
    version names, which :func:`~dataengine.storage.versions.check` reports and ``mend`` re-links.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def storage_options(self) -> dict[str, str] | None:
        return None

    def uri(self, path: str) -> str:
        return str((self.root / path).absolute())

    def link(self, src: str, dst: str) -> None:
        source, target = self.root / src, self.root / dst
        for attempt in (1, 2):
            try:
                os.link(source, target)
                return
            except FileExistsError:
                raise
            except FileNotFoundError:  # no source, or no parent directory yet
                if attempt == 2 or not source.exists():
                    raise
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINK:
                    raise
                self._copy_new(source, target)
                return

    def _copy_new(self, source: Path, target: Path) -> None:
        """Across file systems (or where hard links are refused): a copy under a temp name, then linked onto
        ``target`` so that an existing ``target`` is never replaced."""
        tmp = _temp_beside(target)
        try:
            shutil.copy2(source, tmp)
            _fsync(tmp)
            os.link(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def put_if_absent(self, path: str, data: bytes) -> bool:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(target)
        try:
            _write_durably(tmp, data)
            try:
                os.link(tmp, target)  # atomic create-if-absent, unlike os.replace
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        _fsync(target.parent)
        return True

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_beside(target)
        try:
            _write_durably(tmp, data)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync(target.parent)

    def read(self, path: str, limit: int | None = None) -> bytes:
        with open(self.root / path, "rb") as handle:
            return handle.read() if limit is None else handle.read(limit)

    def stat(self, path: str) -> FileInfo | None:
        try:
            st = os.stat(self.root / path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return FileInfo(path, st.st_size, f"{st.st_dev}:{st.st_ino}")

    def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        return [self.stat(path) for path in paths]

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[FileInfo]:
        top = self.root / prefix
        stack = [(top, prefix.rstrip("/"))]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), name))
                elif start_after is None or name > start_after:
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        yield FileInfo(name, st.st_size, f"{st.st_dev}:{st.st_ino}")

    def delete(self, path: str) -> int:
        target = self.root / path
        try:
            st = os.stat(target)
            os.unlink(target)
        except FileNotFoundError:
            return 0
        return st.st_size if st.st_nlink == 1 else 0


# a file system that cannot hard-link these two names: across mounts, or no hard links at all
_NO_HARD_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP)


def _temp_beside(target: Path) -> Path:
    # hidden and not *.json / *.parquet: no Delta reader and no directory reader picks it up
    return target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
