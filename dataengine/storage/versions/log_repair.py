"""Is a version table's Delta log whole? :func:`check_log` (for ``verify``) and :func:`mend_log` (for ``verify
--repair``), for log files something other than dataengine damaged: a disk, a sync tool, a hand.

Every commit is read whole (a commit of dataengine's must also hold as many actions as its ``commitInfo``
counts, so one cut at a line's end is caught too), the newest checkpoint is read, and deltalake's
``_last_checkpoint`` hint must name a checkpoint that is there.

Repair never moves a version's number (a pinned number or a tag keeps meaning the same files) and never
deletes: a damaged file is copied to ``aside`` (the repair's quarantine directory) before anything replaces it.

* A damaged **checkpoint** (or hint) only costs readers speed, since every commit is kept: it is set aside and
  a new checkpoint of the latest version written.
* A damaged or missing **commit** N is written again at N with the files version N named, from what the table
  itself still says, oldest damaged commit first:

  - its readable lines (``commitInfo``, so the run and provenance are kept; ``txn``; each ``add`` and
    ``remove`` still readable): exact for each partition they name;
  - each partition a later commit changed: that commit's ``remove`` names the file N had (exact);
  - every other partition: from a readable checkpoint at or after N if there is one (exact); else the
    table's file holding the dataset's current file (the same inode locally, the same ETag on S3), which is
    what N named as long as every run since committed; else (the dataset changed since without a commit, or
    lost the partition) the file of version N-1, and the next commit (``verify --repair`` makes one) takes the
    change in, as it does for a run that died before its commit.

  Row counts the rebuilt commit cannot know are left out of its ``add`` statistics (Delta allows that); when
  its ``commitInfo`` is lost too, the rebuilt one says ``reason: repair``, the time just after version N-1,
  what the dataset is (source, feed, adjustment, asof) as N-1 said, and the corporate-actions files N named
  where the store still tells (:mod:`.log_provenance`), else N-1's, listed in ``rebuilt.inferred``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from dataengine.storage.versions import log, log_write
from dataengine.storage.versions.commit import _commit_info, checkpoint, pending_runs
from dataengine.storage.versions.log import forget, read_checkpoint, read_state
from dataengine.storage.versions.log_entries import (
    LAST_CHECKPOINT,
    LogListing,
    Salvaged,
    checkpoint_name,
    commit_name,
    list_log,
    log_path,
    parse_commit,
    read_commit_info,
    salvage_commit,
)
from dataengine.storage.versions.log_provenance import lost_actions
from dataengine.storage.versions.model import (
    DATA_FILE,
    DamagedLogError,
    Provenance,
    VersionTable,
    parse_partition,
    partition_dir,
    run_of,
)

Entry = tuple[str, int, "int | None"]  # a version's file of a partition: table-relative path, size, rows


@dataclass(frozen=True)
class LogProblem:
    """A file of the log that cannot be read: a commit (``version``), a checkpoint, or the checkpoint hint."""

    path: str  # store key
    detail: str
    kind: str  # commit | checkpoint | hint
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.path}: damaged version log ({self.detail})"


def check_log(table: VersionTable) -> list[LogProblem]:
    """Every damaged or missing commit, the newest checkpoint if damaged, and a hint that names none."""
    listing = list_log(table)
    if listing.latest is None:
        return []
    problems = []
    present = set(listing.commits)
    for version in range(listing.commits[0], listing.latest + 1):
        if version not in present:
            path = log_path(table, commit_name(version))
            problems.append(LogProblem(path, "missing from the middle of the log", "commit", version))
    paths = [log_path(table, commit_name(v)) for v in listing.commits]
    for version, path, data in zip(listing.commits, paths, table.files.read_many(paths), strict=True):
        try:
            parse_commit(table, version, data if data is not None else b"")
        except DamagedLogError as exc:
            problems.append(LogProblem(path, exc.detail, "commit", version))
    newest = max((c for c in listing.checkpoints if c <= listing.latest), default=None)
    if newest is not None:
        try:
            read_checkpoint(table, newest)
        except DamagedLogError as exc:
            problems.append(LogProblem(exc.path, exc.detail, "checkpoint", newest))
    hint = _hint_problem(table, listing)
    if hint:
        problems.append(LogProblem(log_path(table, LAST_CHECKPOINT), hint, "hint"))
    return sorted(problems, key=lambda p: p.path)


def mend_log(table: VersionTable, provenance: Provenance, aside: str) -> list[str]:
    """Rebuild every damaged commit, set damaged checkpoints aside and write a new one (see the module); what
    was done, one line each. Damaged files are copied under ``aside`` (a store key) first. Under the run lock."""
    notes = []
    problems = check_log(table)
    for problem in [p for p in problems if p.kind == "commit"]:
        assert problem.version is not None
        notes.append(rebuild_commit(table, problem.version, provenance, aside))
    hints = [p for p in problems if p.kind in ("checkpoint", "hint")]
    for problem in hints:
        _set_aside(table, problem.path, aside)
        table.files.delete(problem.path)
    if hints:
        hint = log_path(table, LAST_CHECKPOINT)
        if table.files.stat(hint) is not None:  # it may name a checkpoint just set aside: deltalake would fail
            _set_aside(table, hint, aside)
            table.files.delete(hint)
        forget(table)
        checkpoint(table)
        notes += [f"{p.path}: set aside ({p.detail}); a new checkpoint of the latest version written" for p in hints]
    forget(table)
    return notes


def rebuild_commit(table: VersionTable, version: int, provenance: Provenance, aside: str) -> str:
    """Write commit ``version`` again with the files that version named (see the module for the evidence, in
    order); the damaged file is copied under ``aside`` first. One line saying what was done."""
    listing = list_log(table)
    path = log_path(table, commit_name(version))
    try:
        raw: bytes | None = table.files.read(path)
    except FileNotFoundError:
        raw = None
    found = salvage_commit(raw or b"")
    forget(table)
    prev = _by_key(read_state(table, version - 1, listing)) if version > 0 else {}
    base, later, rows, sha256 = _later_evidence(table, listing, version, found)
    files = dict(base) if base is not None else _from_lines_and_dataset(table, prev, found, set(later))
    for key, entry in later.items():
        if entry is None:
            files.pop(key, None)
        else:
            files[key] = entry
    removes = [old for key, old in sorted(prev.items()) if files.get(key, (None,))[0] != old[0]]
    adds = [(p, s, r if r is not None else rows.get(p)) for key, (p, s, r) in sorted(files.items())
            if prev.get(key, (None,))[0] != p]
    kept = f"{aside}/{path}" if raw is not None else None
    data, inferred = _commit_bytes(table, listing, version, found, provenance, adds, removes, kept, sha256)
    if raw is not None:
        _set_aside(table, path, aside, raw)
    table.files.put(path, data)
    forget(table)
    source = "a checkpoint after it" if base is not None else "the dataset"
    guessed = (f"; which corporate-actions files it named cannot be told: version {version - 1}'s are named, marked "
               f"inferred ({', '.join(inferred)})" if inferred else "")
    return (f"{path}: rebuilt ({len(adds)} add, {len(removes)} remove actions) from its readable lines, the "
            f"commits after it and {source}{guessed}; the damaged file is kept in {aside}/{path}")


# -- the evidence ----------------------------------------------------------------------------------------


def _later_evidence(table: VersionTable, listing: LogListing, version: int, found: Salvaged
                    ) -> tuple[dict[str, Entry] | None, dict[str, Entry | None], dict[str, int | None], dict[str, str]]:
    """(the files of a readable checkpoint at or after ``version``, or None; per partition a commit after
    ``version`` (up to that checkpoint, else the latest) changed, the file the first of them removed (None: it
    only added); the row counts these commits know of, by path; the digests the commit's readable lines and that
    checkpoint recorded, by path: a rebuilt commit keeps them, or its files could no longer be told apart from
    changed bytes)."""
    base: dict[str, Entry] | None = None
    sha256 = dict(found.sha256)
    end = listing.latest or version
    for candidate in sorted(c for c in listing.checkpoints if version <= c <= end):
        try:
            state = read_checkpoint(table, candidate)
        except DamagedLogError:
            continue
        base = _by_key(state)
        sha256 = {**dict(state.sha256.iter_rows()), **sha256}
        end = candidate
        break
    later: dict[str, Entry | None] = {}
    rows: dict[str, int | None] = {p: r for p, _, r in found.adds.values()}
    present = set(listing.commits)
    paths = [log_path(table, commit_name(v)) for v in range(version + 1, end + 1) if v in present]
    for data in table.files.read_many(paths):
        commit = salvage_commit(data or b"")
        rows.update({p: r for p, _, r in commit.adds.values()})
        for key in commit.touched:
            if key not in later:
                old = commit.removes.get(key)
                later[key] = (old[0], old[1] if old[1] is not None else _size(table, old[0]), None) if old else None
    return base, later, rows, sha256


def _from_lines_and_dataset(table: VersionTable, prev: dict[str, Entry], found: Salvaged, later: set[str]
                            ) -> dict[str, Entry]:
    """The files of version N for the partitions no commit after it changed (``later`` are those that one did),
    when no checkpoint says (see the module): what its readable lines say (an ``add``; a ``remove`` alone only
    when every line was read), else the table's file named after N's run (its ``commitInfo`` read), else the
    table's file that holds the dataset's current file, else version N-1's file unless a readable ``remove``
    says N replaced it."""
    prefix, dataset_prefix = table.path + "/", table.dataset_path + "/"
    current: dict[str, str] = {}
    for info in table.files.list(table.dataset_path):
        rel = info.path[len(dataset_prefix):]
        parsed = parse_partition(rel) if rel.endswith("/" + DATA_FILE) else None
        if parsed is not None:
            current[partition_dir(*parsed)] = info.fingerprint
    run = str(((found.info or {}).get("dataengine") or {}).get("run_id") or "")
    dead = set(pending_runs(table))  # links of runs that never committed name no version
    twins: dict[str, list[tuple[str, int]]] = {}
    own: dict[str, list[tuple[str, int]]] = {}  # the files named after version N's run: its adds
    for info in table.files.list(table.path):
        rel = info.path[len(prefix):]
        key = rel.rsplit("/", 1)[0]
        if parse_partition(rel) is None:
            continue
        if run and run_of(rel) == run:
            own.setdefault(key, []).append((rel, info.size))
        if current.get(key) == info.fingerprint and run_of(rel) not in dead:
            twins.setdefault(key, []).append((rel, info.size))
    files: dict[str, Entry] = {}
    for key in sorted((set(prev) | set(current) | found.touched) - later):
        if key in found.adds:
            files[key] = found.adds[key]
            continue
        removed = found.removes.get(key)
        if removed is not None and found.whole:
            continue  # the partition was gone from version N
        old = prev.get(key)
        if key in own:
            path, size = sorted(own[key])[-1]
            files[key] = (path, size, None)
            continue
        candidates = sorted(c for c in twins.get(key, []) if removed is None or c[0] != removed[0])
        if not candidates:
            if old is not None and (removed is None or removed[0] != old[0]):
                files[key] = old
            continue
        pick = next((c for c in candidates if old is not None and c[0] == old[0]), None) \
            or next((c for c in candidates if run and run_of(c[0]) == run), None) or candidates[-1]
        files[key] = (pick[0], pick[1], old[2] if old is not None and old[0] == pick[0] else None)
    return files


def _by_key(state: log.TableState | None) -> dict[str, Entry]:
    if state is None:
        return {}
    return {p.rsplit("/", 1)[0]: (p, s, r) for p, s, r in state.files.iter_rows()}


def _size(table: VersionTable, rel: str) -> int:
    info = table.files.stat(f"{table.path}/{rel}")
    return info.size if info is not None else 0


# -- writing ---------------------------------------------------------------------------------------------


_KEPT_PROVENANCE = ("source", "feed", "adjustment", "asof")


def _commit_bytes(table: VersionTable, listing: LogListing, version: int, found: Salvaged, provenance: Provenance,
                  adds: list[tuple[str, int, int | None]], removes: Iterable[Entry], kept: str | None,
                  sha256: dict[str, str]) -> tuple[bytes, list[str]]:
    """The commit's bytes, and the provenance keys it names by guess (``rebuilt.inferred``)."""
    removes = list(removes)
    when = _when(table, listing, version, found)
    rebuilt: dict[str, Any] = {"by": provenance.run_id, "at": table.now().isoformat(), "damaged_file": kept}
    inferred: list[str] = []
    if found.info is not None:
        info: dict[str, Any] = json.loads(json.dumps(found.info))  # a deep copy
        info.setdefault("operationMetrics", {}).update(numFiles=str(len(adds)), numRemovedFiles=str(len(removes)))
        own = info.get("dataengine")
        info["dataengine"] = {**(own if isinstance(own, dict) else {}), "rebuilt": rebuilt}
        head: list[dict[str, Any]] = [{"commitInfo": info}]
    else:
        counts: dict[str, Any] = {"partitions": len({p.rsplit("/", 1)[0] for p, _, _ in [*adds, *removes]}),
                  "rows_added": None, "rows_removed": None, "recovered_runs": [], "txn": None}
        if version > 0 and version - 1 in listing.commits:
            # what the dataset is (source, feed, adjustment), as the version before said; the corporate actions
            # it read from what the store still tells (without them the repair's sync saw the actions unnamed
            # and made an empty version; the version before's were wrong when this commit brought new ones)
            earlier = read_commit_info(table, version - 1).get("dataengine") or {}
            named, inferred = lost_actions(table, listing, version, {run_of(p) for p, _, _ in adds})
            provenance = replace(provenance, **{k: earlier[k] for k in _KEPT_PROVENANCE if earlier.get(k) is not None})
            provenance = replace(provenance, actions_file=named["actions_file"], closes_file=named["closes_file"])
        if inferred:
            rebuilt["inferred"] = inferred
        head = [_commit_info(replace(provenance, reason="repair"), counts, when, version, len(adds), len(removes))]
        head[0]["commitInfo"]["dataengine"]["rebuilt"] = rebuilt
    if version == 0:
        head += found.table or _new_table(table, adds, when)
    head += [{"txn": {"appId": app, "version": txn, "lastUpdated": when}} for app, txn in found.txns.items()]
    actions = [log_write.remove_action(p, s, when) for p, s, _ in removes]
    actions += [log_write.add_action(p, s, r, when, sha256.get(p)) for p, s, r in adds]
    return b"\n".join(msgspec.json.encode(action) for action in head + actions) + b"\n", inferred


