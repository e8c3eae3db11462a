"""The one storage interface: a :class:`Store` protocol with two implementations, a local directory
(:mod:`.local_store`: os, fsync, rename, flock) and a prefix on S3 (:mod:`.s3_store`: conditional PUTs,
commit objects, a lease), the way httpx has ``transport=``. :func:`open_store` is the one place a location
becomes a store; nothing above the two implementations asks which one it has.

Every module names what it reads and writes with a :class:`StorePath`: a key under the store's root, bound
to its store, with the part of :mod:`pathlib` the store uses (``/``, ``name``, ``parent``, ``read_bytes``,
``exists``, ...). What differs in *guarantees* is asked of the store by what it means, never by backend:

* :meth:`Store.put` replaces an object whole (a reader sees the old or the new one), ``create=True`` only if
  it is absent, ``if_match=TAG`` only if it is still the version read;
* :meth:`Store.write_with` and :meth:`Store.place` move files written locally (DuckDB writes to a path)
  into the store atomically;
* :meth:`Store.log` is an append-only log (a fsynced file; on S3 one object per commit);
* :meth:`Store.lock` is one writer per store (an OS lock; on S3 a lease);
* every write passes the store's **fence** first (:meth:`Store.hold`): a run that lost its lock writes
  nothing more, data or metadata, whoever asks for the write.

Keys are ``/``-separated and relative to the root (``equities_1min/symbol=AAPL/year=2024/month=01/
data.parquet``); :mod:`.layout` names every one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from dataengine.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow.dataset
    import pyarrow.parquet

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Stat:
    """What the store says of one object. ``tag`` names this version of it (S3's ETag; locally inode, size
    and mtime): it changes whenever the object is replaced, so caches keyed on it are never stale, and it is
    what :meth:`Store.put` and :meth:`Store.delete` take as ``if_match``. ``ino`` and ``mtime_ns`` are that
    identity as numbers (on S3 a hash of the ETag and 0: an object's time is not part of its identity there,
    a listing and a PUT answer name different instants); ``modified`` is when it was written (epoch seconds)."""

    size: int
    tag: str
    mtime_ns: int
    ino: int
    disk_bytes: int
    modified: float
    links: int = 1  # names sharing these bytes (local hard links): deleting one frees nothing while links > 1


class AppendLog(Protocol):
    """An append-only log of text lines. Appends are whole (a reader never sees half a commit) and, with the
    lock held, have one writer; :meth:`replace` makes a text the whole log (compaction)."""

    def lines(self) -> list[str]: ...

    def entries(self) -> list[tuple[str, str]]:
        """Every line with where it is (``FILE:LINE``, ``OBJECT:LINE``); bytes that are not UTF-8 are kept as
        surrogate escapes (never an error), a torn last line is left out."""
        ...

    def tail(self, commits: int) -> list[str]: ...

    def append(self, text: str, *, retry: bool = False) -> None: ...

    def replace(self, text: str) -> None: ...


class LockBackend(Protocol):
    """One run's hold on a store's lock (see :class:`~dataengine.storage.run_lock.RunLock`, which waits,
    names the holder and reports)."""

    def try_acquire(self) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        """(taken, the dead holder taken over, the live holder that refused us)."""
        ...

    def lost(self) -> str | None:
        """Why this run may no longer write, or None while it holds the lock."""
        ...

    def release(self, *, remove: bool = False) -> None:
        """Let the lock go; ``remove``: its file too, deleted while still held (a new store a refused run takes
        away: :func:`~dataengine.storage.store_root.unmake_store`). A lease's object always goes."""
        ...


