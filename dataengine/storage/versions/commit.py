"""Making versions: a run claims its version (:func:`begin_run`), writes its partitions as today, then commits
them as one version (:func:`commit_run`); an unversioned dataset is adopted as version 0 (:func:`adopt`); a
table that drifted from its dataset is brought level (:func:`sync`). Call all of them under the run lock.

A commit has two halves. :func:`link_changes` gives each partition's new ``data.parquet`` an immutable name in
the table (``symbol=S/year=Y/month=M/{run_id}.parquet``: a hard link, or a server-side copy on S3), and
:func:`write_version` writes one Delta commit that removes the partition's previous file and adds the new one.
A crash between the halves leaves links no version names (pruned later) and every committed version intact.

Exactly once: each run's commit carries a Delta ``txn`` (appId = the dataset, version = the run's ticket, a
number that grows run after run), so a commit retried after a lost answer finds its txn in the table and is
not applied twice. Whole runs lost to ``kill -9``: :func:`begin_run` leaves a marker
(``_dataengine/pending/{run_id}.json``) that only that run's commit deletes; a commit that finds a marker of
a run that never committed compares the whole dataset with the table (:func:`dataset_drift`) and takes in
whatever that run changed, so the next version is again exactly the dataset's files.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dataengine.storage import digests
from dataengine.storage.versions import log, log_write
from dataengine.storage.versions.log import TableState, forget, read_state
from dataengine.storage.versions.log_entries import Commit, list_log, read_commit_info
from dataengine.storage.versions.model import (
    DATA_FILE,
    OWN_DIR,
    PARTITION_COLUMNS,
    CommitResult,
    PartitionFile,
    Provenance,
    RunTicket,
    VersionConflictError,
    VersionTable,
    check_run_id,
    parse_partition,
    partition_dir,
    version_file,
)

logger = logging.getLogger(__name__)
BIG_COMMIT = 5_000  # actions: a checkpoint follows at once, so no reader replays a huge JSON commit


@dataclass(frozen=True)
class Staged:
    """A partition after the first half: its new table-relative file (None: the partition is gone)."""

    key: str
    path: str | None
    size: int = 0
    rows: int | None = None
    sha256: str | None = None


# -- the public calls ------------------------------------------------------------------------------------


def begin_run(table: VersionTable, provenance: Provenance) -> RunTicket:
    """Claim the next version for a run, before it writes its first partition.

    Adopts an unversioned dataset first (version 0: the partitions already there, no re-fetch), then leaves
    the run's marker. Calling it again for the same run returns the same ticket.
    """
    check_run_id(provenance.run_id)
    if list_log(table).latest is None:
        adopt(table, replace(provenance, reason="adopt"))
    state = read_state(table)
    markers = pending_runs(table)
    if provenance.run_id in markers:
        return RunTicket(provenance.run_id, markers[provenance.run_id])
    txn = max([last_txn(table, state), *markers.values()]) + 1
    marker = {"run_id": provenance.run_id, "txn": txn, "started": table.now().isoformat()}
    table.files.put(_marker(table, provenance.run_id), json.dumps(marker).encode())
    return RunTicket(provenance.run_id, txn)


def commit_run(table: VersionTable, ticket: RunTicket, changes: Iterable[PartitionFile],
               provenance: Provenance) -> CommitResult:
    """Commit the partitions a run replaced, added (or lost: ``path=None``) as one version.

    Retried with the same ticket after a crash or a lost answer, it lands once and returns the version it
    made. A run that changed nothing (no file, and the same corporate actions named) makes no version
    (``version=None``). Also takes in what runs that died
    before committing left in the dataset (``recovered_runs``).
    """
    listing = list_log(table)
    state = read_state(table, listing=listing)
    if last_txn(table, state) >= ticket.txn:
        _clear_markers(table, [ticket.run_id])
        return _already_committed(table, ticket, listing.latest)
    markers = pending_runs(table)
    dead = sorted(run for run, txn in markers.items() if txn > last_txn(table, state) and run != ticket.run_id)
    changes = list({c.key: c for c in changes}.values())  # one change per partition: the last given wins
    if dead:
        logger.warning("%s: run(s) %s ended without committing; taking in what they changed", table.dataset,
                       ", ".join(dead))
        own = {c.key for c in changes}
        changes += counted(table, [c for c in dataset_drift(table, state) if c.key not in own])
    staged = link_changes(table, ticket.run_id, changes, state)
    result = write_version(table, staged, provenance, state, txn=ticket.txn, recovered=tuple(dead))
    _clear_markers(table, list(markers))  # dead ones are covered now; stale ones were committed
    return result


def adopt(table: VersionTable, provenance: Provenance) -> CommitResult | None:
    """Version 0 of a dataset that has partitions but no table yet: those partitions, linked, none fetched
    again. None when the table exists already or the dataset is empty."""
    if list_log(table).latest is not None:
        return None
    changes = dataset_drift(table, None)
    if not changes:
        return None
    provenance = replace(provenance, reason="adopt")
    # named apart from the adopting run's own files, which it links into the same partitions next
    staged = link_changes(table, f"{provenance.run_id}-adopt", changes, None)
    return write_version(table, staged, provenance, None)


def sync(table: VersionTable, provenance: Provenance) -> CommitResult:
    """Make the latest version equal the dataset directory (changes made outside runs, a repair): one
    version with what differs, or none (``version=None``) when nothing does."""
    state = read_state(table)
    changes = dataset_drift(table, state)
    return write_version(table, link_changes(table, provenance.run_id, changes, state), provenance, state)


# -- the two halves --------------------------------------------------------------------------------------


def link_changes(table: VersionTable, run_id: str, changes: Sequence[PartitionFile],
                 state: TableState | None) -> list[Staged]:
    """First half: give each changed partition's file an immutable name in the table. Nothing is committed."""
    current = state.by_key(c.key for c in changes) if state else {}
    staged = []
    for change in changes:
        name = _link(table, change, run_id, current.get(change.key)) if change.path is not None else None
        if name is None:
            staged.append(Staged(change.key, None))
            continue
        size = change.size
        if size is None:
            info = table.files.stat(f"{table.path}/{name}")
            size = info.size if info is not None else 0
        staged.append(Staged(change.key, name, size, change.rows, change.sha256))
    return staged


