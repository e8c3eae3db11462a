"""What a run leaves in the store besides its bars and its ledger record: versions, and a fresh status cache.

The partitions a run writes become one version of its dataset; new corporate actions it stored make a
version of the store's other raw datasets too; the footers it wrote go into the status cache. None of this
may hide the run's own result or error, so nothing here raises (an interrupt aside): a failure is logged, and
the next run takes in what was left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dataengine.errors import DataEngineError
from dataengine.orchestration.request import IngestRequest
from dataengine.orchestration.result import IngestResult
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.storage.run_versions import DatasetVersion, record_actions
from dataengine.storage.store import StorePath
from dataengine.storage.versions import Provenance
from dataengine.storage.versions.model import Reason

if TYPE_CHECKING:
    from dataengine.storage.footer_index import WrittenFooter

log = logging.getLogger(__name__)


def versioned(root: StorePath, storage: ParquetStorage, request: IngestRequest, execute: Callable[[], IngestResult], *,
              run_id: str, command: str) -> IngestResult:
    """Call ``execute`` (the run) as one version of the request's dataset: what it wrote is committed however
    it ends (its error, if any, wins), with the corporate actions it stored; after a run that wrote files, the
    status cache reads their footers."""
    storage.take_written()
    version = DatasetVersion(root, request.dataset.dirname, Provenance(
        run_id=run_id, source=request.source, feed=request.feed, adjustment=request.adjustment,
        asof=request.asof, command=command))
    version.begin()  # before the first write: adopts an unversioned dataset as version 0
    repair = request.ranges is not None
    # new corporate actions stored by this run make a version of the store's other raw datasets too
    actions_made = Provenance(run_id=run_id, reason="corporate-actions", command=command)
    try:
        result = execute()
    except BaseException as exc:  # what was written is committed however the run ends; its error wins
        _commit_version(version, storage.take_written(), getattr(exc, "result", None), repair=repair)
        record_new_actions(root, actions_made, besides=version)
        raise
    written = storage.take_written()
    _commit_version(version, written, result, repair=repair)
    record_new_actions(root, actions_made, besides=version)
    if written:  # no file changed: the cache is as fresh as the plan's footer check left it
        _refresh_status_cache(root, request, written)
    return result


def _commit_version(version: DatasetVersion, written: dict[str, WrittenFooter], result: IngestResult | None, *,
                    repair: bool) -> None:
    """Commit a run's partitions as one version and put the dataset's version after it in ``result`` (if
    any). Never raises (an interrupt aside), so a failed commit never hides the run's result or its own
    error: a run that lost the lock, cannot reach the store or fills the disk has stored its bars and leaves
    its marker, and the next run's commit takes in what it wrote. The failure is logged and is the result's
    ``version_error`` (exit 1)."""
    reason: Reason = "repair" if repair else "refetch-after-corporate-action" if result and result.refetched else "run"
    try:
        committed = version.commit(written, reason=reason)
    except Exception as exc:  # whatever it is, the run's own outcome must come out
        why = str(exc) if isinstance(exc, DataEngineError) else f"internal error: {type(exc).__name__}: {exc}"
        log.error("%s: the run's version was not committed: %s; its bars are stored, and the next run's commit "
                  "takes them in", version.dataset, why)
        if not isinstance(exc, DataEngineError):
            log.debug("the commit's traceback", exc_info=True)
        if result is not None:
            result.version_error = why
        return
    if result is not None:
        result.version = committed


def record_new_actions(root: StorePath, provenance: Provenance, *, besides: DatasetVersion | None = None) -> None:
    """New corporate actions make a version of every raw dataset (see :func:`record_actions`). Never raises:
    until a later run or update records them, reads see the latest version and the actions it names."""
    try:
        record_actions(root, provenance, besides=besides)
    except Exception as exc:  # noqa: BLE001 - as for _commit_version: the run's own result or error wins
        log.error("the corporate actions stored were not recorded in a version yet (the next run does it): %s", exc)


def _refresh_status_cache(root: StorePath, request: IngestRequest, known: dict[str, WrittenFooter]) -> None:
    """Read the footers this run wrote into the status cache now, while they are in the page cache, so that
    ``dataengine status`` stays fast. Best effort: a failure here never fails the run."""
    from dataengine.storage.footer_index import refresh_cache  # late: only needed after a run

    started = time.monotonic()
    try:
        # a plan checks the footers of its symbols first (not a repair's, given exact ranges): then only what
        # the run wrote changed, and that is all the cache needs
        read = refresh_cache(root, request.dataset.dirname, request.symbols, known, indexed=request.ranges is None)
    except Exception as exc:  # noqa: BLE001
        log.info("status cache not refreshed: %s", exc)
        return
    log.debug("status cache: %d footer(s) read in %.2fs", read, time.monotonic() - started)
