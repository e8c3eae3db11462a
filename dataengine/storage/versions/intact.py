"""Are a dataset's files, and its versions' files, still the bytes their versions committed? For ``verify
--read-data``.

Locally a partition's file and its version's file are one inode (a hard link), so bytes changed in place change
both, and no other check can tell a month that still decodes from the one the run wrote. The digest its commit
recorded (:mod:`dataengine.storage.digests`) can: :func:`committed_files` gives it for each partition whose
dataset file is the very file the latest version names (the same inode; on S3 the same ETag), and
:func:`altered_files` hashes the files of older or pinned versions. A dataset file replaced outside a run
(another inode or ETag) is no version's file, so it has none here: ``verify`` reports it as a change outside a
run, not as damage. Files committed without a digest (before digests were kept, or adopted unread) are not
checked here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dataengine.storage import digests
from dataengine.storage.versions.commit import dataset_drift
from dataengine.storage.versions.log import read_state
from dataengine.storage.versions.model import DATA_FILE, VersionTable, parse_partition, partition_dir
from dataengine.storage.versions.verify import Problem


def committed_files(table: VersionTable) -> dict[tuple[str, int, int], tuple[str, str]]:
    """(symbol, year, month) -> (table-relative path, recorded digest) of each partition whose dataset file is
    the file the latest version names, where its commit recorded a digest. Lists the dataset and stats the
    version's files once (as :func:`~dataengine.storage.versions.commit.dataset_drift` does); reads no file."""
    state = read_state(table)
    if state is None or state.sha256.is_empty():
        return {}
    drifted = {change.key for change in dataset_drift(table, state)}
    found = {}
    for path, sha256 in state.sha256.iter_rows():
        parsed = parse_partition(path)
        if parsed is not None and path.rsplit("/", 1)[0] not in drifted:
            found[parsed] = (path, sha256)
    return found


def altered_files(table: VersionTable, versions: Iterable[int], checked: set[str], batch: int = 64) -> list[tuple[int, str]]:
    """(version, path under the store) of each file of ``versions`` whose bytes are not those its commit
    recorded, each file read once whichever versions name it (the first of them is named), in batches read in
    parallel; ``checked``: table-relative paths not to read (hashed already as the dataset's files). A file
    gone is left to :func:`~dataengine.storage.versions.verify.check`, which names it."""
    seen = set(checked)
    wanted: list[tuple[int, str, str]] = []
    for version in versions:
        state = read_state(table, version)
        if state is None:
            continue
        for path, sha256 in state.sha256.iter_rows():
            if path not in seen:
                seen.add(path)
                wanted.append((version, f"{table.path}/{path}", sha256))
    altered = []
    for start in range(0, len(wanted), batch):
        part = wanted[start:start + batch]
        for (version, path, sha256), data in zip(part, table.files.read_many([p for _, p, _ in part]), strict=True):
            if data is not None and digests.of_bytes(data) != sha256:
                altered.append((version, path))
    return altered


def resized_in_place(table: VersionTable, problems: Sequence[Problem]) -> list[tuple[str, int, int]]:
    """(symbol, year, month) of each partition whose dataset file is the very file the latest version names (one
    inode) and no longer the size that version recorded: changed in place after the commit, so the dataset's
    month is damaged as much as the version's copy (a footer that still reads is no sign it is whole).
    ``problems``: what :func:`~dataengine.storage.versions.verify.check` found of the latest version; two stats
    for each one resized."""
    found = []
    for problem in problems:
        if problem.actual_size is None:
            continue
        key = partition_dir(problem.symbol, problem.year, problem.month)
        dataset_file, version_file = table.files.stat_many([f"{table.dataset_path}/{key}/{DATA_FILE}", problem.path])
        if dataset_file is not None and version_file is not None and dataset_file.fingerprint == version_file.fingerprint:
            found.append((problem.symbol, problem.year, problem.month))
    return found
