"""Pins and retention: tags name versions that are never pruned; :func:`prune` deletes the files that only
unpinned versions older than the window name (Delta's vacuum, honouring tags).

Both live in ``_dataengine/`` beside ``_delta_log`` (Delta readers ignore ``_`` directories): ``tags.json``
(name -> version) and ``pruned.json`` (the oldest version still whole, so reading a pruned one is a clear
error instead of a missing file). Each is replaced whole and atomically. Run both under the run lock.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dataengine.errors import DamagedPartitionError
from dataengine.storage.versions.commit import pending_runs
from dataengine.storage.versions.log import read_state
from dataengine.storage.versions.log_entries import LOG_DIR, list_log, read_commit, read_commit_info
from dataengine.storage.versions.model import OWN_DIR, TagInUseError, VersionError, VersionTable, check_tag_name, run_of
from dataengine.storage.versions.verify import check


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did: files deleted, bytes freed on the store (0 for a hard link the dataset still
    holds), the versions still readable (pinned older ones, then every one from ``oldest_kept``)."""

    files_deleted: int
    bytes_freed: int
    kept_versions: tuple[int, ...]
    oldest_kept: int | None
    versions_dropped: int = 0  # versions this prune made unreadable (untagged, before ``oldest_kept``)


def tags(table: VersionTable) -> dict[str, int]:
    """Every tag and the version it pins."""
    return {name: int(entry["version"]) for name, entry in _read(table, "tags.json").items()}


def tag(table: VersionTable, name: str, version: int | None = None) -> int:
    """Pin ``version`` (default: the latest) as ``name``; returns the version. A tag never moves: tagging
    another version with a name in use is a :class:`TagInUseError` (untag it first); the same one again is a no-op."""
    check_tag_name(name)
    listing = list_log(table)
    if listing.latest is None:
        raise VersionError(f"{table.dataset} has no versions to tag yet")
    version = listing.latest if version is None else version
    if version not in listing.commits:
        raise VersionError(f"version {version} of {table.dataset} does not exist (versions 0..{listing.latest})")
    check_not_pruned(table, version)
    entries = _read(table, "tags.json")
    lost = check(table, version) if name not in entries else []
    if lost:  # a tag pins a backtest to this version: one whose reads fail would only say so later
        raise DamagedPartitionError(
            table.files.uri(lost[0].path), f"version {version} of {table.dataset} cannot be read whole: {len(lost)} file(s) missing or "
            f"resized, this one {'missing' if lost[0].actual_size is None else 'resized'}",
            advice="not tagged; tag a version that reads whole ('dataengine verify --all-versions' names what each "
                   "lacks; 'dataengine verify --repair' mends the latest)")
    if name in entries:
        if int(entries[name]["version"]) == version:
            return version
        pinned = int(entries[name]["version"])
        raise TagInUseError(f"tag {name!r} pins version {pinned} already; untag it first", tag=name, pinned=pinned)
    entries[name] = {"version": version, "created": table.now().isoformat()}
    _write(table, "tags.json", entries)
    return version


def untag(table: VersionTable, name: str) -> int:
    """Remove tag ``name``; returns the version it pinned (prunable from now on, if old enough)."""
    entries = _read(table, "tags.json")
    if name not in entries:
        raise VersionError(f"no tag {name!r} on {table.dataset} (tags: {', '.join(sorted(entries)) or 'none'})")
    version = int(entries.pop(name)["version"])
    _write(table, "tags.json", entries)
    return version


def tagged_version(table: VersionTable, name: str) -> int:
    pins = tags(table)
    if name not in pins:
        known = ", ".join(sorted(pins)) or "none"
        raise VersionError(f"no tag {name!r} on {table.dataset} (tags: {known})")
    return pins[name]


def pruned_before(table: VersionTable) -> int:
    """Versions below this number were pruned (those with a tag excepted, see :func:`was_pruned`)."""
    return int(_read(table, "pruned.json").get("before", 0))


def was_pruned(version: int, before: int, *, tagged: bool) -> bool:
    """Whether a prune took ``version``'s files: below the horizon ``before`` (:func:`pruned_before`) and not
    pinned by a tag. The one rule a pinned read and the versions listing both apply."""
    return version < before and not tagged


def check_not_pruned(table: VersionTable, version: int) -> None:
    horizon = _read(table, "pruned.json")
    before = int(horizon.get("before", 0))
    if was_pruned(version, before, tagged=version in tags(table).values()):
        raise VersionError(f"version {version} of {table.dataset} was pruned ({horizon.get('at', '?')}): "
                           f"versions before {before} are kept only when tagged")


def prune(table: VersionTable, keep_days: float, *, now: datetime | None = None) -> PruneResult:
    """Delete the table files that no version worth keeping names: keep the latest version, every version
    that was current at some time in the last ``keep_days`` days before ``now`` (default: the table's
    clock), and every tagged version. Untracked files (links of a run that died before committing) go too,
    except those of a run still marked as pending."""
    listing = list_log(table)
    if listing.latest is None:
        return PruneResult(0, 0, (), None)
    cutoff_ms = int(((now or table.now()) - timedelta(days=keep_days)).timestamp() * 1000)
    commits = list(listing.commits)
    times = [int(read_commit_info(table, v).get("timestamp", 0)) for v in commits]
    oldest = commits[max(bisect.bisect_right(times, cutoff_ms) - 1, 0)]  # the version current at the cutoff
    pinned = sorted(v for v in set(tags(table).values()) if v < oldest)
    keep = _files_named(table, oldest, listing.latest)
    for version in pinned:
        keep |= _files_named(table, version, version)
    pending = set(pending_runs(table))
    deleted = freed = 0
    prefix = table.path + "/"
    for info in table.files.list(table.path):
        rel = info.path[len(prefix):]
        if not _is_data_file(rel) or rel in keep or run_of(rel) in pending:
            continue
        freed += table.files.delete(info.path)
        deleted += 1
    horizon = _read(table, "pruned.json")
    before = int(horizon.get("before", 0))
    dropped = sum(1 for v in commits if before <= v < oldest and v not in pinned)
    if oldest > before:
        _write(table, "pruned.json", {"before": oldest, "at": (now or table.now()).isoformat()})
    return PruneResult(deleted, freed, (*pinned, *range(oldest, listing.latest + 1)), oldest, dropped)


def _files_named(table: VersionTable, first: int, last: int) -> set[str]:
    """Every table-relative path some version in ``first..last`` names: the files of ``first``, plus what
    each later commit adds."""
    state = read_state(table, first)
    names = set(state.files["path"]) if state is not None else set()
    for version in range(first + 1, last + 1):
        names.update(path for path, _, _ in read_commit(table, version).adds)
    return names


def _is_data_file(rel: str) -> bool:
    head = rel.split("/", 1)[0]
    return rel.endswith(".parquet") and head not in (LOG_DIR, OWN_DIR) and not rel.rsplit("/", 1)[-1].startswith(".")


def _read(table: VersionTable, name: str) -> dict[str, Any]:
    try:
        data = json.loads(table.files.read(f"{table.path}/{OWN_DIR}/{name}"))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(table: VersionTable, name: str, data: dict[str, Any]) -> None:
    text = json.dumps(dict(sorted(data.items())), indent=1) + "\n"
    table.files.put(f"{table.path}/{OWN_DIR}/{name}", text.encode())
