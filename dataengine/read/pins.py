"""Which version a read sees: the one pinned (a number, the version current at a time, a tag), else the
latest. Every reader resolves it here once and then reads exactly that version's files, so a read never fails
and never mixes two runs while a run writes (committed files are never rewritten; a version's file list never
changes). A dataset with no version table yet (a store written before versions, untouched since) is read
from its directory as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from typing import TYPE_CHECKING

from dataengine.datasets import DatasetKey
from dataengine.errors import DamagedPartitionError, DataEngineError, UsageError
from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.storage.versions import (
    NoVersionAtError,
    Snapshot,
    VersionError,
    VersionTable,
    current_version,
    snapshot,
    tags,
)
from dataengine.storage.versions.log_entries import read_commit_info
from dataengine.timerange import NEW_YORK, as_typed, parse_iso_datetime

if TYPE_CHECKING:
    import polars as pl

# Computed at read time from the raw bars and the stored corporate actions (dataengine.actions); other kinds
# (spin-off, combinations) exist only as datasets stored with Alpaca's adjustment.
LOCAL_ADJUSTMENTS = ("split", "dividend", "all")


@dataclass(frozen=True)
class Pin:
    """A pinned version: ``version`` N, the version current at ``as_of`` (UTC), or the version ``tag`` names.
    ``as_of_text``: the time as the user gave it, for messages (never the UTC instant a day became)."""

    version: int | None = None
    as_of: datetime | None = None
    tag: str | None = None
    as_of_text: str | None = field(default=None, compare=False)

    @property
    def given(self) -> bool:
        return self.version is not None or self.as_of is not None or self.tag is not None

    def describe(self) -> str:
        if self.version is not None:
            return f"version {self.version}"
        if self.tag is not None:
            return f"tag {self.tag!r}"
        if self.as_of is None:
            return "the latest version"
        return f"as of {self.as_of_text or self.as_of.isoformat()}"

    def applied_to(self, dataset: str, pinned: str | None) -> Pin:
        """The pin that reads ``dataset`` in a statement pinned so: ``--version N`` pins the one dataset
        ``pinned``, and every other reads its latest; a time or a tag pins them all."""
        return self if self.version is None or dataset == pinned else Pin()

    def damaged(self, read: StorePath, reason: str, partition: StorePath, *,
                advice: str | None = None) -> DamagedPartitionError:
        """How every reader names a partition file it could not read: under a pin, the version's own file that
        was read (an older version's file is not the dataset's partition); otherwise the dataset's partition,
        as ``verify`` names it (the file read is a link of it, or a copy), with ``advice`` (default: repair it),
        unless the version's file is the one missing beside a partition that is there: then that file."""
        if self.given and read != partition:
            return DamagedPartitionError(read, f"{self.describe()}: {reason}", advice=OLDER_FILE_ADVICE)
        if read != partition and reason == MISSING and partition.is_file():  # not "data.parquet is missing"
            return DamagedPartitionError(read, reason, advice=advice)
        return DamagedPartitionError(partition, reason, advice=advice)


MISSING = "the file is missing"

# An older version's own file: repair mends the dataset and so the latest version, never the bytes an older
# version was committed with, so sending the user to repair it would go round in a circle.
OLDER_FILE_ADVICE = ("this version's copy was changed or removed after it was committed (a store's files are "
                     "replaced, never edited or deleted: a tool or the disk did this) and cannot be mended; "
                     "'dataengine verify --repair' mends the latest version only: read that, or another version")


# What messages call the three pins: the Python API's parameters, or the CLI's options (CLI_NAMES).
PIN_NAMES = ("version", "as_of", "tag")
CLI_NAMES = ("--version", "--as-of", "--tag")


