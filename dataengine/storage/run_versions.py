"""The version each write of a dataset makes (issue 22): claimed before the first partition is written,
committed after the last, with the corporate actions known then.

A run (``IngestionPipeline``) and a direct ``ParquetStorage.store`` both go through :class:`DatasetVersion`:
:meth:`begin` adopts an unversioned dataset as version 0 and leaves the run's marker (a run killed before its
commit is taken in by the next commit); :meth:`commit` links the partitions written into the dataset's
Delta table (:mod:`dataengine.storage.versions`) and commits them as one version. Both run under the store's
run lock, like every write.

Adjusted reads of a version must not change when a split is stored later, so each version names the
``actions.parquet`` and ``closes.parquet`` it was made with: immutable copies under
``metadata/versions/_corporate_actions/``, named by the file's content tag (one copy however many versions
share it; a hard link locally).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import replace

from dataengine.storage import layout
from dataengine.storage.store import StorePath
from dataengine.storage.versions import (
    PartitionFile,
    Provenance,
    RunTicket,
    VersionTable,
    begin_run,
    commit_run,
    current_version,
    sync,
)
from dataengine.storage.versions.commit import write_version
from dataengine.storage.versions.log import read_state
from dataengine.storage.versions.log_entries import read_commit_info
from dataengine.storage.versions.model import Reason

log = logging.getLogger(__name__)


class DatasetVersion:
    """The version one write of one dataset makes. Call under the store's run lock."""

    def __init__(self, root: StorePath, dataset: str, provenance: Provenance) -> None:
        self.root = root.root
        self.dataset = dataset
        # whose bars the dataset holds is in its name: every version of it says so, whoever makes it
        self.provenance = replace(provenance, source=layout.describe_dataset(dataset)["source"])
        self.table = VersionTable.of(self.root, dataset)
        self._ticket: RunTicket | None = None
        self._named: tuple[str | None, str | None] | None = None

    def begin(self) -> None:
        """Before the first partition write: adopt an unversioned dataset (no re-fetch), leave the marker."""
        self._ticket = begin_run(self.table, self.provenance)

    def commit(self, written: Mapping[str, object], *, reason: Reason | None = None) -> int | None:
        """Commit what was written (``written``: the keys of the partition files this write replaced or
        added, with what the writer knows of each: ``size``, ``rows`` and ``sha256`` attributes, see
        :class:`~dataengine.storage.footer_index.WrittenFooter`) as one version; the version the dataset
        is at afterwards (None: it has none)."""
        if self._ticket is None:
            raise RuntimeError("DatasetVersion.commit before begin")
        provenance = self._with_actions(reason or self.provenance.reason)
        changes = []
        for key, facts in written.items():
            parsed = layout.parse_partition_path(self.root.at(key))
            if parsed is not None and key.startswith(self.dataset + "/"):
                changes.append(PartitionFile(*parsed, key, size=getattr(facts, "size", None),
                                             rows=getattr(facts, "rows", None), sha256=getattr(facts, "sha256", None)))
        result = commit_run(self.table, self._ticket, changes, provenance)
        return result.version if result.version is not None else current_version(self.table)

    def sync(self, *, reason: Reason = "repair") -> int | None:
        """Make the latest version equal the dataset directory (partitions set aside by a repair and not
        fetched again are gone from it); the version the dataset is at afterwards."""
        result = sync(self.table, self._with_actions(reason))
        return result.version if result.version is not None else current_version(self.table)

    def record_actions(self, named: tuple[str | None, str | None] | None = None) -> int | None:
        """A version naming the corporate actions as they are now, when the latest names others (no file
        changes: ``actions --update``, or a run of another dataset stored new actions); None when the dataset
        has no versions or its latest names these already. ``named``: the kept files another commit just
        named (saves looking at the actions files again)."""
        latest = current_version(self.table)
        if latest is None:
            return None
        known = read_commit_info(self.table, latest).get("dataengine") or {}
        if named is not None and (known.get("actions_file"), known.get("closes_file")) == named:
            return None
        return write_version(self.table, [], self._with_actions("corporate-actions"), read_state(self.table)).version

    @property
    def actions_named(self) -> tuple[str | None, str | None] | None:
        """The kept corporate-actions files the last commit (or sync) named; None before one."""
        return self._named

    def _with_actions(self, reason: Reason) -> Provenance:
        """The provenance naming the immutable copies of the corporate-actions files as they are now (copied
        only when the latest version does not name them already: a copy on S3 is a billed request)."""
        latest = current_version(self.table)
        known = (read_commit_info(self.table, latest).get("dataengine") or {}) if latest is not None else {}
        provenance = replace(self.provenance, reason=reason,
                             actions_file=_keep(self.root, layout.actions_path(self.root), known.get("actions_file")),
                             closes_file=_keep(self.root, layout.closes_path(self.root), known.get("closes_file")))
        self._named = (provenance.actions_file, provenance.closes_file)
        return provenance


def record_actions(root: StorePath, provenance: Provenance, *, besides: DatasetVersion | None = None) -> dict[str, int]:
    """After corporate actions were stored: a version of every raw dataset with versions whose latest names
    other actions, so the version a backtest records always says which actions its adjusted reads used.
    ``besides``: a run's own dataset version, committed already (its named files are compared, not stat'ed
    again). Under the run lock. The versions made, by dataset."""
    made = {}
    named = besides.actions_named if besides is not None else None
    for dataset in layout.dataset_names(root.root):
        if (besides is not None and dataset == besides.dataset) or layout.describe_dataset(dataset)["adjustment"] != "raw":
            continue
        version = DatasetVersion(root, dataset, provenance).record_actions(named)
        if version is not None:
            made[dataset] = version
    return made


def _keep(root: StorePath, path: StorePath, known: str | None) -> str | None:
    """An immutable copy of ``path`` (a link), named by its content tag; None when there is no such file.
    ``known``: the copy the latest version names (no copy needed when it is this one)."""
    found = path.store.stat(path.key)
    if found is None:
        return None
    digest = hashlib.sha1(found.tag.encode()).hexdigest()[:16]
    kept = layout.kept_actions_dir(root) / f"{path.name.removesuffix('.parquet')}-{digest}.parquet"
    if kept.key == known:
        return kept.key
    try:
        path.store.link(path.key, kept.key)
    except FileExistsError:
        pass  # kept already by an earlier version
    except FileNotFoundError:
        return None  # replaced between the stat and the link: the next version keeps it
    return kept.key
