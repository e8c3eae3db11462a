"""Which file a failed read failed on, and what to say of it: every reader (:mod:`.bars`, :mod:`.sql`) asks here
once its engine (Polars, DuckDB over pyarrow) has failed, so a damaged file is one line naming it (exit 1),
never the engine's message.

A file is damaged when its footer cannot be read (truncated, garbage: what ``verify`` finds) or, its footer
whole, when its data cannot be decoded (bytes overwritten inside it, at the same size: only ``verify
--read-data`` finds that). Finding the second kind reads the files whole, so it runs only after a read failed.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataengine.errors import DamagedPartitionError, DataEngineError
from dataengine.read.pins import MISSING, Pin, recheck_pruned
from dataengine.storage import footer_index, layout
from dataengine.storage.store import StorePath
from dataengine.storage.versions import Snapshot, VersionFile

# The dataset's partition with a whole footer and damaged data: plain verify reads footers and does not see it;
# --read-data reads every bar and --repair then fetches its month again.
DECODE_ADVICE = "its footer reads, so only 'dataengine verify --read-data' finds it: add --repair to fetch its month again"
# What Polars says when a file's bytes fail it (DuckDB over pyarrow: "reading the Arrow source failed")
_FILE_FAILURE = ("parquet", "decompress", "corrupt", "out of specification", "no such file", "ioerror")


def looks_like_file_failure(message: str) -> bool:
    """Whether an engine's message is of a file it read (worth finding the file), not of the read itself."""
    text = message.lower()
    return any(word in text for word in _FILE_FAILURE)


def find_damaged(paths: Sequence[StorePath], *, limit: int | None = None) -> tuple[StorePath, str, bool] | None:
    """The first of ``paths`` (of the first ``limit``; None: all) that cannot be read: (path, reason, whether
    only its data fails, its footer whole). Footers first (one small read each), then the data, whole."""
    paths = paths if limit is None else paths[:limit]
    found = footer_index.first_damaged(paths)
    if found is not None:
        return found[0], found[1], False
    for path in paths:
        try:
            path.store.read_parquet(path.key)
        except Exception as exc:  # noqa: BLE001 - any failure to decode it is the answer
            return path, f"its data cannot be decoded: {exc}", True
    return None


def unnamed(datasets: Sequence[str], chosen: Pin, message: str) -> DamagedPartitionError:
    """A file failed the read and could not be found (too many files to read whole, or none fails alone): the
    datasets and the version being read, and how to find the file."""
    where = f"in {', '.join(datasets) or 'the store'} ({chosen.describe()})"
    return DamagedPartitionError(where, message, advice=(
        "a file it reads cannot be read and could not be named; read fewer symbols or months to find which, or run "
        "'dataengine verify --read-data' (the latest version's files) or 'verify --all-versions' (every version's, "
        "truncated or missing)"))


def named(found: tuple[StorePath, str, bool], chosen: Pin, partition: StorePath) -> DamagedPartitionError:
    """The error of a file :func:`find_damaged` found, as :meth:`Pin.damaged` names it."""
    path, reason, data_only = found
    return chosen.damaged(path, reason, partition, advice=DECODE_ADVICE if data_only else None)


def changed_since_commit(snap: Snapshot, files: Sequence[VersionFile], root: StorePath, dataset: str,
                         chosen: Pin) -> DataEngineError | None:
    """What a pinned read of ``files`` (of version ``snap``, read under ``chosen``) must raise before it reads
    them when one is gone or is not the size its version recorded, named as :meth:`Pin.damaged` names it; None
    when every one is, or the read is not pinned. Locally a tool writing over a partition's path writes over the
    version's file too (a hard link), and the engines read the result as good Parquet of other bars: a backtest
    pinned to a tag then read changed bars, exit 0 (a user's trial). A read of the latest version reads the
    dataset as it is (plain ``verify`` names such a month). Only on a local store, where a stat costs
    microseconds: an S3 object is never changed in place, and a version's copy overwritten by hand is found by
    ``verify`` (sizes) and ``verify --read-data``."""
    if not chosen.given or root.local is None:
        return None
    found = snap.changed(files)
    if found is None:
        return None
    file, size = found
    reason = MISSING if size is None else (f"{size:,} bytes where version {snap.version} recorded {file.size:,}: "
                                           "changed after it was committed")
    partition = layout.partition_path(root, dataset, file.symbol, file.year, file.month)
    return recheck_pruned(root, dataset, chosen, chosen.damaged(root.at(file.path), reason, partition))
