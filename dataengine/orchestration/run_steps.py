"""One ingest's steps in order, once the store is held: the dataset claimed, its symbols' corporate actions,
the plan, the bars on the pool (:mod:`.run`), and what the bars were fetched under.

The pipeline (:mod:`.ingestion_pipeline`) holds the lock, the ledger record and the version around them and
passes its collaborators in; the steps build the run's own from them: its coverage ledger, its sources, its
plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date

from dataengine.datasets import DatasetKey
from dataengine.errors import DataEngineError
from dataengine.orchestration.actions_update import (
    ActionClients,
    ActionsUpdate,
    record_fetched_under,
    refetching,
    stale_adjusted,
    update_actions,
)
from dataengine.orchestration.planner import Plan
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.request import IngestRequest
from dataengine.orchestration.result import IngestResult
from dataengine.orchestration.run import IngestRun
from dataengine.sources.source import SourceFactory
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.storage.store import StorePath
from dataengine.storage.store_root import mark_store
from dataengine.timerange import NEW_YORK


def execute_steps(
    request: IngestRequest,
    *,
    root: StorePath,
    storage: ParquetStorage,
    progress: ProgressReporter,
    coverage_of: Callable[[DatasetKey], CoverageLedger],
    factory_of: Callable[[str], SourceFactory],
    plan: Callable[[IngestRequest, CoverageLedger], Plan],
    workers: int,
    new_store: bool,
    run_id: str = "",
) -> IngestResult:
    """Run ``request``'s steps and return the result; a fatal error is raised with ``.result`` set.
    ``factory_of``: what makes the named source's clients; ``plan``: a request's plan, persisted."""
    started = time.monotonic()  # the result's elapsed_s covers every step: corporate actions, plan, bars
    mark_store(root)
    notes = [f"new store at {root}"] if new_store else []
    storage.remove_stale_temp_files()
    request = replace(request, asof=storage.claim_dataset(request.dataset, request.feed, request.asof))
    coverage = coverage_of(request.dataset)
    make_source = factory_of(request.source)
    actions = ActionClients(make_source, workers)  # the step's clients: as many threads as the run's workers
    try:
        update = _update_actions(root, request, actions, progress)
    except BaseException as exc:
        actions.close()
        if isinstance(exc, DataEngineError):  # keys rejected, source unreachable: fatal for the run as for bars
            exc.result = IngestResult.not_started(request, exc, actions.stats, run_id, str(root))
            exc.result.elapsed_s = round(time.monotonic() - started, 3)
            progress.stopped(exc.result, exc)
        elif isinstance(exc, KeyboardInterrupt):  # stopped during them: the requests they cost are the run's
            stopped = IngestResult.not_started(request, "the run stopped early", actions.stats, run_id, str(root))
            stopped.elapsed_s = round(time.monotonic() - started, 3)
            exc.result = stopped  # type: ignore[attr-defined]
        raise
    stale = stale_adjusted(root, request, coverage)
    planned = plan(refetching(request, coverage, stale), coverage)
    run = IngestRun(
        request,
        planned,
        storage=storage,
        coverage=coverage,
        make_source=make_source,
        progress=progress,
        workers=workers,
        notes=notes,
        run_id=run_id,
        failed_before=update.failed,
        sources=actions.clients,
        started=started,
    )
    run.result.refetched = stale
    run.result.actions_new = update.changed.height
    run.result.source = request.source
    result = run.execute()
    record_fetched_under(root, request, result)
    return result


def _update_actions(root: StorePath, request: IngestRequest, clients: ActionClients, progress: ProgressReporter) -> ActionsUpdate:
    """Fetch and store the corporate actions of the request's symbols (see :mod:`.actions_update`)."""
    if not hasattr(clients.first, "fetch_actions"):
        return ActionsUpdate()  # a source without corporate actions (a test double, another vendor)
    start = request.range.start.astimezone(NEW_YORK).date()
    return update_actions_of(root, request.symbols, start, clients, progress, feed=request.feed, source=request.source)


def update_actions_of(root: StorePath, symbols: Sequence[str], start: date, clients: ActionClients,
                      progress: ProgressReporter, **how: str) -> ActionsUpdate:
    """The corporate-actions step for ``symbols``, announced; ``how``: :func:`.update_actions`' feed= and source=."""
    if not symbols:
        return ActionsUpdate()
    progress.announce(f"{len(symbols)} symbol(s): fetching corporate actions")

    def waiting(reason: str, seconds: float) -> None:  # before the bars' progress lines start: silence read as a hang
        if seconds >= 1:
            progress.announce(f"corporate actions: waiting {seconds:.0f} s ({reason})")

    clients.on_wait = waiting
    return update_actions(root, symbols, start, clients, **how)
