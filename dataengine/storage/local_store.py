"""A store in a local directory: the :class:`~dataengine.storage.store.Store` of files.

Every replacement is a temp file in the store's staging directory (same file system, outside every dataset
directory), fsynced, renamed over its target with ``os.replace`` and the directory fsynced
(:mod:`.atomic`); a conditional create is a hard link, which fails when the name exists. The lock is an OS
advisory lock (:mod:`.flock_lock`); append-only logs are files appended with one fsynced write
(:mod:`.file_log`). Engines open the files directly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mode
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dataengine.errors import StorageError, UsageError
from dataengine.storage import atomic, local_listing, process_identity
from dataengine.storage.file_log import FileLog
from dataengine.storage.flock_lock import FlockBackend, read_holder_file
from dataengine.storage.local_listing import stat_of
from dataengine.storage.store import AppendLog, LockBackend, Stat

if TYPE_CHECKING:
    import polars as pl
    import pyarrow.dataset
    import pyarrow.parquet

T = TypeVar("T")
R = TypeVar("R")

# where every write is staged (the store's own file system, so a rename moves it into place) and where a torn
# log tail is kept: named here, under metadata/, as the layout module documents
STAGING_KEY = "metadata/staging"
FSYNC_THREADS = 8  # fsyncs of one batch in flight at once (they wait on the disk, not on the CPU)
SYNC_FILE_SYSTEM_FROM = 32  # from this many files a batch is made durable by syncfs, not an fsync each
TORN_KEY = "metadata/torn"


class LocalStore:
    """A store rooted at a local directory. ``create_parents``: the root is the default location nobody
    typed (the platform's user data dir), whose missing parents are no typo and are made by the first write."""

    def __init__(self, root: Path, *, create_parents: bool = False) -> None:
        self.root = Path(os.path.abspath(root))
        self.url = str(self.root)
        self.create_parents = create_parents
        self._fence: Callable[[], None] | None = None

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def describe(self, key: str) -> str:
        return str(self._path(key))

    # -- reading --------------------------------------------------------------------------------------------

    def read(self, key: str, *, limit: int | None = None) -> bytes:
        try:
            with open(self._path(key), "rb") as handle:
                return handle.read() if limit is None else handle.read(limit)
        except IsADirectoryError:
            raise FileNotFoundError(2, "a directory, not a file", self.describe(key)) from None

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        try:
            with open(self._path(key), "rb") as handle:
                return handle.read(), stat_of(os.fstat(handle.fileno())).tag
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def stat(self, key: str) -> Stat | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {self.describe(key)}: {exc.strerror or exc}") from None
        return stat_of(st) if stat_mode.S_ISREG(st.st_mode) else None

    def stat_many(self, keys: Sequence[str]) -> list[Stat | None]:
        return [self.stat(key) for key in keys]  # ~5 µs each

    def is_dir(self, key: str) -> bool:
        return self._path(key).is_dir()

    def list_dir(self, key: str) -> tuple[list[str], list[tuple[str, Stat]]]:
        return local_listing.list_dir(self._path(key), f"{key}/" if key else "")

    def walk(self, key: str) -> list[tuple[str, Stat]]:
        return local_listing.walk(self.root, self._path(key))

    # -- writing --------------------------------------------------------------------------------------------

    def _check_fence(self) -> None:
        if self._fence is not None:
            self._fence()

    def staging(self) -> Path:
        path = self._path(STAGING_KEY)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cannot_write_here(exc) from None
        return path

    def _cannot_write_here(self, exc: OSError) -> StorageError:
        return StorageError(f"cannot write to {self.url}: {exc.strerror or exc}")

    def put(self, key: str, data: bytes, *, create: bool = False, if_match: str | None = None,
            fenced: bool = True) -> str | None:
        if fenced:
            self._check_fence()
        target = self._path(key)
        try:
            if if_match is not None:
                # Local writers are serialised by the run lock: a check then a replace is enough here.
                current = self.stat(key)
                if current is None or current.tag != if_match:
                    return None
            if create:
                return self._create(target, data)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes_atomic(target, data, temp_dir=self.staging())
            return stat_of(os.stat(target)).tag
        except OSError as exc:
            raise _cannot_write(target, exc) from None

    def _create(self, target: Path, data: bytes) -> str | None:
        """Create ``target`` with ``data`` only if no file has its name: the data is written and fsynced
        under a temp name, then hard-linked to the target (a link never replaces an existing name). None
        when the name exists; StorageError naming ``target`` when it cannot be written. The temp file is in
        the staging area, or beside the target when that is on another file system (a mount in the store)."""
        staging = self.staging()
        tmp = atomic.temp_path(target, staging)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if os.stat(target.parent).st_dev != os.stat(staging).st_dev:
                tmp = atomic.temp_path(target)
            tmp.write_bytes(data)
            atomic.fsync_path(tmp)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return None
            atomic.fsync_path(target.parent)
            return stat_of(os.stat(target)).tag
        except OSError as exc:  # a full disk, no permission, a read-only mount, a file where a directory goes
            raise _cannot_write(target, exc) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def write_with(self, key: str, write: Callable[[Path], None]) -> None:
        self._check_fence()
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_atomic(target, write, temp_dir=self.staging())
        except OSError as exc:
            raise _cannot_write(target, exc) from None

    def place(self, staged: Sequence[Path], keys: Sequence[str]) -> None:
        """Make the staged files durable, rename each over its target, then make the renames durable: every
        file is on disk before the first rename makes any of them visible. A large batch (a page of daily bars:
        ~480 files) takes one syncfs before the renames and one after; a small one (a page of minute bars: a
        partition or two) fsyncs each file, then each target directory, a few at a time so the file system
        commits its journal once for them all."""
        self._check_fence()
        targets = [self._path(key) for key in keys]
        # The renames below succeed only within one file system, so the staging directory's is the targets'.
        staging = staged[0].parent if staged else self._path(STAGING_KEY)
        whole = len(staged) >= SYNC_FILE_SYSTEM_FROM and atomic.sync_file_system(staging)
        if not whole:
            self._fsync_each(list(staged), dict(zip(staged, targets, strict=True)))
        made: set[Path] = set()
        for source, target in zip(staged, targets, strict=True):
            try:
                if target.parent not in made:  # one mkdir per directory, not per file of a batch
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                os.replace(source, target)
            except OSError as exc:
                raise _cannot_write(target, exc) from None
        if not (whole and atomic.sync_file_system(staging)):
            self._fsync_each(sorted({target.parent for target in targets}), {})

    def _fsync_each(self, paths: list[Path], named_as: dict[Path, Path]) -> None:
        """fsync ``paths`` a few at a time; a failure is StorageError naming the file (its target, for a staged
        one) and the system's reason, and nothing after it is placed."""
        try:
            self.each(atomic.fsync_path, paths, local_threads=FSYNC_THREADS)
        except OSError as exc:
            failed = Path(exc.filename) if exc.filename else paths[0]
            raise _cannot_write(named_as.get(failed, failed), exc) from None

    def delete(self, key: str, *, if_match: str | None = None, fenced: bool = True) -> bool:
        if fenced:
            self._check_fence()
        if if_match is not None:
            current = self.stat(key)
            if current is not None and current.tag != if_match:
                return False
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {self.describe(key)}: {exc.strerror or exc}") from None
        return True

    def move(self, key: str, target: str) -> None:
        self._check_fence()
        destination = self._path(target)
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(key), destination)
        except OSError as exc:
            raise _cannot_write(destination, exc, f"cannot move {self.describe(key)} to") from None

    def link(self, key: str, target: str) -> None:
        """A hard link (0 bytes); across file systems, or where links are refused, a copy under a temp name
        linked onto ``target``, so an existing ``target`` is never replaced. Links are not fsynced one by one
        (500 directory fsyncs would cost a nightly commit seconds): the commit that names them is, which on
        ext4 and XFS journals the metadata before it. FileExistsError and FileNotFoundError as the protocol
        says; any other failure (a full disk, no permission, a read-only mount, a file where a directory
        goes) is a StorageError naming ``target``."""
        self._check_fence()
        source, destination = self._path(key), self._path(target)
        for attempt in (1, 2):
            try:
                os.link(source, destination)
                return
            except FileExistsError:
                raise
            except FileNotFoundError:  # no source, or no parent directory yet
                if attempt == 2 or not source.exists():
                    raise
                try:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # FileExistsError here is a file in the way, not the target
                    raise _cannot_write(destination, exc) from None
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise _cannot_write(destination, exc) from None
                try:
                    data = source.read_bytes()
                except FileNotFoundError:
                    raise
                except OSError as error:
                    raise StorageError(f"cannot read {source}: {error.strerror or error}") from None
                if self._create(destination, data) is None:
                    raise FileExistsError(errno.EEXIST, "exists", str(destination)) from None
                return

    def remove_stale_temp_files(self, places: Iterator[tuple[str, tuple[str, ...]]]) -> int:
        """Only names :mod:`.atomic` makes, only for the targets named, and only when their writer is dead:
        a user's ``.notes.tmp`` or an editor's swap file is never touched."""
        removed = atomic.remove_dead_stages(self._path(STAGING_KEY))
        for directory, targets in places:
            path = self._path(directory)
            try:
                names = os.listdir(path)
            except OSError:
                continue
            for name in names:
                pid, target = atomic.temp_owner_pid(name), atomic.temp_target(name)
                if pid is None or target is None or process_identity.pid_alive(pid) or not _is_our_target(target, targets):
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(path / name)
                    removed += 1
        return removed

    # -- the lock, the fence, the logs ---------------------------------------------------------------------

    def lock(self, key: str, command: str | None) -> LockBackend:
        return FlockBackend(self._path(key), command)

    def lock_holder(self, key: str) -> dict[str, Any] | None:
        return read_holder_file(self._path(key))

    def hold(self, fence: Callable[[], None] | None) -> Callable[[], None] | None:
        previous, self._fence = self._fence, fence
        return previous

    def log(self, key: str, what: str, *, fenced: bool = True) -> AppendLog:
        return FileLog(self._path(key), self._path(TORN_KEY), fence=self._check_fence if fenced else None,
                       staging=self.staging)

    # -- the root -------------------------------------------------------------------------------------------

    def check_root(self, *, writing: bool) -> bool:
        """A root that cannot be meant: the root of a file system, a home directory itself, a path whose parent
        is missing (a typo; unless it is the default location), a file."""
        path = self.root
        if not path.exists():
            if not writing:
                return False
            if not self.create_parents and not path.parent.is_dir():
                raise UsageError(f"storage dir {path}: its parent directory {path.parent} does not exist (a typo?)")
            return True
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a symlink loop, a permission problem
            raise UsageError(f"storage dir {path}: cannot be resolved ({exc})") from None
        if resolved == Path(resolved.anchor):
            raise UsageError(f"refusing to use {path} as a store: it is the root of a file system; pass --storage-dir DIR "
                             "(storage_dir= from Python)")
        if resolved == Path.home().resolve():
            raise UsageError(f"refusing to use your home directory {path} as a store; pass a directory inside it")
        if not path.is_dir():
            raise UsageError(f"storage dir {path} is a file, not a directory")
        return False

    def check_write_access(self) -> None:
        """Asks the OS (access(2)) of the root, or of the nearest directory above it that exists (a new store's
        first write creates the rest): the error names the root as a write there would (``staging``)."""
        path = self.root
        while not path.exists() and path.parent != path:
            path = path.parent
        if os.access(path, os.W_OK | os.X_OK):
            return
        # access(2) says no without saying why: a read-only mount denies even root, a permission only others
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        code = errno.EROFS if read_only else errno.EACCES
        where = "" if path == self.root else f"{path}: "
        raise self._cannot_write_here(OSError(code, where + os.strerror(code)))

    def create_marker(self, key: str, data: bytes) -> bool:
        return self.put(key, data, create=True, fenced=False) is not None

    # -- engines --------------------------------------------------------------------------------------------

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def engine_options(self) -> dict[str, str] | None:
        return None

    def read_parquet(self, key: str, **kwargs: Any) -> pl.DataFrame:
        import polars as pl

        return pl.read_parquet(self._path(key), **kwargs)

    def parquet_metadata(self, key: str) -> pyarrow.parquet.FileMetaData:
        import pyarrow.parquet as pq

        return pq.read_metadata(self._path(key))

    def scan_parquet(self, keys: Sequence[str], **kwargs: Any) -> pl.LazyFrame:
        import polars as pl

        return pl.scan_parquet([self._path(key) for key in keys], **kwargs)

    def arrow_dataset(self, key: str, files: Sequence[str] | None = None, **kwargs: Any) -> pyarrow.dataset.Dataset:
        import pyarrow.dataset as ds

        if files is None:
            return ds.dataset(str(self._path(key)), **kwargs)
        return ds.dataset([str(self._path(f)) for f in files], partition_base_dir=str(self._path(key)), **kwargs)

    def each(self, work: Callable[[T], R], items: Sequence[T], *, local_threads: int = 1) -> list[R]:
        if local_threads <= 1 or len(items) < 2:
            return [work(item) for item in items]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=local_threads, thread_name_prefix="store") as pool:
            return list(pool.map(work, items))

    def request_counts(self) -> dict[str, int]:
        return {}

    def unanswered_s(self) -> float:
        return 0.0

    def connection(self) -> dict[str, str]:
        return {}


def _cannot_write(path: Path, exc: OSError, what: str = "cannot write") -> StorageError:
    """The one line a failed write is: the path and the system's reason (``No space left on device``)."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError) and exc.filename and Path(exc.filename) != path:  # mkdir of a parent
        reason = f"{exc.filename} is a file, not a directory"
    return StorageError(f"{what} {path}: {reason}")


def _is_our_target(target: str, patterns: tuple[str, ...]) -> bool:
    """``target`` is one of ``patterns`` (a leading ``*`` matches any name with that ending)."""
    return any(target == p or (p.startswith("*") and target.endswith(p[1:]) and len(target) > len(p) - 1) for p in patterns)

