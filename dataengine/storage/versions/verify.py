"""Is the latest version whole? :func:`check` (for ``verify``) and :func:`mend` (for ``verify --repair``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from dataengine.storage import digests
from dataengine.storage.versions.commit import dataset_drift, link_changes, pending_runs, write_version
from dataengine.storage.versions.log import read_state
from dataengine.storage.versions.log_entries import list_log
from dataengine.storage.versions.model import (
    DATA_FILE,
    PartitionFile,
    Provenance,
    VersionTable,
    parse_partition,
    partition_dir,
)


@dataclass(frozen=True)
class Problem:
    """A file a version names that is missing (``actual_size`` None) or has another size than recorded."""

    symbol: str
    year: int
    month: int
    path: str
    expected_size: int
    actual_size: int | None

    def __str__(self) -> str:
        found = "missing" if self.actual_size is None else f"{self.actual_size} bytes, {self.expected_size} recorded"
        return f"{self.path}: {found}"


@dataclass(frozen=True)
class MendResult:
    """What :func:`mend` did: the version it made (None: none needed), partitions re-linked from the dataset,
    partitions dropped (gone from the dataset too), and problems it could not mend (the dataset's file is the
    damaged file itself: repair the dataset, then mend again)."""

    version: int | None
    relinked: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unresolved: tuple[Problem, ...] = ()


def check(table: VersionTable, version: int | None = None) -> list[Problem]:
    """Every file of ``version`` (default: the latest) that is missing or not its recorded size. No file is
    opened: a stat of each (on S3, a listing)."""
    state = read_state(table, version)
    if state is None:
        return []
    prefix = table.path + "/"
    files = list(state.files.iter_rows())
    found = table.files.stat_many([prefix + path for path, _, _ in files])
    problems = []
    for (path, size, _), info in zip(files, found, strict=True):
        actual = info.size if info is not None else None
        if actual != size:
            parsed = parse_partition(path)
            assert parsed is not None
            problems.append(Problem(*parsed, prefix + path, size, actual))
    return sorted(problems, key=lambda p: p.path)


COMPARE_BUDGET = 64 << 20  # bytes a check reads to tell a copied file from a replaced one, per dataset


class Unrecorded(NamedTuple):
    held: list[PartitionFile]  # the dataset's partition files the latest version does not hold
    uncompared: int  # how many more were not compared (past the byte budget)
    pending: bool  # a run's marker was pending when the listing began (with no run alive: a killed run's files)
    # files of their version file's size whose bytes are not the digest it recorded: damage, not a replacement
    # (a copied store's file rotted or changed in place: the version's copy may still hold the committed bytes)
    altered: list[PartitionFile] = []  # noqa: RUF012 - a NamedTuple default, never mutated


def unrecorded(table: VersionTable, *, runs_alive: bool = True, budget: int = COMPARE_BUDGET) -> Unrecorded:
    """The dataset's partition files the latest version does not hold, how many more were not compared, and
    whether a run's marker was pending (so a caller words its message without listing the markers again).

    A file is not held when it was replaced or added outside a run (by hand, a sync tool) or written by a run
    that ended without committing (killed): a pinned read of the latest version would not read it. None before
    the first version, and none while a run's marker is pending and ``runs_alive`` (a run holds the store, or
    that cannot be told): that run's commit takes its files in. With ``runs_alive`` False a pending marker is a
    dead run's, and its files are listed. A run that begins (or commits) while the dataset is listed hides
    the listing's files: they are its own. A partition gone from the dataset is not listed: verify's partition
    check names it, and a repair fetches it again.

    A copy of the store (cp -r, rsync without -H, a restore) makes each hard link a file of its own, so every
    partition looks replaced: a file of its version file's size is compared with the digest its commit recorded
    (or, without one, byte for byte with the version's file), up to ``budget`` bytes read; past it, the rest are counted, not compared (a repair records them as a version, after which
    the check is a stat again)."""
    before = set(pending_runs(table))
    if runs_alive and before:
        return Unrecorded([], 0, True)
    state = read_state(table)
    if state is None:
        return Unrecorded([], 0, bool(before))
    drift = [change for change in dataset_drift(table, state) if change.path is not None]
    if drift and (set(pending_runs(table)) - before or list_log(table).latest != state.version):
        # a run began, or began and committed, while the dataset was listed: its files are its own
        return Unrecorded([], 0, True)
    named = state.by_key(change.key for change in drift)
    held: list[PartitionFile] = []
    altered: list[PartitionFile] = []
    uncompared = 0
    for change in drift:
        version_file = named.get(change.key)
        if version_file is None or change.size != version_file[1]:
            held.append(change)
            continue
        sha256 = state.digest_of(version_file[0])  # recorded: only the dataset's file is read, and hashed
        cost = version_file[1] if sha256 is not None else 2 * version_file[1]
        if budget < cost:
            uncompared += 1
            continue
        budget -= cost
        if sha256 is not None:
            (ours,) = table.files.read_many([str(change.path)])
            if ours is not None and digests.of_bytes(ours) != sha256:
                altered.append(change)
                continue
            same = ours is not None
        else:
            ours, theirs = table.files.read_many([str(change.path), f"{table.path}/{version_file[0]}"])
            same = ours is not None and ours == theirs
        if not same:
            held.append(change)
    return Unrecorded(held, uncompared, bool(before), altered)


def mend(table: VersionTable, provenance: Provenance) -> MendResult:
    """Make the latest version whole again: each bad file is replaced by a link of the partition's current
    dataset file, or dropped when the dataset has none; one new version (reason as ``provenance`` says,
    normally ``repair``). Older versions that named a lost file stay as they are: history is not rewritten."""
    problems = check(table)
    if not problems:
        return MendResult(None)
    changes, relinked, removed, unresolved = [], [], [], []
    for problem in problems:
        key = partition_dir(problem.symbol, problem.year, problem.month)
        source = f"{table.dataset_path}/{key}/{DATA_FILE}"
        info = table.files.stat(source)
        if info is None:
            changes.append(PartitionFile(problem.symbol, problem.year, problem.month, path=None))
            removed.append(key)
            continue
        damaged = table.files.stat(problem.path)
        if damaged is not None and damaged.fingerprint == info.fingerprint:
            unresolved.append(problem)  # one file under two names: the dataset's copy is damaged as well
            continue
        changes.append(PartitionFile(problem.symbol, problem.year, problem.month, path=source, size=info.size))
        relinked.append(key)
    state = read_state(table)
    result = write_version(table, link_changes(table, provenance.run_id, changes, state), provenance, state)
    return MendResult(result.version, tuple(relinked), tuple(removed), tuple(unresolved))