def write_version(table: VersionTable, staged: Sequence[Staged], provenance: Provenance, state: TableState | None,
                  *, txn: int | None = None, recovered: tuple[str, ...] = ()) -> CommitResult:
    """Second half: one Delta commit replacing each staged partition's file (a ``remove`` of the previous
    file, an ``add`` of the new), with ``commitInfo`` carrying the provenance and ``txn`` the run's ticket."""
    now_ms = int(table.now().timestamp() * 1000)
    current = state.by_key(s.key for s in staged) if state else {}
    adds: list[tuple[str, int, int | None]] = []
    removes: list[tuple[str, int, int | None]] = []
    sha256: dict[str, str] = {}
    for item in staged:
        old = current.get(item.key)
        if old is not None and old[0] == item.path:
            continue  # the version names this very file already
        if old is not None:
            removes.append(old)
        if item.path is not None:
            adds.append((item.path, item.size, item.rows))
            if item.sha256 is not None:
                sha256[item.path] = item.sha256
    if not adds and not removes and not _new_actions(table, state, provenance):
        return CommitResult(None, recovered_runs=recovered)
    version = state.version + 1 if state is not None else 0
    partitions = len({path.rsplit("/", 1)[0] for path, _, _ in adds + removes})
    rows_added, rows_removed = _sum([r for _, _, r in adds]), _sum([r for _, _, r in removes])
    counts = {"partitions": partitions, "rows_added": rows_added, "rows_removed": rows_removed,
              "recovered_runs": list(recovered), "txn": txn}
    head = [_commit_info(provenance, counts, now_ms, version, len(adds), len(removes))]
    if version == 0:
        head += log_write.create_actions(_schema(table, adds[0][0]), now_ms, str(uuid.uuid4()))
    if txn is not None:
        head.append({"txn": {"appId": table.app_id, "version": txn, "lastUpdated": now_ms}})
    actions = [log_write.remove_action(path, size, now_ms) for path, size, _ in removes]
    actions += [log_write.add_action(path, size, rows, now_ms, sha256.get(path)) for path, size, rows in adds]
    if not log_write.write_commit(table, version, head + actions):
        return _lost_race(table, provenance.run_id, txn, version)
    txns = {} if txn is None else {table.app_id: txn}
    if version == 0:
        forget(table)  # a table made anew where one was deleted: nothing cached of the old one may serve
    log.remember(table, log.apply_commits(state, [Commit(version, {}, adds, [p for p, _, _ in removes], txns, sha256)]))
    # not at version 0: one commit replays in milliseconds, and a checkpoint loads pyarrow and deltalake (~50 MiB
    # on a first run of ~170 MiB); a first commit too big to replay quickly still gets one (BIG_COMMIT)
    if (version and version % table.checkpoint_interval == 0) or len(actions) >= BIG_COMMIT:
        checkpoint(table)
    return CommitResult(version, partitions, rows_added, rows_removed, recovered_runs=recovered)


