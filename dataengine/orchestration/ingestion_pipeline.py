"""The public front end of an ingest (the product description's ``IngestionPipeline``).

It validates input into a request (:mod:`.request`), plans it against what the store holds (:mod:`.planner`),
and runs it (:mod:`.run`) under the store's lock with one ledger record (:mod:`.run_guard`). Collaborators
are keyword arguments, and all of them follow one store root.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dataengine.config import Settings
from dataengine.datasets import DatasetKey
from dataengine.errors import DataEngineError
from dataengine.loaders.symbol_loader import SymbolLoader
from dataengine.orchestration import sources
from dataengine.orchestration.actions_update import (
    ActionsUpdate,
    record_fetched_under,
    refetching,
    stale_adjusted,
    update_actions,
)
from dataengine.orchestration.api_progress import api_reporter
from dataengine.orchestration.planner import Plan, plan_request
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.request import DateLike, IngestKeywords, IngestOptions, IngestRequest, build_request
from dataengine.orchestration.result import IngestResult
from dataengine.orchestration.run import IngestRun
from dataengine.orchestration.run_guard import locked_and_recorded
from dataengine.sources.source import BarSource, SourceFactory
from dataengine.storage import layout
from dataengine.storage.coverage import CoverageLedger, Interval
from dataengine.storage.metadata_store import MetadataStore, validate_index_name
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.storage.run_ledger import RunLedger, RunRecord, mask_secrets
from dataengine.storage.run_lock import RunLock
from dataengine.storage.run_versions import DatasetVersion, record_actions
from dataengine.storage.store import StorePath, open_store
from dataengine.storage.store_root import check_writable_root, mark_store
from dataengine.storage.versions import Provenance
from dataengine.storage.versions.model import Reason
from dataengine.timeframes import Timeframe
from dataengine.timerange import NEW_YORK

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame
    from typing_extensions import Unpack

    from dataengine.storage.footer_index import WrittenFooter

log = logging.getLogger(__name__)

__all__ = ["IngestRequest", "IngestionPipeline", "Plan"]


class IngestionPipeline:
    """Fetch bars for many symbols in parallel and store each bar exactly once.

    One pipeline may run several ingests one after another; it is not meant to run two at once.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        settings: Settings | None = None,
        storage_dir: str | Path | StorePath | None = None,
        progress: ProgressReporter | bool | None = None,
        source: SourceFactory | None = None,
        wait_for_lock: bool = False,
        lock_timeout: float | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        """``max_workers`` stays positional (the seed API's ``IngestionPipeline(8)``); every collaborator is a
        keyword argument. The store is ``storage_dir`` (a directory, ``s3://bucket/prefix`` or an opened store),
        else the settings' ``storage_dir``: it is opened once, here, and the bars, lock, ledger, coverage and
        index metadata all live under it. ``progress``, the library's only output (it logs, never prints): by
        default a display when someone watches (stderr a terminal, IPython, Jupyter), else none; ``False``
        none, ``True`` always, or your own :class:`ProgressReporter` (:mod:`.api_progress`). ``source``:
        what makes one bar source per worker thread for every run, whatever source a run names (default: the
        named source's clients from the settings, sharing one pacer per run: :mod:`.sources`). ``wait_for_lock``: when another process holds the store, wait for it (at
        most ``lock_timeout`` seconds) instead of raising :class:`~dataengine.errors.LockError` at once.
        ``command``: the command line the run ledger records (default ``sys.argv``; secrets masked)."""
        settings = settings or Settings.load()
        if storage_dir is not None and not isinstance(storage_dir, StorePath):
            settings = settings.with_overrides(storage_dir=storage_dir, origin="argument")
        if max_workers is not None:
            settings = settings.with_overrides(workers=max_workers, origin="argument")
        self.settings = settings
        self.max_workers = settings.workers
        self.root = root = storage_dir if isinstance(storage_dir, StorePath) else \
            open_store(settings.storage_dir, create=settings.storage_dir_is_default)
        self.storage = ParquetStorage(root)
        self.metadata = MetadataStore(root)
        self.progress = api_reporter(progress, interval=settings.progress_interval)
        self.ledger = RunLedger(root)
        self.source = source
        self.wait_for_lock = wait_for_lock or lock_timeout is not None
        self.lock_timeout = lock_timeout
        self._held: RunLock | None = None  # the run lock, while :meth:`holding_store` holds it
        self.command = mask_secrets(list(command) if command is not None else sys.argv, sources.secrets(settings))

    # -- public API (names from the product description) ---------------------------------------------------

    def ingest_symbols(
        self,
        symbols: Iterable[str],
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        **options: Unpack[IngestKeywords],
    ) -> IngestResult:
        """Fetch and store ``symbols`` over ``[start_date, end_date]`` (New York days, inclusive).

        ``options`` are :class:`IngestOptions`' fields (``feed``, ``adjustment``, ``full_refresh``, ``lag``,
        ``asof``, ``source``: ``alpaca``, ``massive``, ``sample``; default the ``source`` setting). Incremental: only what the dataset does not hold yet is fetched (plus the ``lag`` most recent
        sessions of the last fetch, which may have been corrected since); ``full_refresh=True`` fetches
        everything. Raises :class:`~dataengine.errors.UsageError` before any request for bad input, and
        :class:`~dataengine.errors.FatalRunError` (with ``.result`` attached) when the run cannot go on.
        Per-symbol failures are in the returned result's ``failed``.
        """
        return self.run(self.prepare(symbols, start_date, end_date, timeframe, IngestOptions(**options)))

    def ingest_from_csv(
        self,
        csv_path: str | Path,
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        index_name: str | None = None,
        **options: Unpack[IngestKeywords],
    ) -> IngestResult:
        """Like :meth:`ingest_symbols` for the symbols of a CSV or text file; ``index_name`` also records the
        list as that index's membership from today."""
        if index_name is not None:
            validate_index_name(index_name)
        request = self.prepare_csv(csv_path, start_date, end_date, timeframe, IngestOptions(**options))
        result = self.run(request)  # a run that cannot start (keys rejected, store locked) raises: no record
        if index_name is not None:
            self.metadata.store(index_name, list(request.symbols))
        return result

    def prepare_csv(
        self,
        csv_path: str | Path,
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        options: IngestOptions = IngestOptions(),  # noqa: B008 - frozen: one shared default is safe
    ) -> IngestRequest:
        """:meth:`prepare` for the symbols of a CSV or text file (a bare name is looked up in the bundled lists)."""
        return self.prepare(SymbolLoader.from_file(csv_path), start_date, end_date, timeframe, options)

    def prepare(
        self,
        symbols: Iterable[str],
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        options: IngestOptions = IngestOptions(),  # noqa: B008 - frozen: one shared default is safe
        *,
        ranges: dict[str, list[Interval]] | None = None,
    ) -> IngestRequest:
        """Validate everything a run needs (no request is sent, nothing is written); ``ranges``: exactly these
        per-symbol ranges instead of what coverage says (a repair). A dataset keeps the ``asof`` it was created
        with."""
        name = sources.chosen(self.settings, options.source).name
        today = datetime.now(NEW_YORK).date()
        request = build_request(
            symbols, start_date, end_date, timeframe, options, ranges=ranges, default_source=name,
            default_start=sources.history_start(self.settings, name, today),
            limits=sources.limits(self.settings, name, today),
        )
        if self.source is None:
            sources.check_keys(self.settings, name)  # the source needs keys: say so before anything runs
        check_writable_root(self.root)
        self.storage.check_feed(request.dataset, request.feed, request.asof)
        return request

    @contextmanager
    def holding_store(self) -> Iterator[None]:
        """Hold the store's run lock (or wait for it, as the pipeline was told) across several steps: a repair
        sets damaged files aside and drops their coverage, then fetches them again, and nothing else may write
        in between. Runs started inside use this hold. Raises LockError (exit 3) when the store is busy."""
        lock = RunLock(self.root, wait=self.wait_for_lock, timeout=self.lock_timeout, command=" ".join(self.command))
        with lock:
            self._held = lock
            try:
                yield
            finally:
                self._held = None

    def coverage(self, dataset: DatasetKey) -> CoverageLedger:
        return CoverageLedger(self.storage.coverage_path(dataset))

    def plan(self, request: IngestRequest, coverage: CoverageLedger | None = None, *, persist: bool = False) -> Plan:
        """Per-symbol ranges still to fetch, and the units that fetch them (nothing is sent)."""
        return plan_request(
            request, self.storage, coverage or self.coverage(request.dataset), workers=self.max_workers,
            requests_per_minute=sources.pace(self.settings, request.source), persist=persist,
        )

    def dry_run(self, request: IngestRequest) -> dict[str, object]:
        """The plan as a JSON-ready summary: what is stored, what would be fetched, roughly how many requests."""
        return self.plan(request).summary()

    def run(self, request: IngestRequest) -> IngestResult:
        """Execute a prepared request under the store's run lock, and append its record to the run ledger.

        Raises :class:`~dataengine.errors.LockError` (exit 3) when another process holds the store and
        ``wait_for_lock`` is off (or the wait timed out). Every run that gets this far leaves one ledger
        record, whether it succeeds, fails, is refused the lock or is interrupted.
        """
        for note in request.range.notes:
            log.info(note)  # shown once, with the result's notes
        record = RunRecord(
            command=self.command,
            timeframe=request.timeframe.name,
            feed=request.feed,
            adjustment=request.adjustment,
            start=request.range.start.isoformat(),
            end=request.range.end.isoformat(),
            symbols_requested=len(request.symbols),
            source=request.source,
        )
        new_store = check_writable_root(self.root)  # before the lock file makes it look like a store
        with locked_and_recorded(
            self.root, self.ledger, record,
            wait=self.wait_for_lock, timeout=self.lock_timeout, command=" ".join(self.command), held=self._held,
        ) as outcome:
            self.progress.announce(f"{len(request.symbols)} symbol(s): checking the store and planning (run {record.run_id})")
            self.storage.take_written()
            version = DatasetVersion(self.root, request.dataset.dirname, Provenance(
                run_id=record.run_id, source=request.source, feed=request.feed, adjustment=request.adjustment,
                asof=request.asof, command=" ".join(self.command)))
            version.begin()  # before the first write: adopts an unversioned dataset as version 0
            repair = request.ranges is not None
            # new corporate actions stored by this run make a version of the store's other raw datasets too
            actions_made = Provenance(run_id=record.run_id, reason="corporate-actions", command=" ".join(self.command))
            try:
                result = outcome.result = self._execute(request, new_store=new_store, run_id=record.run_id)
            except BaseException as exc:  # what was written is committed however the run ends; its error wins
                _commit_version(version, self.storage.take_written(), getattr(exc, "result", None), repair=repair)
                _record_actions(self.root, actions_made, besides=version)
                raise
            written = self.storage.take_written()
            _commit_version(version, written, result, repair=repair)
            _record_actions(self.root, actions_made, besides=version)
            if written:  # no file changed: the cache is as fresh as the plan's footer check left it
                _refresh_status_cache(self.root, request, written)
        return result

    def update_corporate_actions(self, symbols: Iterable[str] | None = None, start_date: DateLike = None, *,
                                 source: str | None = None) -> IngestResult:
        """Fetch and store the corporate actions of ``symbols`` (default: every symbol of the source's datasets)
        from ``source`` (default: the ``source`` setting) processed from ``start_date`` (default
        ``default_start``) to today, without fetching bars; under the run lock, with a ledger record, like a
        run. The result's ``actions_new`` counts new or changed actions."""
        from dataengine.loaders.symbol_loader import clean_symbols
        from dataengine.timerange import parse_bound

        root, name = self.root, sources.chosen(self.settings, source).name
        if symbols is None:
            wanted = sorted({s for d in layout.dataset_names(root, name) for s in layout.symbols_in(layout.dataset_dir(root, d))})
        else:
            wanted = sorted(clean_symbols(list(symbols), source="symbols"))
        if self.source is None and wanted:
            sources.check_keys(self.settings, name)
        start = parse_bound(start_date or self.settings.default_start, is_end=False, name="start").astimezone(NEW_YORK).date()
        record = RunRecord(command=self.command, start=start.isoformat(), symbols_requested=len(wanted), source=name)
        check_writable_root(root)
        with locked_and_recorded(
            root, self.ledger, record, wait=self.wait_for_lock, timeout=self.lock_timeout, command=" ".join(self.command),
            held=self._held,
        ) as outcome:
            started = time.monotonic()
            client = (self.source or sources.factory(self.settings, name))(stop=threading.Event(), on_wait=None)
            try:
                update = self._update_actions_of(wanted, start, client, feed="sip", source=name)
            finally:
                client.close()
                _record_actions(root, Provenance(run_id=record.run_id, reason="corporate-actions",
                                                 command=" ".join(self.command)))
            result = IngestResult(
                successful=[s for s in wanted if s not in update.failed], failed=dict(sorted(update.failed.items())),
                start=start.isoformat(), actions_new=update.changed.height, storage_dir=str(root), run_id=record.run_id,
                elapsed_s=round(time.monotonic() - started, 3), source=name,
            )
            result.count_requests(client.stats)
            outcome.result = result
        return result

    def ingest_ranges(self, ranges: dict[str, list[Interval]], dataset: DatasetKey) -> IngestResult:
        """Fetch exactly ``ranges`` (per symbol) into an existing dataset, with its recorded feed: a repair."""
        lo = min(a for spans in ranges.values() for a, _ in spans)
        hi = max(b for spans in ranges.values() for _, b in spans)
        feed = (self.storage.dataset_info(dataset) or {}).get("feed", "sip")
        request = self.prepare(
            list(ranges), lo, hi, dataset.timeframe,
            IngestOptions(feed=feed, adjustment=dataset.adjustment, source=dataset.source), ranges=ranges,
        )
        return self.run(request)

    def _execute(self, request: IngestRequest, *, new_store: bool, run_id: str = "") -> IngestResult:
        started = time.monotonic()  # the result's elapsed_s covers every step: corporate actions, plan, bars
        mark_store(self.root)
        notes = [f"new store at {self.root}"] if new_store else []
        self.storage.remove_stale_temp_files()
        request = replace(request, asof=self.storage.claim_dataset(request.dataset, request.feed, request.asof))
        coverage = self.coverage(request.dataset)
        make_source = self.source or sources.factory(self.settings, request.source)
        stop = threading.Event()
        actions_source = make_source(stop=stop, on_wait=None)
        try:
            update = self._update_actions(request, actions_source)
        except BaseException as exc:
            actions_source.close()
            if isinstance(exc, DataEngineError):  # keys rejected, source unreachable: fatal for the run as for bars
                exc.result = IngestResult.not_started(request, exc, actions_source.stats, run_id, str(self.root))
                exc.result.elapsed_s = round(time.monotonic() - started, 3)
                self.progress.finish(exc.result)
            raise
        stale = stale_adjusted(self.root, request, coverage)
        plan = self.plan(refetching(request, coverage, stale), coverage, persist=True)
        run = IngestRun(
            request,
            plan,
            storage=self.storage,
            coverage=coverage,
            make_source=make_source,
            progress=self.progress,
            workers=self.max_workers,
            notes=notes,
            run_id=run_id,
            failed_before=update.failed,
            sources=[actions_source],
            started=started,
        )
        run.result.refetched = stale
        run.result.actions_new = update.changed.height
        run.result.source = request.source
        result = run.execute()
        record_fetched_under(self.root, request, result)
        return result

    def _update_actions(self, request: IngestRequest, source: BarSource) -> ActionsUpdate:
        """Fetch and store the corporate actions of the request's symbols (see :mod:`.actions_update`)."""
        if not hasattr(source, "fetch_actions"):
            return ActionsUpdate()  # a source without corporate actions (a test double, another vendor)
        start = request.range.start.astimezone(NEW_YORK).date()
        return self._update_actions_of(request.symbols, start, source, feed=request.feed, source=request.source)

    def _update_actions_of(self, symbols: Sequence[str], start: date, client: BarSource, **how: str) -> ActionsUpdate:
        if not symbols:  # ``how``: update_actions' feed= and source=
            return ActionsUpdate()
        self.progress.announce(f"{len(symbols)} symbol(s): fetching corporate actions")
        return update_actions(self.root, symbols, start, client, **how)


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


def _record_actions(root: StorePath, provenance: Provenance, *, besides: DatasetVersion | None = None) -> None:
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
