"""A store under a prefix on S3 (or an S3-compatible service: MinIO, Cloudflare R2, GCS's S3 API): the
:class:`~dataengine.storage.store.Store` of objects.

What a file system gives, S3 gives its own way: a PUT replaces an object whole (a reader sees the old one or
the new one), ``If-None-Match: *`` creates only if absent and ``If-Match`` replaces or deletes only the
version read; append-only logs are one object per commit (:mod:`.commit_log`) and the lock is an object with
a lease (:mod:`.lease_lock`). Requests go through the bucket's boto3 client (:mod:`.s3_client`), which
counts each one; its resolved credentials are handed to Polars and pyarrow for reads (:mod:`.s3_engines`).

While a run holds the lock, nobody else writes the store: listings made then are kept, with this run's own
writes laid over them (:mod:`.s3_listings`), so a nightly run lists each symbol once, not once to plan and
again to index.
"""

from __future__ import annotations

import io
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dataengine.errors import ConfigError, StorageError
from dataengine.storage import atomic, s3_engines
from dataengine.storage.commit_log import CommitLog
from dataengine.storage.lease_lock import LeaseHolder, holder_status, lease_seconds
from dataengine.storage.s3_client import S3Client, S3Stat, client_for
from dataengine.storage.s3_listings import KeptListings
from dataengine.storage.store import AppendLog, LockBackend, Stat

if TYPE_CHECKING:
    import polars as pl
    import pyarrow.dataset
    import pyarrow.fs
    import pyarrow.parquet

T = TypeVar("T")
R = TypeVar("R")

SCHEME = "s3://"
# S3's bucket naming rules (3-63 lower-case letters, digits, dots, hyphens); also what MinIO and R2 accept.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
PARALLEL = 16  # requests in flight at once where each is a round trip (a page of daily bars: ~500 partitions)