class Store(Protocol):
    """A store's objects under one root. Thread-safe. A :class:`StorePath` calls these; see the module."""

    url: str  # the root as a user names it: an absolute directory or s3://bucket/prefix

    def describe(self, key: str) -> str: ...

    # -- reading --------------------------------------------------------------------------------------------

    def read(self, key: str, *, limit: int | None = None) -> bytes:
        """The object's bytes (only its first ``limit`` bytes, if given); FileNotFoundError when there is none."""
        ...

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """(bytes, tag) of the object, or None when there is none."""
        ...

    def stat(self, key: str) -> Stat | None: ...

    def stat_many(self, keys: Sequence[str]) -> list[Stat | None]:
        """:meth:`stat` of each key, in order, however the backend does it cheapest (a stat each locally; on
        S3 a listing of their common prefix, not a HEAD each)."""
        ...

    def is_dir(self, key: str) -> bool: ...

    def list_dir(self, key: str) -> tuple[list[str], list[tuple[str, Stat]]]:
        """(names of the "directories" right under ``key``, (key, stat) of the objects right under it)."""
        ...

    def walk(self, key: str) -> list[tuple[str, Stat]]:
        """(key, stat) of every object below ``key``, at any depth."""
        ...

    # -- writing (every write passes the fence) ---------------------------------------------------------------

    def put(self, key: str, data: bytes, *, create: bool = False, if_match: str | None = None,
            fenced: bool = True) -> str | None:
        """Replace the object whole; the new tag, or None when ``create`` found one already there or
        ``if_match`` found another version. ``fenced=False`` only for a record that cannot overwrite another
        run's (a run ledger record, which takes a fresh name)."""
        ...

    def write_with(self, key: str, write: Callable[[Path], None]) -> None:
        """Replace the object with the file ``write(path)`` writes to a local temp path, atomically."""
        ...

    def place(self, staged: Sequence[Path], keys: Sequence[str]) -> None:
        """Move each staged local file (from :meth:`staging`) over its key, each atomically."""
        ...

    def delete(self, key: str, *, if_match: str | None = None, fenced: bool = True) -> bool:
        """Remove the object (only if it is still version ``if_match``); False when that condition failed."""
        ...

    def move(self, key: str, target: str) -> None:
        """Move an object to another key, keeping it (a damaged partition set aside)."""
        ...

    def link(self, key: str, target: str) -> None:
        """Give the bytes of ``key`` a second name, ``target``, without rewriting them where ``key`` is named:
        a hard link locally (0 bytes; a copy across file systems), a server-side copy on S3. Raises
        FileNotFoundError without ``key``, and FileExistsError when ``target`` is known to exist: locally
        always (a link never replaces a name); on S3, which has no create-only copy, outside the lock a HEAD
        asks, but under the lock only a ``target`` this process wrote or listed since it took the lock is
        known, and one another process made may be replaced. So a caller names each target after something
        only it writes (version tables: the partition and the run id), never a name another writer may use."""
        ...

    def staging(self) -> Path:
        """A local directory for files written before :meth:`place` (same file system as the store, if local)."""
        ...

    def remove_stale_temp_files(self, places: Iterator[tuple[str, tuple[str, ...]]]) -> int:
        """Delete what writers that died mid-write left: in the staging area, and in these (directory key,
        target names) places where earlier versions wrote temp files (a lazy iterator: a store that never
        leaves temp files does not consume it)."""
        ...

    # -- the lock, the fence, the logs ---------------------------------------------------------------------

    def lock(self, key: str, command: str | None) -> LockBackend: ...

    def lock_holder(self, key: str) -> dict[str, Any] | None:
        """The record of the holder of the lock at ``key`` for display (``alive``: True, False or None)."""
        ...

    def hold(self, fence: Callable[[], None] | None) -> Callable[[], None] | None:
        """Call ``fence`` before every write from now on (it raises once this run lost the lock); None ends
        it. Returns the fence it replaces (locks nest). While held, listings may be kept: nobody else writes."""
        ...

    def log(self, key: str, what: str, *, fenced: bool = True) -> AppendLog:
        """The append-only log at ``key``; ``fenced=False`` for the run ledger (see :class:`.CommitLog`)."""
        ...

    # -- the root -------------------------------------------------------------------------------------------

    def check_root(self, *, writing: bool) -> bool:
        """Refuse a root that cannot be meant (exit 2); True when a writer would make a new store here."""
        ...

    def check_write_access(self) -> None:
        """Raise :class:`~dataengine.errors.StorageError` (exit 3) when a run could not write here, found out
        without writing anything (``doctor``): the store, or the directory a run would create it in, on a
        read-only file system or not writable by this process. What cannot be told without a write passes."""
        ...

    def create_marker(self, key: str, data: bytes) -> bool:
        """Create the store's marker if absent; False when it exists. Refuses a service that would let two
        writers both create one object (the lock depends on it)."""
        ...

    # -- engines --------------------------------------------------------------------------------------------

    def local_path(self, key: str) -> Path | None:
        """The file an engine can open directly, or None when the store is remote."""
        ...

    def engine_options(self) -> dict[str, str] | None:
        """``storage_options`` for engines that open :meth:`describe` URLs themselves (Polars, deltalake): the
        credentials and endpoint of a remote store; None for local files."""
        ...

    def read_parquet(self, key: str, **kwargs: Any) -> pl.DataFrame: ...

    def parquet_metadata(self, key: str) -> pyarrow.parquet.FileMetaData: ...

    def scan_parquet(self, keys: Sequence[str], **kwargs: Any) -> pl.LazyFrame: ...

    def arrow_dataset(self, key: str, files: Sequence[str] | None = None, **kwargs: Any) -> pyarrow.dataset.Dataset:
        """A pyarrow dataset of the directory ``key``, or of exactly ``files`` (keys below ``key``, which then
        is the base their Hive partition directories are read from)."""
        ...

    def each(self, work: Callable[[T], R], items: Sequence[T], *, local_threads: int = 1) -> list[R]:
        """``work`` on every item, results in order: ``local_threads`` at a time where each is a system call
        (more only for work that waits on the disk or releases the GIL), sixteen where each is a round trip."""
        ...

    def request_counts(self) -> dict[str, int]:
        """Requests this process sent to the store's service, by kind (what it bills); {} for local files."""
        ...

    def unanswered_s(self) -> float:
        """Seconds the store's service has left this process's requests unanswered (S3 not answering while its
        retries run); 0 when it answers, and always for local files."""
        ...

    def connection(self) -> dict[str, str]:
        """How the store is reached, as ``doctor`` shows it (S3: endpoint, region, where the credentials came
        from; never a secret); {} for local files."""
        ...


