"""The values of the version API (what goes in, what comes out), the table handle, and the one place that
names files inside a version table."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from dataengine.errors import StorageError, UsageError
from dataengine.storage import layout
from dataengine.storage.versions.files import StoreFiles, VersionFiles

if TYPE_CHECKING:
    from dataengine.storage.store import StorePath

Reason = Literal["run", "refetch-after-corporate-action", "repair", "adopt", "corporate-actions"]
REASONS: tuple[str, ...] = ("run", "refetch-after-corporate-action", "repair", "adopt", "corporate-actions")
PARTITION_COLUMNS = ("symbol", "year", "month")
TABLES_DIR = f"{layout.METADATA_DIR}/{layout.VERSIONS_DIR}"  # one Delta table per dataset under it
DATA_FILE = "data.parquet"  # a partition's file in the dataset directory
OWN_DIR = "_dataengine"  # tags, pending runs, prune horizon: beside _delta_log, ignored by Delta readers

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")  # no ".": it separates a re-link's attempt number
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class VersionError(UsageError):
    """A version, timestamp or tag that does not exist (or no longer does), or a bad tag name (exit 2)."""


class NoVersionAtError(VersionError):
    """A time before a dataset's first version. ``first``: when that version was committed (UTC), so a reader
    can word the error with the time as its user typed it."""

    def __init__(self, message: str, *, first: datetime) -> None:
        super().__init__(message)
        self.first = first


class TagInUseError(VersionError):
    """Tagging a version with a name that pins another one (a tag never moves). ``tag``, ``pinned``: the name and
    the version it pins, so a caller can say how to remove it (the CLI names its command)."""

    def __init__(self, message: str, *, tag: str, pinned: int) -> None:
        super().__init__(message)
        self.tag, self.pinned = tag, pinned


class VersionConflictError(StorageError):
    """Another writer committed the version this one was about to write (two writers without the run lock)."""


class DamagedLogError(StorageError):
    """A file of a version table's Delta log cannot be read (cut short, bytes flipped, emptied, missing from the
    middle of the log) by something other than dataengine: a disk, a sync tool, a hand. ``path`` is its store
    key; ``dataengine verify`` names it, ``verify --repair`` rebuilds it (exit 3 until then, like any damaged
    metadata file)."""

    def __init__(self, uri: str, path: str, detail: str) -> None:
        super().__init__(f"damaged version log file {uri} ({' '.join(detail.split())[:160]}): "
                         "run 'dataengine verify --repair'")
        self.path = path
        self.detail = detail


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dataengine")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class VersionTable:
    """Where a dataset's version table lives and how to reach it. Immutable; cheap to build per call.

    ``files`` is the store (:class:`~.files.StoreFiles`), ``dataset`` the dataset
    directory's name (``equities_1min``), ``path`` the table directory (default ``metadata/versions/{dataset}``),
    ``clock`` the time every commit, tag and prune reads (the test seam), ``checkpoint_interval`` how many
    commits a Delta checkpoint is written after.
    """

    files: VersionFiles
    dataset: str
    path: str = ""
    dataset_path: str = ""
    clock: Callable[[], datetime] = utc_now
    checkpoint_interval: int = 10

    def __post_init__(self) -> None:
        if not self.path:
            object.__setattr__(self, "path", f"{TABLES_DIR}/{self.dataset}")
        if not self.dataset_path:
            object.__setattr__(self, "dataset_path", self.dataset)

    @classmethod
    def of(cls, root: StorePath, dataset: str, **kwargs: Any) -> VersionTable:
        """The table of ``dataset`` in the store at ``root`` (a local directory or a prefix on S3)."""
        return cls(StoreFiles(root), dataset, **kwargs)

    @property
    def uri(self) -> str:
        """What other engines open: ``pl.scan_delta(table.uri, version=N)``, ``DeltaTable(table.uri)``."""
        return self.files.uri(self.path)

    @property
    def app_id(self) -> str:
        """The Delta ``txn`` application id of this table's runs."""
        return self.dataset

    def now(self) -> datetime:
        return self.clock()


@dataclass(frozen=True)
class PartitionFile:
    """A partition a run changed: its key and its data file in the dataset (store-relative), or ``path=None``
    for a partition that is gone. ``size``/``rows`` when the caller knows them (saves a stat; rows feed history),
    ``sha256`` the digest of its bytes when the writer computed it (:mod:`dataengine.storage.digests`)."""

    symbol: str
    year: int
    month: int
    path: str | None
    size: int | None = None
    rows: int | None = None
    sha256: str | None = None

    @property
    def key(self) -> str:
        return partition_dir(self.symbol, self.year, self.month)