def _new_actions(table: VersionTable, state: TableState | None, provenance: Provenance) -> bool:
    """Whether ``provenance`` names other corporate-actions files than the latest version: a version is its
    files and the actions its adjusted reads use, so new actions alone make a version (no file changes)."""
    if state is None or (provenance.actions_file is None and provenance.closes_file is None):
        return False
    known = read_commit_info(table, state.version).get("dataengine") or {}
    return bool(known.get("actions_file") != provenance.actions_file or known.get("closes_file") != provenance.closes_file)


def checkpoint(table: VersionTable) -> None:
    """Write a Delta checkpoint of the latest version; a failure only costs readers speed, so it is logged."""
    from deltalake.exceptions import DeltaError

    try:
        log_write.write_checkpoint(table)
    except (DeltaError, OSError) as exc:
        logger.warning("%s: no checkpoint written (%s); reading stays correct, only slower", table.uri, exc)


# -- drift: the dataset against the table ----------------------------------------------------------------


def dataset_drift(table: VersionTable, state: TableState | None) -> list[PartitionFile]:
    """Every partition whose dataset file is not the file the latest version names (by fingerprint: the same
    inode locally, the same ETag on S3), or that the dataset lost. Lists the dataset once, stats the table's
    current files once."""
    present: dict[str, PartitionFile] = {}
    fingerprints: dict[str, str] = {}
    prefix = table.dataset_path + "/"
    for info in table.files.list(table.dataset_path):
        rel = info.path[len(prefix):]
        parsed = parse_partition(rel) if rel.endswith("/" + DATA_FILE) else None
        if parsed is not None:
            key = partition_dir(*parsed)
            present[key] = PartitionFile(*parsed, path=info.path, size=info.size)
            fingerprints[key] = info.fingerprint
    current = {path.rsplit("/", 1)[0]: path for path in state.files["path"]} if state is not None else {}
    named = list(current.values())
    found = table.files.stat_many([f"{table.path}/{path}" for path in named])
    table_prints = {path: info.fingerprint for path, info in zip(named, found, strict=True) if info is not None}
    drift = [change for key, change in sorted(present.items())
             if key not in current or table_prints.get(current[key]) != fingerprints[key]]
    for key in sorted(set(current) - set(present)):
        parsed = parse_partition(current[key])
        assert parsed is not None
        drift.append(PartitionFile(*parsed, path=None))
    return drift


