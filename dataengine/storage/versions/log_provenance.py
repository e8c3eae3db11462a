"""Which corporate-actions files a rebuilt commit names when its ``commitInfo`` (its first line) is lost, for
:mod:`.log_repair`.

A version names the immutable copies of ``actions.parquet`` and ``closes.parquet`` current when it was committed
(``metadata/versions/_corporate_actions/actions-<tag digest>.parquet``, kept by the first commit of any table
that named that content; never deleted). The names say which content, not which run, and no ledger records
them, so what a lost commit named is read from the evidence below, per file, and used only where it is
certain:

1. the first readable commit after it names the same file as the version before: so did it (a content once
   replaced never comes back: locally the tag is a new inode, on S3 new bytes);
2. no kept file of that kind was made between the version before and the next readable commit, other than ones
   earlier commits named: it named the version before's (a new content is kept no later than the commit naming
   it, and after the version before, which would have named it otherwise);
3. the run whose files it added (its adds are named after it) committed in another dataset's table too: it
   named the same files there (a run's ``corporate-actions`` versions of the other raw datasets, or
   ``actions --update``'s, name what its own commit named);
4. it is its table's last commit, no run of the store is pending, every other commit of the store reads whole
   and exactly one of those new kept files is named by no commit: it is the one the lost commit kept.

Otherwise it cannot be known (say the lost commit introduced new actions and a later run of the same dataset
named them too): the version before's files are named and listed in ``rebuilt.inferred``, which ``verify
--repair`` says. The one case rule 4 takes wrongly: new actions stored after the lost commit whose own version
was never written (a run that died between keeping them and committing, on no marker: ``record_actions``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from dataengine.errors import DataEngineError
from dataengine.storage import layout
from dataengine.storage.versions.commit import pending_runs
from dataengine.storage.versions.files import StoreFiles
from dataengine.storage.versions.log_entries import LogListing, list_log, read_commit_info
from dataengine.storage.versions.model import VersionTable
from dataengine.storage.versions.restore import LOCAL_SLACK_S, S3_SLACK_S

KINDS = {"actions_file": layout.ACTIONS_FILE, "closes_file": layout.CLOSES_FILE}
Info = dict[str, Any]


def lost_actions(table: VersionTable, listing: LogListing, version: int, runs: set[str]
                 ) -> tuple[dict[str, str | None], list[str]]:
    """The corporate-actions files (``actions_file``, ``closes_file``) commit ``version`` named, its commitInfo
    lost; ``runs``: the runs its added files are named after. Also the keys that could not be told (the version
    before's named instead: ``rebuilt.inferred``)."""
    earlier = _info(table, version - 1) if version > 0 else None
    after = next(((v, info) for v, info in _infos(table, [c for c in listing.commits if c > version])
                  if info is not None), None)
    kept = _kept(table)
    named: dict[str, str | None] = {}
    inferred: list[str] = []
    scan: _Store | None = None
    for key, file_name in KINDS.items():
        prev = _value(earlier, key)
        if after is not None and not _unsure(after[1], key) and after[1].get(key) == prev and not _unsure(earlier, key):
            named[key] = prev  # rule 1
            continue
        lo = -math.inf if earlier is None or prev is None or earlier.get("reason") == "adopt" \
            else int(earlier.get("timestamp", 0)) / 1000 - _slack(table)
        hi = math.inf if after is None else int(after[1].get("timestamp", 0)) / 1000 + _slack(table)
        new = {path for path, modified in kept.get(file_name, {}).items() if lo < modified <= hi} - {prev}
        if new:
            new -= {_value(info, key) for _, info in _infos(table, [c for c in listing.commits if c < version - 1])}
        if not new and not _unsure(earlier, key):
            named[key] = prev  # rule 2
            continue
        scan = scan or _Store(table, version)
        told = scan.by_runs(key, runs, lo, hi) if len(runs) == 1 else None  # rule 3
        if told is None and version == listing.latest and scan.whole(key):
            unnamed = new - scan.named(key)
            told = (next(iter(unnamed)),) if len(unnamed) == 1 else None  # rule 4
        if told is not None:
            named[key] = told[0]
        else:
            named[key] = prev
            inferred.append(key)
    return named, inferred


class _Store:
    """Every other readable commit of the store's version tables, and whether any is lost or a run pending."""

    def __init__(self, table: VersionTable, version: int) -> None:
        self.infos: list[Info] = []
        self.lost = False  # a commit that cannot be read, or a run pending: what either named is unknown
        for other in _tables(table):
            commits = list_log(other).commits
            self.lost |= bool(pending_runs(other))
            for _, info in _infos(other, [c for c in commits if other.path != table.path or c != version]):
                if info is None:
                    self.lost = True
                else:
                    self.infos.append(info)

    def by_runs(self, key: str, runs: set[str], lo: float, hi: float) -> tuple[str | None] | None:
        """What the commits of these runs in other tables named between ``lo`` and ``hi`` (epoch seconds: the
        lost commit's neighbours; a run's other versions follow its own commit at once), if they agree."""
        found = {_value(info, key) for info in self.infos if info.get("run_id") in runs and not _unsure(info, key)
                 and lo < int(info.get("timestamp", 0)) / 1000 <= hi}
        return (found.pop(),) if len(found) == 1 else None

    def whole(self, key: str) -> bool:
        return not self.lost and not any(_unsure(info, key) for info in self.infos)

    def named(self, key: str) -> set[str | None]:
        return {_value(info, key) for info in self.infos}


def _tables(table: VersionTable) -> Iterator[VersionTable]:
    """Every version table of the store, this one too (:class:`StoreFiles` only: others have no store)."""
    yield table
    if not isinstance(table.files, StoreFiles):
        return
    root = table.files.root
    kept = layout.kept_actions_dir(root).name
    for name in layout.versions_dir(root).subdirs():
        other = VersionTable.of(root, name, clock=table.clock)
        if name != kept and other.path != table.path:
            yield other


def _kept(table: VersionTable) -> dict[str, dict[str, float]]:
    """Per file name (``actions.parquet``), its kept copies' store keys and when each was written (locally a
    hard link of the file as it was: when that content was written; on S3 a copy: when it was kept)."""
    if not isinstance(table.files, StoreFiles):
        return {}
    out: dict[str, dict[str, float]] = {}
    for path, stat in layout.kept_actions_dir(table.files.root).walk():
        for file_name in KINDS.values():
            if path.name.startswith(file_name.removesuffix(".parquet") + "-"):
                out.setdefault(file_name, {})[path.key] = stat.modified
    return out


def _infos(table: VersionTable, versions: list[int]) -> Iterator[tuple[int, Info | None]]:
    for number in versions:
        yield number, _info(table, number)


def _info(table: VersionTable, version: int) -> Info | None:
    """A commit's ``commitInfo`` with its ``dataengine`` entries and time; None when it cannot be read."""
    try:
        info = read_commit_info(table, version)
    except DataEngineError:
        return None
    own = info.get("dataengine")
    return {**own, "timestamp": info.get("timestamp", 0)} if isinstance(own, dict) else None


def _value(info: Info | None, key: str) -> str | None:
    value = (info or {}).get(key)
    return value if isinstance(value, str) else None


def _unsure(info: Info | None, key: str) -> bool:
    """The commit's ``key`` is a rebuilt commit's guess, or the commit cannot be read."""
    if info is None:
        return True
    rebuilt = info.get("rebuilt")
    return isinstance(rebuilt, dict) and key in (rebuilt.get("inferred") or ())


def _slack(table: VersionTable) -> float:
    """A kept file's time against a commit's: file system rounding locally, the S3 server's clock on S3."""
    return LOCAL_SLACK_S if table.files.storage_options is None else S3_SLACK_S


__all__ = ["lost_actions"]
