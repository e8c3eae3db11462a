"""The file operations a version table needs from its store: the seam between the Delta log (which knows
nothing of disks or buckets) and the store (:class:`StoreFiles`, over the :class:`~dataengine.storage.store.Store`
protocol, whose two implementations do this):

=================  ==========================================  ============================================
operation          local                                       S3
=================  ==========================================  ============================================
``link``           ``os.link`` (a copy across file systems)    ``CopyObject`` (server-side; no bytes move)
``put_if_absent``  temp file, fsync, ``os.link`` onto the name  ``PutObject`` with ``If-None-Match: *``
``put``            temp file, fsync, ``os.replace``            ``PutObject`` (a PUT is atomic)
``read``           read the file (``limit``: its first bytes)  ``GetObject`` (``Range: bytes=0-{limit-1}``)
``read_many``      read each                                   ``GetObject`` each, sixteen at a time
``stat``           ``os.stat``                                 ``HeadObject``
``stat_many``      ``os.stat`` each (~5 us)                    ``ListObjectsV2`` of their common prefix
``list``           walk the directory                          ``ListObjectsV2`` (``StartAfter``)
``delete``         ``os.unlink``                               ``DeleteObject``
``uri``            the absolute path                           ``s3://bucket/prefix/...``
=================  ==========================================  ============================================

A ``fingerprint`` says whether two names hold the same bytes without reading them: the store's tag, locally the
inode, size and mtime (a hard link shares them; a file replaced by rename gets a new inode), on S3 the ETag (a server-side copy of a one-PUT
object keeps its MD5 ETag). Two equal fingerprints must mean the same bytes; two different ones may still
(a copy across file systems): that only costs a needless re-link, never a lost change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from dataengine.storage.store import StorePath


@dataclass(frozen=True)
class FileInfo:
    """One file: its store-relative path, size in bytes, fingerprint (see the module docstring) and when it was
    written (epoch seconds; 0 where not asked)."""

    path: str
    size: int
    fingerprint: str
    modified: float = 0.0


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

        Raises FileExistsError if ``dst`` is known to exist (it is never replaced: a committed version may name
        it; on S3 under the run lock only a ``dst`` this process wrote or listed is known, see
        :meth:`~dataengine.storage.store.Store.link`, which is why ``dst`` names carry the run id) and
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

    def read_many(self, paths: Sequence[str]) -> list[bytes | None]:
        """The bytes of each path, in order (None for one that is absent), however the backend reads many
        files cheapest (S3: sixteen GETs in flight)."""
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


class StoreFiles:
    """:class:`VersionFiles` on a store (:class:`~dataengine.storage.store.Store`): every operation is the
    store's own, so a version table works the same on a local directory and on S3, fenced by the run lock
    like every other write. Thread-safe."""

    def __init__(self, root: StorePath) -> None:
        self.root = root.root
        self.store = self.root.store

    @property
    def storage_options(self) -> dict[str, str] | None:
        return self.store.engine_options()

    def uri(self, path: str) -> str:
        return self.store.describe(path)

    def link(self, src: str, dst: str) -> None:
        self.store.link(src, dst)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        return self.store.put(path, data, create=True) is not None

    def put(self, path: str, data: bytes) -> None:
        self.store.put(path, data)

    def read(self, path: str, limit: int | None = None) -> bytes:
        return self.store.read(path, limit=limit)

    def read_many(self, paths: Sequence[str]) -> list[bytes | None]:
        def one(path: str) -> bytes | None:
            try:
                return self.store.read(path)
            except FileNotFoundError:
                return None

        return self.store.each(one, list(paths), local_threads=4)

    def stat(self, path: str) -> FileInfo | None:
        found = self.store.stat(path)
        return FileInfo(path, found.size, found.tag, found.modified) if found is not None else None

    def stat_many(self, paths: Sequence[str]) -> list[FileInfo | None]:
        return [FileInfo(p, st.size, st.tag) if st is not None else None
                for p, st in zip(paths, self.store.stat_many(paths), strict=True)]

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[FileInfo]:
        for key, st in self.store.walk(prefix):
            if start_after is None or key > start_after:
                yield FileInfo(key, st.size, st.tag)

    def delete(self, path: str) -> int:
        found = self.store.stat(path)
        if found is None:
            return 0
        self.store.delete(path)
        return found.size if found.links == 1 else 0