@dataclass(frozen=True)
class Provenance:
    """What made a version: recorded in its commit (``commitInfo.dataengine``) and shown by :func:`history`."""

    run_id: str
    reason: Reason = "run"
    source: str = "alpaca"
    feed: str | None = None
    adjustment: str | None = None
    asof: str | None = None
    command: str | None = None
    dataengine_version: str = field(default_factory=_package_version)
    # the corporate actions and dividend closes known when the version was made (immutable copies in the
    # store), so adjusted reads of this version give the same numbers after a new split is stored
    actions_file: str | None = None
    closes_file: str | None = None

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if self.reason not in REASONS:
            raise UsageError(f"unknown version reason {self.reason!r} (one of {', '.join(REASONS)})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunTicket:
    """A run's claim on its next version (:func:`begin_run`): ``txn`` is the Delta transaction version its
    commit carries, so the same commit retried is recognised and lands once."""

    run_id: str
    txn: int


@dataclass(frozen=True)
class CommitResult:
    """What :func:`commit_run` did. ``version`` is None when nothing changed (no version is made)."""

    version: int | None
    partitions: int = 0
    rows_added: int | None = 0
    rows_removed: int | None = 0
    already_committed: bool = False
    recovered_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionFile:
    """A file of a version: its partition, store-relative ``path``, ``uri`` to open, ``size`` and ``rows``."""

    symbol: str
    year: int
    month: int
    path: str
    uri: str
    size: int
    rows: int | None


@dataclass(frozen=True)
class VersionInfo:
    """One entry of :func:`history`."""

    version: int
    timestamp: datetime
    run_id: str | None
    reason: str | None
    partitions: int | None
    rows_added: int | None
    rows_removed: int | None
    provenance: dict[str, Any]
    tags: tuple[str, ...] = ()

    @property
    def rows_changed(self) -> int | None:
        """Net rows this version added (negative: removed), when every file's row count is known."""
        if self.rows_added is None or self.rows_removed is None:
            return None
        return self.rows_added - self.rows_removed


# -- names inside a table ------------------------------------------------------------------------------


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise UsageError(f"run id {run_id[:40]!r} cannot name a version file (letters, digits, '_' and '-' only)")
    return run_id


def check_tag_name(name: str) -> str:
    if not _TAG.match(name):
        raise VersionError(f"tag {name[:40]!r}: use letters, digits, '_', '.' and '-' (up to 100)")
    return name


def partition_dir(symbol: str, year: int, month: int) -> str:
    """``symbol=AAPL/year=2024/month=01``: the Hive directories of a partition, as in the dataset directory
    (Polars' ``scan_delta`` fills the partition columns from them)."""
    return f"symbol={symbol}/year={year:04d}/month={month:02d}"


def version_file(key: str, run_id: str, attempt: int = 0) -> str:
    """The table-relative name of a partition's file as committed by ``run_id``: the partition and the run,
    never a content hash alone (two symbols with equal bytes stay two files)."""
    return f"{key}/{run_id}.parquet" if attempt == 0 else f"{key}/{run_id}.{attempt}.parquet"


def run_of(path: str) -> str:
    """The run id a version file is named after (see :func:`version_file`)."""
    name = path.rsplit("/", 1)[-1].removesuffix(".parquet")
    head, _, tail = name.rpartition(".")
    return head if head and tail.isdigit() else name


def parse_partition(path: str) -> tuple[str, int, int] | None:
    """(symbol, year, month) of ``symbol=S/year=Y/month=M/<file>``, or None."""
    parts = path.split("/")
    if len(parts) != 4:
        return None
    sym, year, month = parts[0], parts[1], parts[2]
    if not (sym.startswith("symbol=") and year.startswith("year=") and month.startswith("month=")):
        return None
    try:
        y, m = int(year[5:]), int(month[6:])
    except ValueError:
        return None
    return (sym[7:], y, m) if len(sym) > 7 and 1 <= m <= 12 else None


def encode_path(path: str) -> str:
    """A table-relative path as the Delta log holds it (a URI path: RFC 2396 escaping)."""
    return quote(path, safe="/=._-~")


def decode_path(path: str) -> str:
    return unquote(path) if "%" in path else path
