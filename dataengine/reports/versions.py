"""What versions a store keeps, and the two things a user does with them: pin one (a tag) and prune the old.

The versions themselves are :mod:`dataengine.storage.versions` (a Delta Lake table per dataset); this module
answers per dataset, takes the run lock for the writes (a tag, a prune), and shapes what the CLI shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dataengine.datasets import DatasetKey
from dataengine.read.pins import versioned_key
from dataengine.storage import layout
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import StorePath
from dataengine.storage.versions import (
    VersionError,
    VersionTable,
    current_version,
    history,
    prune,
    snapshot,
    tag,
    tags,
    untag,
)
from dataengine.storage.versions.log_entries import list_log
from dataengine.storage.versions.retention import pruned_before, was_pruned


def table_of(root: StorePath, key: DatasetKey) -> VersionTable:
    """The version table of the dataset ``key`` reads from (adjusted-at-read bars: the raw dataset's)."""
    return VersionTable.of(root, versioned_key(key, root).dirname)


def versions_report(root: StorePath, key: DatasetKey, *, limit: int | None = None) -> dict[str, Any]:
    """``{"dataset", "delta_path", "current", "versions": [...]}``, newest first: per version its number,
    time, run id, what made it (reason, command, source, feed, adjustment, asof, dataengine version), the
    partitions and rows it changed, its tags, whether it can still be read (``readable``: false once a
    prune took its files; a tagged version never is) and what a repair that rebuilt it named by guess
    (``inferred``, e.g. ``["actions_file"]``). ``delta_path`` is what other engines open."""
    table = table_of(root, key)
    before = pruned_before(table)
    entries = [{
        "version": info.version, "timestamp": info.timestamp.isoformat(), "run_id": info.run_id,
        "reason": info.reason, "command": info.provenance.get("command"), "partitions": info.partitions,
        "rows_added": info.rows_added, "rows_removed": info.rows_removed, "rows_changed": info.rows_changed,
        "tags": list(info.tags), "readable": not was_pruned(info.version, before, tagged=bool(info.tags)),
        **{k: info.provenance.get(k) for k in ("source", "feed", "adjustment", "asof", "dataengine_version")},
        "inferred": _inferred(info.provenance),
    } for info in history(table, limit=limit)]
    return {"dataset": table.dataset, "delta_path": table.uri, "current": current_version(table),
            "kept_bytes": kept_bytes(root, table.dataset), "versions": entries}


def _inferred(provenance: dict[str, Any]) -> list[str]:
    """What a commit rebuilt by ``verify --repair`` names by guess (its corporate-actions files, when nothing
    left in the store told which the lost commit named): adjusted reads of it may use the version before's."""
    rebuilt = provenance.get("rebuilt")
    inferred = rebuilt.get("inferred") if isinstance(rebuilt, dict) else None
    return [str(key) for key in inferred] if isinstance(inferred, list) else []


def kept_bytes(root: StorePath, dataset: str) -> int:
    """Bytes of bars only older versions hold, the same figure on every store: the table's files the current
    version does not name (locally also none another name links to: deleting it would free nothing). The
    current version's own files are not counted: a prune cannot free them (locally they are hard links of
    the partitions, 0 bytes; on S3 copies, as many bytes again as the dataset). Nor are its log and
    dataengine's bookkeeping in it."""
    tables = layout.versions_dir(root, dataset)
    table = VersionTable.of(root, dataset)
    current = {root.at(f.path).key for f in snapshot(table).files()} if current_version(table) is not None else set()
    return sum(st.disk_bytes for path, st in tables.walk() if st.links == 1 and path.key not in current
               and not {"_delta_log", "_dataengine"} & set(path.relative_to(tables).split("/")))


def pin_version(root: StorePath, key: DatasetKey, name: str, version: int | None, *, wait: bool = False,
                timeout: float | None = None) -> int:
    """Tag ``version`` (default: the latest) of the dataset as ``name``, under the run lock; the version."""
    with RunLock(root, wait=wait, timeout=timeout, command=f"dataengine tag {name}"):
        return tag(table_of(root, key), name, version)


def unpin_version(root: StorePath, key: DatasetKey, name: str, *, wait: bool = False, timeout: float | None = None) -> int:
    """Remove tag ``name`` of the dataset, under the run lock; the version it pinned (prunable from now on, once
    older than the window). An unknown tag is a :class:`VersionError` naming the dataset's tags."""
    with RunLock(root, wait=wait, timeout=timeout, command=f"dataengine tag {name} --delete"):
        return untag(table_of(root, key), name)


@dataclass
class PruneReport:
    """What a prune did, per dataset: files deleted, bytes freed, the versions still readable."""

    keep_days: float
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def bytes_freed(self) -> int:
        return sum(int(d["bytes_freed"]) for d in self.datasets.values())

    def asdict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_freed": self.bytes_freed}


def prune_versions(root: StorePath, keys: list[DatasetKey] | None, keep_days: float, *, wait: bool = False,
                   timeout: float | None = None) -> PruneReport:
    """Remove what only unpinned versions older than ``keep_days`` reference (the latest version and tagged
    ones are never pruned), for ``keys`` (default: every dataset with versions), under the run lock."""
    report = PruneReport(keep_days)
    names = sorted({versioned_key(k, root).dirname for k in keys}) if keys else layout.dataset_names(root)
    with RunLock(root, wait=wait, timeout=timeout, command="dataengine versions --prune"):
        for name in names:
            table = VersionTable.of(root, name)
            if current_version(table) is None:
                continue
            done = prune(table, keep_days)
            report.datasets[name] = {"files_deleted": done.files_deleted, "bytes_freed": done.bytes_freed,
                                     "versions_dropped": done.versions_dropped,
                                     "kept_versions": list(done.kept_versions), "oldest_kept": done.oldest_kept}
    return report


def kept_summary(root: StorePath, *, with_bytes: bool = False) -> list[dict[str, Any]]:
    """Per dataset with versions: how many versions it keeps, the current one and its tags; ``with_bytes``
    also the bytes only its older versions hold (:func:`kept_bytes`: a walk of the table)."""
    out = []
    for name in layout.dataset_names(root):
        table = VersionTable.of(root, name)
        listing = list_log(table)
        if listing.latest is None:
            continue
        entry: dict[str, Any] = {"dataset": name, "current": listing.latest, "versions": len(listing.commits),
                                 "tags": tags(table)}
        if with_bytes:
            entry["kept_bytes"] = kept_bytes(root, name)
        out.append(entry)
    return out


__all__ = ["PruneReport", "VersionError", "kept_summary", "pin_version", "prune_versions", "table_of",
           "unpin_version", "versions_report"]