def pin(version: int | None = None, as_of: str | date | datetime | None = None, tag: str | None = None, *,
        names: tuple[str, str, str] = PIN_NAMES) -> Pin:
    """A :class:`Pin` from what a user gives: at most one of them (UsageError otherwise, calling them ``names``).
    ``as_of``: an ISO datetime (without an offset: New York time) or a day (the end of that New York day)."""
    if sum(x is not None for x in (version, as_of, tag)) > 1:
        raise UsageError(f"give one of {names[0]}, {names[1]} and {names[2]}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise UsageError(f"{names[0]} must be a version number (0 or more), not {version!r}")
    if as_of is None:
        return Pin(version, None, tag)
    return Pin(version, _instant(as_of, names[1]), tag, as_of_text=_as_of_text(as_of))


def _as_of_text(value: str | date | datetime) -> str:
    """``as_of`` as given, saying in which zone it was read when it named none (a day, a naive time)."""
    text = as_typed(value)
    if isinstance(value, datetime):
        return text if value.tzinfo is not None else f"{text} New York time"
    if isinstance(value, date):
        return f"{text} New York time"
    try:
        named_zone = len(text) > 10 and parse_iso_datetime(text).tzinfo is not None
    except ValueError:
        named_zone = False
    return text if named_zone else f"{text} New York time"


def _instant(value: str | date | datetime, name: str) -> datetime:
    if not isinstance(value, str | date):  # a number, say: no time a version was made
        raise UsageError(f"{name} must be a date or datetime, or text YYYY-MM-DD or an ISO datetime, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = parse_iso_datetime(text) if len(text) > 10 else date.fromisoformat(text)
        except ValueError:
            raise UsageError(f"{name} {text[:40]!r} is not a date (YYYY-MM-DD) or an ISO datetime") from None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max, NEW_YORK)  # a day: everything committed on it counts
    if value.tzinfo is None:
        value = value.replace(tzinfo=NEW_YORK)
    return value.astimezone(timezone.utc)


def versioned_key(key: DatasetKey, root: StorePath | None = None) -> DatasetKey:
    """The dataset whose versions a read of ``key`` follows: bars adjusted at read time are the raw ones'
    (with ``root``: unless the store holds no raw dataset of that size, and the adjusted bars are read as
    stored, with Alpaca's adjustment)."""
    if key.adjustment not in LOCAL_ADJUSTMENTS:
        return key
    raw = DatasetKey(key.timeframe, "raw", key.source)
    if root is not None and not layout.dataset_dir(root, raw).is_dir() and layout.dataset_dir(root, key).is_dir():
        return key
    return raw


def resolve(root: StorePath, key: DatasetKey | str, chosen: Pin) -> Snapshot | None:
    """The version of a dataset a read sees; None for a dataset without versions (read its directory), which
    is an error when a version was pinned."""
    name = key if isinstance(key, str) else key.dirname
    table = VersionTable.of(root, name)
    if current_version(table) is None:
        if chosen.given:
            raise VersionError(f"{name} has no versions yet: {chosen.describe()} cannot be read "
                               "(a run of this version of dataengine makes the first)")
        return None
    try:
        return snapshot(table, version=chosen.version, as_of=chosen.as_of, tag=chosen.tag)
    except NoVersionAtError as exc:  # the time as typed, and the first as `dataengine versions` shows it
        raise NoVersionAtError(f"{name} had no version yet {chosen.describe()}: its first is from {utc_text(exc.first)}",
                               first=exc.first) from None


def recheck_pruned(root: StorePath, key: DatasetKey | str, chosen: Pin, error: DataEngineError) -> DataEngineError:
    """``error`` (a file of the version a pinned read resolved is missing or unreadable), unless that version
    has been pruned since the read resolved it: then what a read of it says now (``was pruned``), as a prune
    that ran between the two steps of a read took the file, not a tool or the disk."""
    if not chosen.given:
        return error
    try:
        resolve(root, key, chosen)
    except VersionError as exc:
        return exc
    return error


def utc_text(moment: datetime) -> str:
    """A version's time as ``dataengine versions`` shows it: UTC with its Z (a time without an offset is New
    York's) and to the millisecond the commit records, so given back as an as_of it pins that very version (cut
    to the second, a run committed in the second after another's would read as the version before)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def latest_version(root: StorePath, key: DatasetKey) -> int | None:
    """The number a backtest records: the latest version of the dataset ``key`` reads from."""
    return current_version(VersionTable.of(root, versioned_key(key, root).dirname))


def kept_actions(snap: Snapshot | None) -> tuple[str | None, str | None] | None:
    """The kept corporate-actions and dividend-closes files (store keys; None: there were none) a version was
    made with; None when it names none (a version made before they were kept, or no version): the current
    ones apply."""
    if snap is None:
        return None
    own = read_commit_info(snap.table, snap.version).get("dataengine") or {}
    if "actions_file" not in own:
        return None
    return own.get("actions_file"), own.get("closes_file")  # nothing known is also an answer


def actions_of(root: StorePath, snap: Snapshot | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The corporate actions and dividend closes a version was made with (the current ones when it names
    none: a version made before they were kept, or no version)."""
    return actions_from(root, kept_actions(snap))


def actions_from(root: StorePath, named: tuple[str | None, str | None] | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The corporate actions and dividend closes of kept files (see :func:`kept_actions`; None: the current)."""
    from dataengine.actions.schema import ACTION_SCHEMA
    from dataengine.actions.store import CLOSE_SCHEMA, ActionStore, CloseStore
    from dataengine.storage.store_files import read_table

    if named is None:
        return ActionStore(root).load(), CloseStore(root).load()
    actions, closes = named
    return (read_table(root.at(actions), ACTION_SCHEMA) if actions else _empty(ACTION_SCHEMA),
            read_table(root.at(closes), CLOSE_SCHEMA) if closes else _empty(CLOSE_SCHEMA))


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema=schema)


__all__ = ["CLI_NAMES", "LOCAL_ADJUSTMENTS", "Pin", "actions_from", "actions_of", "kept_actions", "latest_version", "pin",
           "recheck_pruned", "resolve", "versioned_key"]


def tags_named(root: StorePath, datasets: list[str], chosen: Pin) -> str:
    """`` (tags: a, b)``: the tags the store's datasets have, for a message that ``chosen``'s tag is nowhere
    (as ``read_bars`` and ``tag --delete`` name them); empty for a pin that is no tag."""
    if chosen.tag is None:
        return ""
    names = sorted({name for dataset in datasets for name in tags(VersionTable.of(root, dataset))})
    return f" (tags: {', '.join(names) or 'none'})"