def _when(table: VersionTable, listing: LogListing, version: int, found: Salvaged) -> int:
    """The commit's time: as it said, else just after the version before it (or before the one after it)."""
    if found.info is not None and isinstance(found.info.get("timestamp"), int):
        return int(found.info["timestamp"])
    if version > 0 and version - 1 in listing.commits:
        return int(read_commit_info(table, version - 1).get("timestamp", 0)) + 1
    after = [v for v in listing.commits if v > version]
    if after:
        return int(read_commit_info(table, after[0]).get("timestamp", 0)) - 1
    return int(table.now().timestamp() * 1000)


def _new_table(table: VersionTable, adds: list[tuple[str, int, int | None]], when: int) -> list[dict[str, Any]]:
    """``protocol`` and ``metaData`` for a version 0 whose own are lost (a new table id; the schema from a file)."""
    if not adds:
        raise DamagedLogError(table.uri, log_path(table, commit_name(0)),
                              "version 0 cannot be rebuilt: its table definition is lost and it names no file")
    schema = log_write.schema_string(table.files.read(f"{table.path}/{adds[0][0]}"))
    return log_write.create_actions(schema, when, str(uuid.uuid4()))


def _set_aside(table: VersionTable, path: str, aside: str, data: bytes | None = None) -> None:
    """A copy of the damaged file under ``aside`` (never deleted by dataengine)."""
    if data is None:
        try:
            data = table.files.read(path)
        except FileNotFoundError:
            return
    table.files.put(f"{aside}/{path}", data)


def _hint_problem(table: VersionTable, listing: LogListing) -> str:
    """What is wrong with ``_last_checkpoint`` ("" when it is absent or names a checkpoint that is there)."""
    try:
        data = table.files.read(log_path(table, LAST_CHECKPOINT))
    except FileNotFoundError:
        return ""
    try:
        version = json.loads(data)["version"]
    except (ValueError, KeyError, TypeError):
        return "unreadable"
    if not isinstance(version, int) or version not in listing.checkpoints:
        name = checkpoint_name(version) if isinstance(version, int) else repr(version)
        return f"names checkpoint {name}, which is not there"
    return ""


__all__ = ["LogProblem", "check_log", "mend_log", "rebuild_commit"]