def parse_url(text: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix``); a malformed URL is a ConfigError."""
    rest = text[len(SCHEME) :] if text.startswith(SCHEME) else None
    bucket, _, prefix = (rest or "").partition("/")
    if rest is None or not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"storage dir {text!r}: not an S3 URL of the form s3://bucket/prefix (nothing was written)")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(f"storage dir {text!r}: empty, '.' or '..' segments in the prefix (nothing was written)")
    return bucket, prefix


def _stat(found: S3Stat) -> Stat:
    return Stat(found.st_size, found.etag, found.st_mtime_ns, found.st_ino, found.st_size, found.st_mtime)


class S3Store:
    """A store rooted at ``s3://bucket/prefix``. Thread-safe."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"{SCHEME}{bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{bucket}"
        self._fence: Callable[[], None] | None = None
        self._holders: list[dict[str, str]] = []  # the lineage of each lease held, outermost first (commit_log)
        self._guard = threading.Lock()
        self._listings = KeptListings(self._guard)  # while the lock is held

    @classmethod
    def from_url(cls, text: str) -> S3Store:
        return cls(*parse_url(text))

    @property
    def client(self) -> S3Client:
        return client_for(self.bucket)

    def _k(self, key: str) -> str:
        """The object key of a store key."""
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def _rel(self, object_key: str) -> str:
        return object_key[len(self.prefix) :].lstrip("/") if self.prefix else object_key

    def describe(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    # -- reading --------------------------------------------------------------------------------------------

    def read(self, key: str, *, limit: int | None = None) -> bytes:
        found = self.client.get(self._k(key), limit=limit)
        if found is None:
            raise FileNotFoundError(2, "no such object", self.describe(key))
        return found[0]

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        return self.client.get(self._k(key))

    def stat(self, key: str) -> Stat | None:
        kept = self._listings.kept(key)
        if kept is not None:
            return kept[0]
        found = self.client.head(self._k(key))
        return _stat(found) if found is not None else None

    def stat_many(self, keys: Sequence[str]) -> list[Stat | None]:
        """One listing of the keys' common prefix (one LIST per 1,000 objects), not a HEAD each."""
        if len(keys) < 8:
            return [self.stat(key) for key in keys]
        common = keys[0].rsplit("/", 1)[0]
        for key in keys:
            while common and not key.startswith(common + "/"):
                common = common.rsplit("/", 1)[0] if "/" in common else ""
        found = dict(self.walk(common))
        return [found.get(key) for key in keys]

    def is_dir(self, key: str) -> bool:
        prefix = self._k(key)
        _, objects = self.client.list(f"{prefix}/" if prefix else "", delimiter=False, limit=1)
        return bool(objects)

    def list_dir(self, key: str) -> tuple[list[str], list[tuple[str, Stat]]]:
        prefix = self._k(key)
        dirs, objects = self.client.list(f"{prefix}/" if prefix else "")
        return dirs, [(self._rel(k), _stat(s)) for k, s in objects]

    def walk(self, key: str) -> list[tuple[str, Stat]]:
        """One LIST per 1,000 objects; kept while the lock is held (and updated by this run's writes).

        Writes this store made while the LIST was on the wire (other threads of the run) may be missing from
        its answer: what the store made under the lock is laid over it before it is kept. A listing during
        which kept listings were dropped (another process wrote a key, the hold changed) is not kept."""
        kept, dropped = self._listings.listing(key)
        if kept is not None:
            return kept
        prefix = self._k(key)
        _, objects = self.client.list(f"{prefix}/" if prefix else "", delimiter=False)
        found = {self._rel(k): _stat(s) for k, s in objects}
        self._listings.keep(key, found, dropped)
        return sorted(found.items())

    # -- writing --------------------------------------------------------------------------------------------

    def _check_fence(self) -> None:
        if self._fence is not None:
            self._fence()

    def put(self, key: str, data: bytes, *, create: bool = False, if_match: str | None = None,
            fenced: bool = True) -> str | None:
        if fenced:
            self._check_fence()
        # the fence again right before each attempt goes on the wire: a retry after a backoff, or a PUT of a
        # long batch, is never sent by a run that lost its lock meanwhile
        etag = self.client.put(self._k(key), data, if_none_match=create, if_match=if_match,
                               fence=self._fence if fenced else None)
        if etag is None:
            self._listings.forget(key)
            return None
        self._listings.note(key, _stat(self.client.written_stat(self._k(key)) or S3Stat(len(data), etag, time.time())))
        return etag

    def write_with(self, key: str, write: Callable[[Path], None]) -> None:
        """The file is written locally, then goes up in one PUT, which S3 applies whole or not at all. A local
        failure (the temp directory full or not writable) is a StorageError naming both places."""
        self._check_fence()
        try:
            with tempfile.TemporaryDirectory(prefix="dataengine-") as local:
                tmp = Path(local) / key.rsplit("/", 1)[-1]
                with atomic.native_os_errors():
                    write(tmp)
                data = tmp.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot write {self.describe(key)}: staging it in {tempfile.gettempdir()} failed: "
                               f"{exc.strerror or exc}") from None
        self.put(key, data)

    def place(self, staged: Sequence[Path], keys: Sequence[str]) -> None:
        self._check_fence()

        def one(i: int) -> None:
            try:
                data = staged[i].read_bytes()
            except OSError as exc:
                raise StorageError(f"cannot write {self.describe(keys[i])}: {staged[i]}: {exc.strerror or exc}") from None
            self.put(keys[i], data)

        self.each(one, range(len(keys)))

    def delete(self, key: str, *, if_match: str | None = None, fenced: bool = True) -> bool:
        if fenced:
            self._check_fence()
        done = self.client.delete(self._k(key), if_match=if_match, fence=self._fence if fenced else None)
        if done:
            self._listings.note(key, None)
        return done

    def link(self, key: str, target: str) -> None:
        """A server-side copy (no bytes move through this process; S3 bills it as one PUT). S3 has no
        create-only copy: an existing ``target`` is refused when this process knows of it (what it listed or
        wrote under the lock); version tables name files after the run that links them, so under the run lock
        no other process can have made one (a HEAD each would double a nightly run's requests). Outside the lock
        a HEAD asks."""
        self._check_fence()
        if not self._listings.keeping:
            there = self.stat(target) is not None
        else:
            known = self._listings.kept(target)
            there = known is not None and known[0] is not None
        if there:
            raise FileExistsError(17, "exists", self.describe(target))
        source = self.stat(key)
        if source is None or not self.client.copy(self._k(key), self._k(target), size=source.size, fence=self._fence):
            raise FileNotFoundError(2, "no such object", self.describe(key))
        found = self.client.written_stat(self._k(target))
        if found is not None:
            self._listings.note(target, _stat(found))
        else:
            self._listings.forget(target)

    def move(self, key: str, target: str) -> None:
        """A copy, then a delete (S3 has no rename)."""
        self.put(target, self.read(key))
        self.delete(key)

    def staging(self) -> Path:
        """Batches are staged in the local temp directory (nothing temporary is ever made in the bucket)."""
        return Path(tempfile.gettempdir())

    def remove_stale_temp_files(self, places: Iterator[tuple[str, tuple[str, ...]]]) -> int:
        return atomic.remove_dead_stages(self.staging())  # a PUT leaves nothing half-made in the bucket

    # -- the lock, the fence, the logs ---------------------------------------------------------------------

    def lock(self, key: str, command: str | None) -> LockBackend:
        return LeaseHolder(self, key, command, lease_seconds(), on_hold=self._note_holder)

    def _note_holder(self, lineage: dict[str, str], held: bool) -> None:
        """A lease was taken (``held``) or let go: commits name the outermost holder (:mod:`.commit_log`)."""
        with self._guard:
            if held:
                self._holders.append(lineage)
            elif lineage in self._holders:
                self._holders.remove(lineage)

    def _lineage(self) -> dict[str, str] | None:
        with self._guard:
            return self._holders[0] if self._holders else None

    def lock_holder(self, key: str) -> dict[str, Any] | None:
        return holder_status(self, key)

    def hold(self, fence: Callable[[], None] | None) -> Callable[[], None] | None:
        with self._guard:
            previous, self._fence = self._fence, fence
            self._listings.restart(keeping=fence is not None)
        return previous

    def log(self, key: str, what: str, *, fenced: bool = True) -> AppendLog:
        """S3 cannot append: ``metadata/coverage/x.jsonl`` becomes the commit objects under
        ``metadata/coverage/x/``."""
        return CommitLog(self, key.removesuffix(".jsonl"), what=what, fenced=fenced, lineage=self._lineage)

    # -- the root -------------------------------------------------------------------------------------------

    def check_root(self, *, writing: bool) -> bool:
        """The bucket must exist: a typo in its name is a one-line error, never a new bucket."""
        self.client.check_bucket()
        return False

    def check_write_access(self) -> None:
        """S3 answers whether a PUT is allowed only to a PUT: a refused one is a run's first write (exit 3)."""

    def create_marker(self, key: str, data: bytes) -> bool:
        """Create the marker with ``If-None-Match: *``, then try again: the service must refuse the second
        create. The lock and the commits rely on it; a service that ignores the condition (an old MinIO, some
        gateways) would let two runs write at once, so the store is refused there, once, when it is made."""
        if self.put(key, data, create=True, fenced=False) is None:
            return False  # another run created it just now
        if self.put(key, data, create=True, fenced=False) is not None:
            self.delete(key)
            raise StorageError(f"{self.url}: this S3 service ignores conditional writes (If-None-Match), which the "
                               "run lock and the coverage commits need; use a service that honours them (AWS S3 does)")
        return True

    # -- engines --------------------------------------------------------------------------------------------

    def local_path(self, key: str) -> Path | None:
        return None

    def read_parquet(self, key: str, **kwargs: Any) -> pl.DataFrame:
        """One object whole (one GET)."""
        import polars as pl

        return pl.read_parquet(io.BytesIO(self.read(key)), **kwargs)

    def parquet_metadata(self, key: str) -> pyarrow.parquet.FileMetaData:
        """A footer (one GET of the object; partitions are a few hundred KiB)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_metadata(pa.BufferReader(self.read(key)))

    def scan_parquet(self, keys: Sequence[str], **kwargs: Any) -> pl.LazyFrame:
        """Polars reads each object itself with the store's credentials: only the columns and row groups a
        query needs."""
        import polars as pl

        return pl.scan_parquet([self.describe(k) for k in keys], storage_options=self.polars_options(), **kwargs)

    def arrow_dataset(self, key: str, files: Sequence[str] | None = None, **kwargs: Any) -> pyarrow.dataset.Dataset:
        """What DuckDB scans a store on S3 through (DuckDB's own httpfs extension cannot be downloaded in every
        environment), with projections and filters pushed down."""
        import pyarrow.dataset as ds

        base = f"{self.bucket}/{self._k(key)}"
        if files is None:
            return ds.dataset(base, filesystem=self.arrow_filesystem(), **kwargs)
        return ds.dataset([f"{self.bucket}/{self._k(f)}" for f in files], filesystem=self.arrow_filesystem(),
                          partition_base_dir=base, **kwargs)

    def engine_options(self) -> dict[str, str] | None:
        return self.polars_options()

    def polars_options(self) -> dict[str, str]:
        """``storage_options`` for Polars (:mod:`.s3_engines`)."""
        return s3_engines.polars_options(self.client.credentials())

    def arrow_filesystem(self) -> pyarrow.fs.S3FileSystem:
        return s3_engines.arrow_filesystem(self.client.credentials())

    def each(self, work: Callable[[T], R], items: Sequence[T], *, local_threads: int = 1) -> list[R]:
        if len(items) < 2:
            return [work(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="s3") as pool:
            return list(pool.map(work, items))

    def request_counts(self) -> dict[str, int]:
        return self.client.request_counts()

    def unanswered_s(self) -> float:
        return self.client.watch.unanswered_s()

    def connection(self) -> dict[str, str]:
        return self.client.connection()