def counted(table: VersionTable, changes: Sequence[PartitionFile], batch: int = 64) -> list[PartitionFile]:
    """``changes`` with the rows of each file, from its footer, and the digest of its bytes (each file is read whole to get it: on S3 a GET of
    a few hundred KiB; only after a killed run, so not worth ranged reads): what a killed run wrote arrives with no
    count, and one unknown count made its whole version's rows unknown ('?' in ``dataengine versions``). Only
    for what one run wrote (an adoption takes in a whole dataset, whose files it does not read back). A file
    gone or unreadable keeps no count (``verify`` names it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out: list[PartitionFile] = []
    for start in range(0, len(changes), batch):  # a batch of files in memory at a time, read in parallel
        part = changes[start:start + batch]
        bodies = table.files.read_many([c.path for c in part if c.path is not None])
        found = iter(bodies)
        for change in part:
            body = next(found) if change.path is not None else None
            if body is None:
                out.append(change)
                continue
            try:
                rows = pq.read_metadata(pa.BufferReader(body)).num_rows
            except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
                rows = None
            out.append(replace(change, rows=rows, sha256=digests.of_bytes(body)))
    return out


# -- runs in progress ------------------------------------------------------------------------------------


def pending_runs(table: VersionTable) -> dict[str, int]:
    """run id -> ticket txn of every run that began and has not been cleared by a commit."""
    runs: dict[str, int] = {}
    for info in table.files.list(f"{table.path}/{OWN_DIR}/pending"):
        if not info.path.endswith(".json"):
            continue
        try:
            marker = json.loads(table.files.read(info.path))
            runs[str(marker["run_id"])] = int(marker["txn"])
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            continue
    return runs


def last_txn(table: VersionTable, state: TableState | None) -> int:
    return state.txns.get(table.app_id, 0) if state is not None else 0


def _marker(table: VersionTable, run_id: str) -> str:
    return f"{table.path}/{OWN_DIR}/pending/{run_id}.json"


def _clear_markers(table: VersionTable, runs: Iterable[str]) -> None:
    for run in runs:
        table.files.delete(_marker(table, run))


# -- helpers ---------------------------------------------------------------------------------------------


def _link(table: VersionTable, change: PartitionFile, run_id: str, old: tuple[str, int, int | None] | None) -> str | None:
    """The table-relative name ``change``'s file is linked to; None if the dataset file is gone."""
    assert change.path is not None
    for attempt in range(1000):
        name = version_file(change.key, run_id, attempt)
        try:
            table.files.link(change.path, f"{table.path}/{name}")
            return name
        except FileNotFoundError:
            return None
        except FileExistsError:
            # our own link from an attempt that never committed (the version this run would make names it
            # nowhere yet), unless the current version names it: then it must stay as it is
            src, dst = table.files.stat(change.path), table.files.stat(f"{table.path}/{name}")
            if src is None:
                return None
            if dst is not None and dst.fingerprint == src.fingerprint and (old is None or old[0] != name):
                return name
    raise VersionConflictError(f"{table.uri}: no free name for {change.key} of run {run_id}")


def _sum(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _commit_info(provenance: Provenance, counts: dict[str, Any], now_ms: int, version: int, adds: int,
                 removes: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "timestamp": now_ms,
        "operation": "WRITE",
        "operationParameters": {"mode": "Append", "partitionBy": json.dumps(list(PARTITION_COLUMNS))},
        "isBlindAppend": False,
        "operationMetrics": {"numFiles": str(adds), "numRemovedFiles": str(removes),
                             "numOutputRows": str(counts["rows_added"] or 0)},
        "engineInfo": f"dataengine/{provenance.dataengine_version}",
        "dataengine": {**provenance.as_dict(), **counts},
    }
    if version > 0:
        info["readVersion"] = version - 1
    return {"commitInfo": info}


def _schema(table: VersionTable, first_file: str) -> str:
    return log_write.schema_string(table.files.read(f"{table.path}/{first_file}"))


def _already_committed(table: VersionTable, ticket: RunTicket, latest: int | None) -> CommitResult:
    """The result of the commit that carried ``ticket``, found from the newest version back."""
    for version in range(latest if latest is not None else -1, -1, -1):
        info = read_commit_info(table, version).get("dataengine", {})
        if info.get("run_id") == ticket.run_id and info.get("txn") == ticket.txn:
            return CommitResult(version, info.get("partitions", 0), info.get("rows_added"), info.get("rows_removed"),
                                already_committed=True, recovered_runs=tuple(info.get("recovered_runs", ())))
        if isinstance(info.get("txn"), int) and info["txn"] < ticket.txn:
            break  # tickets grow with versions: the commit is not further back
    raise VersionConflictError(f"{table.uri}: run {ticket.run_id}'s ticket {ticket.txn} is behind the table, but no "
                               "version carries it: was another run committing without the run lock?")


def _lost_race(table: VersionTable, run_id: str, txn: int | None, version: int) -> CommitResult:
    """Version ``version`` exists already: our own earlier attempt (its answer lost), or another writer."""
    forget(table)
    state = read_state(table)
    if txn is not None and last_txn(table, state) >= txn:
        return _already_committed(table, RunTicket(run_id, txn), state.version if state else None)
    raise VersionConflictError(
        f"{table.uri}: version {version} was committed by another writer meanwhile; is a second run writing "
        "this store without the run lock?")

