"""Putting lost bytes back from their other name, for ``verify --repair``.

A partition's file and the file the latest version names for it are one set of bytes under two names (locally a
hard link, on S3 a server-side copy). When one name is lost and the other still holds the bytes, a repair puts
them back instead of fetching the month again from the vendor (which may serve other bars today) or recording
the dataset as a new version (which leaves every pinned version that named the lost file unreadable):

- :func:`version_copy`: a partition deleted or damaged in the dataset, its version file whole: link it back.
- :func:`restore_version_files`: a file of the latest version deleted (under ``metadata/versions/``), the
  dataset's file the same bytes: link it back under the version's name, and every version that named it reads
  again.

Neither happens while a killed run's marker is pending: its files may be newer than any version. "The same
bytes" is exact where the commit recorded the digest of the file's bytes (:mod:`dataengine.storage.digests`;
every run since digests are kept): the bytes are hashed and compared. For a file committed without one (before
that, or adopted unread), it is read from the signs left: the size, the rows, and a time between the start and
the commit of the run that named it; a file replaced by hand minutes after the run with one of the same size
and rows, keeping a time inside that run (``touch -d``), would pass for it.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timezone

from dataengine.storage import digests
from dataengine.storage.versions.commit import pending_runs
from dataengine.storage.versions.log import TableState, read_state
from dataengine.storage.versions.model import DATA_FILE, VersionTable, partition_dir, run_of
from dataengine.storage.versions.read import history
from dataengine.storage.versions.verify import check

log = logging.getLogger(__name__)

LOCAL_SLACK_S = 2.0  # a file's time against a run's on this machine's clock (file systems round mtimes)
S3_SLACK_S = 60.0  # an S3 server's clock against ours


def restorable(table: VersionTable) -> TableState | None:
    """The latest version's files, to put partitions back from; None when none may be: no version yet, or a
    killed run's marker pending (its files may be newer than the version's copies). Ask once per dataset."""
    state = read_state(table)
    return None if state is None or pending_runs(table) else state


def version_copy(table: VersionTable, state: TableState | None, symbol: str, year: int, month: int,
                 damaged: str | None = None) -> str | None:
    """The file the latest version (``state``, from :func:`restorable`) names for this partition, when it is
    there whole (its recorded size, every page readable, its recorded rows) and is not ``damaged`` (the
    fingerprint of the dataset's damaged file: a hard link shares the damage). None when there is none to
    restore from."""
    if state is None:
        return None
    named = state.by_key([partition_dir(symbol, year, month)]).get(partition_dir(symbol, year, month))
    if named is None:
        return None
    path, size, rows = named
    key = f"{table.path}/{path}"
    info = table.files.stat(key)
    if info is None or info.size != size or (damaged is not None and info.fingerprint == damaged):
        return None
    committed = state.digest_of(path)
    if committed is not None:
        return key if _holds(table, key, committed) else None
    return key if _whole(table, key, rows) else None


def restore_version_files(table: VersionTable) -> list[str]:
    """Link back each file of the latest version that is missing, from the dataset's file of that partition
    when it holds the same bytes by every sign left; the partition directories restored."""
    missing = [problem for problem in check(table) if problem.actual_size is None]
    state = restorable(table) if missing else None
    if state is None:
        return []
    slack = LOCAL_SLACK_S if table.files.storage_options is None else S3_SLACK_S
    # when each run's version was committed, by run id (a run commits once)
    commits = {info.run_id: info.timestamp.timestamp() for info in history(table) if info.run_id}
    restored = []
    for problem in missing:
        key = partition_dir(problem.symbol, problem.year, problem.month)
        source = f"{table.dataset_path}/{key}/{DATA_FILE}"
        sha256 = state.digest_of(problem.path[len(table.path) + 1:])
        if sha256 is not None:  # exact: the dataset's bytes are the committed ones, or nothing is linked
            if _holds(table, source, sha256):
                restored.append(_link_back(table, source, problem.path, key))
            continue
        info = table.files.stat(source)
        run_id = run_of(problem.path)
        started, committed = _run_started(run_id), commits.get(run_id)
        if info is None or info.size != problem.expected_size or started is None or committed is None:
            continue
        if not started - slack <= info.modified <= committed + slack:
            continue  # not written while that run ran: other bytes, whatever their size
        if not _whole(table, source, state.by_key([key])[key][2]):
            continue
        restored.append(_link_back(table, source, problem.path, key))
    return restored


def _link_back(table: VersionTable, source: str, lost: str, key: str) -> str:
    table.files.link(source, lost)
    log.warning("%s was lost: linked back from %s (the same bytes)", lost, source)
    return key


def _holds(table: VersionTable, key: str, sha256: str) -> bool:
    """The file at ``key`` holds exactly the bytes whose digest a commit recorded."""
    try:
        return digests.of_bytes(table.files.read(key)) == sha256
    except FileNotFoundError:
        return False


def _whole(table: VersionTable, key: str, rows: int | None) -> bool:
    """Every page of the file decodes, and it holds ``rows`` rows when that is known."""
    import polars as pl

    try:
        height = pl.read_parquet(io.BytesIO(table.files.read(key))).height
    except (FileNotFoundError, pl.exceptions.PolarsError, OSError):
        return False
    return rows is None or height == rows


def _run_started(run_id: str) -> float | None:
    """When a run started: its id says (``20261207T161257Z-984016``)."""
    stamp = run_id.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
