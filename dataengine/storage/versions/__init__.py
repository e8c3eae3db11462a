"""Every run a version: a Delta Lake table per dataset that names, for each run, the exact partition files
the dataset held after it (issue 22).

Where things live (``{root}`` is the store)::

    {root}/equities_1min/symbol=AAPL/year=2024/month=01/data.parquet       the dataset, read as today
    {root}/metadata/versions/equities_1min/                                 its version table (Delta)
        _delta_log/00000000000000000042.json                                one commit per run
        _delta_log/00000000000000000040.checkpoint.parquet                  every 10 commits (deltalake's)
        symbol=AAPL/year=2024/month=01/20240102T030405Z-ab12cd.parquet      that run's file of the partition
        _dataengine/tags.json, pruned.json, pending/{run_id}.json           pins, prune horizon, runs under way

- **Why a table beside the dataset, not in it.** A Delta table inside the dataset directory makes plain Hive
  readers (Polars/DuckDB/Spark on the folder) count every kept version's rows until vacuum. Under
  ``metadata/`` the dataset directory stays exactly as it was.
- **Files are hard links** of the ``data.parquet`` a run wrote (0 extra bytes for the current data; an old
  version costs only the partitions rewritten since); on S3, server-side copies. A committed file is never
  rewritten at its path: the dataset's writer replaces ``data.parquet`` by rename (a new inode), never in
  place, so the link keeps the old bytes. Names carry the partition (Hive directories, which Polars'
  ``scan_delta`` needs for the partition columns) and the run, never a content hash alone.
- **One commit per run**, with ``remove`` of each changed partition's previous file and ``add`` of its new one,
  ``commitInfo.dataengine`` holding the provenance, and a ``txn`` (appId = the dataset, version = the run's
  ticket) so a retried commit lands once. See :mod:`.commit` for crashes, :mod:`.log_write` for why the commit
  JSON is written here (speed) while checkpoints are deltalake's, :mod:`.files` for what an S3 store must provide.

Readers: ``pl.scan_delta(table.uri, version=N)``, ``DeltaTable(table.uri, version=N).to_pyarrow_dataset()``
(DuckDB queries it), DuckDB's ``delta_scan``, Spark's ``versionAsOf``; in dataengine, :func:`snapshot`.
Writers call everything here under the store's run lock.
"""

from dataengine.storage.versions.commit import adopt, begin_run, commit_run, sync
from dataengine.storage.versions.files import FileInfo, StoreFiles, VersionFiles
from dataengine.storage.versions.intact import altered_files, committed_files, resized_in_place
from dataengine.storage.versions.log_repair import LogProblem, check_log, mend_log
from dataengine.storage.versions.model import (
    CommitResult,
    DamagedLogError,
    NoVersionAtError,
    PartitionFile,
    Provenance,
    RunTicket,
    TagInUseError,
    VersionConflictError,
    VersionError,
    VersionFile,
    VersionInfo,
    VersionTable,
)
from dataengine.storage.versions.read import (
    Snapshot,
    current_version,
    history,
    kept_versions,
    latest_partitions,
    snapshot,
    version_at,
)
from dataengine.storage.versions.restore import restorable, restore_version_files, version_copy
from dataengine.storage.versions.retention import PruneResult, prune, tag, tags, untag
from dataengine.storage.versions.verify import MendResult, Problem, check, mend, unrecorded

__all__ = [
    "CommitResult",
    "DamagedLogError",
    "FileInfo",
    "LogProblem",
    "MendResult",
    "NoVersionAtError",
    "PartitionFile",
    "Problem",
    "Provenance",
    "PruneResult",
    "RunTicket",
    "Snapshot",
    "StoreFiles",
    "TagInUseError",
    "VersionConflictError",
    "VersionError",
    "VersionFile",
    "VersionFiles",
    "VersionInfo",
    "VersionTable",
    "adopt",
    "altered_files",
    "begin_run",
    "check",
    "check_log",
    "commit_run",
    "committed_files",
    "current_version",
    "history",
    "kept_versions",
    "latest_partitions",
    "mend",
    "mend_log",
    "prune",
    "resized_in_place",
    "restorable",
    "restore_version_files",
    "snapshot",
    "sync",
    "tag",
    "tags",
    "unrecorded",
    "untag",
    "version_at",
    "version_copy",
]
