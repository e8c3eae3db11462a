"""Are a dataset's files still the bytes their version committed? For ``verify --read-data``.

Locally a partition's file and its version's file are one inode (a hard link), so bytes changed in place change
both, and no other check can tell a month that still decodes from the one the run wrote. The digest its commit
recorded (:mod:`dataengine.storage.digests`) can: :func:`committed_digests` gives it for each partition whose
dataset file is the very file the latest version names (the same inode; on S3 the same ETag). A file replaced
outside a run (another inode or ETag) is no version's file, so it has none here: ``verify`` reports it as a
change outside a run, not as damage.
"""

from __future__ import annotations

from dataengine.storage.versions.commit import dataset_drift
from dataengine.storage.versions.log import read_state
from dataengine.storage.versions.model import VersionTable, parse_partition


def committed_digests(table: VersionTable) -> dict[tuple[str, int, int], str]:
    """(symbol, year, month) -> the recorded digest of the bytes of each partition's dataset file that is the
    file the latest version names, where its commit recorded one. Lists the dataset and stats the version's
    files once (as :func:`~dataengine.storage.versions.commit.dataset_drift` does); reads no file."""
    state = read_state(table)
    if state is None or state.sha256.is_empty():
        return {}
    drifted = {change.key for change in dataset_drift(table, state)}
    found = {}
    for path, sha256 in state.sha256.iter_rows():
        parsed = parse_partition(path)
        if parsed is not None and path.rsplit("/", 1)[0] not in drifted:
            found[parsed] = sha256
    return found