class StorePath:
    """A key under a store's root, bound to its store: the pathlib surface the modules use. Equal, hashable
    and ordered by (root, key), so dicts and sorts over paths work as with :class:`pathlib.Path`."""

    __slots__ = ("key", "store")

    def __init__(self, store: Store, key: str = "") -> None:
        self.store = store
        self.key = key.strip("/")

    # -- names ----------------------------------------------------------------------------------------------

    def __truediv__(self, name: str) -> StorePath:
        return StorePath(self.store, f"{self.key}/{name}" if self.key else str(name))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> StorePath:
        return StorePath(self.store, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    @property
    def root(self) -> StorePath:
        return StorePath(self.store)

    def relative_to(self, other: StorePath) -> str:
        if other.store is not self.store or not (self.key + "/").startswith(other.key + "/" if other.key else ""):
            raise ValueError(f"{self} is not under {other}")
        return self.key[len(other.key) :].lstrip("/")

    def at(self, key: str) -> StorePath:
        """Another key of the same store (a key a listing returned)."""
        return StorePath(self.store, key)

    def __str__(self) -> str:
        return self.store.describe(self.key)

    def __repr__(self) -> str:
        return f"StorePath({str(self)!r})"

    def __fspath__(self) -> str:
        """A local store's paths open like files (Polars, DuckDB, ``open``); a remote store's fail loudly, so a
        local-only call never writes into ``./s3:/...``."""
        local = self.local
        if local is None:
            raise TypeError(f"{self} is not a local file")
        return str(local)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorePath) and (self.store.url, self.key) == (other.store.url, other.key)

    def __lt__(self, other: StorePath) -> bool:
        return (self.store.url, self.key) < (other.store.url, other.key)

    def __hash__(self) -> int:
        return hash((self.store.url, self.key))

    @property
    def local(self) -> Path | None:
        """The local file an engine can open, or None on a remote store."""
        return self.store.local_path(self.key)

    # -- I/O ------------------------------------------------------------------------------------------------

    def read_bytes(self) -> bytes:
        return self.store.read(self.key)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Replace the object whole, atomically (fenced)."""
        self.store.put(self.key, data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def stat(self) -> Stat:
        found = self.store.stat(self.key)
        if found is None:
            raise FileNotFoundError(2, "no such file", str(self))
        return found

    def is_file(self) -> bool:
        return self.store.stat(self.key) is not None

    def is_dir(self) -> bool:
        return self.store.is_dir(self.key)

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def unlink(self, missing_ok: bool = True) -> None:
        self.store.delete(self.key)

    def listdir(self) -> list[str]:
        """Names right under this directory (sub-directories and objects); [] when there is nothing."""
        dirs, files = self.store.list_dir(self.key)
        return dirs + [key.rsplit("/", 1)[-1] for key, _ in files]

    def iterdir(self) -> Iterator[StorePath]:
        return (self / name for name in self.listdir())

    def subdirs(self) -> list[str]:
        return self.store.list_dir(self.key)[0]

    def walk(self) -> list[tuple[StorePath, Stat]]:
        """Every object below this directory, at any depth, with its stat."""
        return [(self.at(key), stat) for key, stat in self.store.walk(self.key)]


# A URI: any scheme followed by //, or a known storage scheme with a typo after it (s3:/bucket). Two letters or
# more, so a Windows drive letter (C:) is not one; a local directory named "my:store" stays allowed.
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(//)?")
_STORAGE_SCHEMES = {"s3", "s3a", "s3n", "gs", "gcs", "az", "abfs", "abfss", "adl", "file", "http", "https", "hdfs", "r2"}


def open_store(location: str | Path | StorePath, *, create: bool = False) -> StorePath:
    """The root of the store at ``location`` (a local directory, or ``s3://bucket/prefix``): the one place a
    backend is chosen. ``create``: the location is the default nobody typed, whose parents may be made. Any
    other URI, or a malformed S3 URL, is a ConfigError (exit 2); nothing is read or written here."""
    if isinstance(location, StorePath):
        return location.root
    if isinstance(location, Path):
        from dataengine.storage.local_store import LocalStore

        return StorePath(LocalStore(location.expanduser(), create_parents=create))
    text = location.strip()
    if not text:  # never the current directory: Settings.location names where an empty one was set
        raise ConfigError("the storage dir is empty (an unset variable?); give a directory or s3://bucket/prefix")
    scheme = _URI_SCHEME.match(text)
    if scheme and scheme.group(1) == "s3" and scheme.group(2):
        from dataengine.storage.s3_store import S3Store

        return StorePath(S3Store.from_url(text))
    if scheme and (scheme.group(2) or scheme.group(1).lower() in _STORAGE_SCHEMES):
        # Path() would turn gs://bucket/x into the local directory ./gs:/bucket/x and write a whole store there.
        raise ConfigError(
            f"storage dir {text!r}: {scheme.group(1)}: not a supported store; use a local directory or "
            "s3://bucket/prefix (nothing was written)"
        )
    if not text:
        raise ConfigError("storage dir is empty (an unset variable?); give a directory or s3://bucket/prefix")
    return open_store(Path(text), create=create)
