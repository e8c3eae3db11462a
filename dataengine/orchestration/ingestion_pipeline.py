"""The public front end of an ingest (the product description's ``IngestionPipeline``).

It validates input into a request (:mod:`.request`), plans it against what the store holds (:mod:`.planner`),
and runs its steps (:mod:`.run_steps`) under the store's lock with one ledger record (:mod:`.run_guard`), as
one version of the dataset (:mod:`.run_commit`). Collaborators are keyword arguments, and all of them follow
one store root.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from dataengine.config import Settings
from dataengine.counters import RequestCounts
from dataengine.datasets import DatasetKey
from dataengine.errors import Terminated, signal_of
from dataengine.loaders.symbol_loader import SymbolLoader
from dataengine.orchestration import sources
from dataengine.orchestration.actions_update import ActionClients
from dataengine.orchestration.api_progress import api_reporter
from dataengine.orchestration.planner import Plan, plan_request
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.request import (
    DateLike,
    IngestKeywords,
    IngestOptions,
    IngestRequest,
    build_request,
    options_of,
)
from dataengine.orchestration.result import IngestResult
from dataengine.orchestration.run_commit import record_new_actions, versioned
from dataengine.orchestration.run_guard import acquire_recorded, locked_and_recorded
from dataengine.orchestration.run_steps import execute_steps, update_actions_of
from dataengine.sources.source import SourceFactory
from dataengine.storage import layout
from dataengine.storage.coverage import CoverageLedger, Interval
from dataengine.storage.metadata_store import MetadataStore, validate_index_name
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.storage.run_ledger import RunLedger, RunRecord, mask_secrets
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import StorePath, open_store
from dataengine.storage.store_root import check_writable_root
from dataengine.storage.versions import Provenance
from dataengine.timeframes import Timeframe
from dataengine.timerange import NEW_YORK

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame
    from typing_extensions import Unpack

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
            open_store(settings.location, create=settings.storage_dir_is_default)
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
        :class:`~dataengine.errors.FatalRunError` when the run cannot go on (with ``.result`` attached once it has
        begun; a store another run holds is a ``LockError`` with none).
        Per-symbol failures are in the returned result's ``failed``. Ctrl-C stops the run cleanly (every
        partition written stays, as a version) and then raises ``KeyboardInterrupt``, with the run's result
        as ``.result``: a script's loop or a notebook cell stops too.
        """
        request = self.prepare(symbols, start_date, end_date, timeframe, options_of("ingest_symbols", dict(options)))
        return _unless_stopped(self.run(request))

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
        list as that index's membership from today (not when the run was stopped)."""
        if index_name is not None:
            validate_index_name(index_name)
        request = self.prepare_csv(csv_path, start_date, end_date, timeframe, options_of("ingest_from_csv", dict(options)))
        # a run that cannot start (keys rejected, store locked) raises: no record
        result = _unless_stopped(self.run(request))
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
        *,
        keys: bool = True,
    ) -> IngestRequest:
        """:meth:`prepare` for the symbols of a CSV or text file (a bare name is looked up in the bundled lists)."""
        return self.prepare(SymbolLoader.from_file(csv_path), start_date, end_date, timeframe, options, keys=keys)

    def prepare(
        self,
        symbols: Iterable[str],
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        options: IngestOptions = IngestOptions(),  # noqa: B008 - frozen: one shared default is safe
        *,
        ranges: dict[str, list[Interval]] | None = None,
        keys: bool = True,
    ) -> IngestRequest:
        """Validate everything a run needs (no request is sent, nothing is written); ``ranges``: exactly these
        per-symbol ranges instead of what coverage says (a repair); ``keys=False``: the source's keys need not be
        set (a dry run sends nothing). A dataset keeps the ``asof`` it was created with."""
        name = sources.chosen(self.settings, options.source).name
        today = datetime.now(NEW_YORK).date()
        request = build_request(
            symbols, start_date, end_date, timeframe, options, ranges=ranges, default_source=name,
            default_start=sources.history_start(self.settings, name, today),
            limits=sources.limits(self.settings, name, today),
        )
        if self.source is None and keys:
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
        # refused or stopped before the hold: the ledger says so, as for a run (the runs under it record themselves)
        acquire_recorded(lock, self.ledger, RunRecord(command=self.command))
        self._held = lock
        try:
            yield
        finally:
            self._held = None
            lock.release()

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
            new_store=new_store,
        ) as outcome:
            self.progress.announce(f"{len(request.symbols)} symbol(s): checking the store and planning (run {record.run_id})")

            def execute() -> IngestResult:
                result = outcome.result = execute_steps(
                    request, root=self.root, storage=self.storage, progress=self.progress, coverage_of=self.coverage,
                    factory_of=lambda name: self.source or sources.factory(self.settings, name),
                    plan=partial(self.plan, persist=True),
                    workers=self.max_workers, new_store=new_store, run_id=record.run_id,
                )
                return result

            try:
                result = versioned(self.root, self.storage, request, execute, run_id=record.run_id,
                                   command=" ".join(self.command))
            except KeyboardInterrupt as stop:  # a stop the run did not catch itself: before its bars (corporate
                # actions, planning), or after them (its version, the status cache): a result all the same, for
                # --json and the ledger; the run's own when it has one, else one of the same shape
                stopped = getattr(stop, "result", None) or outcome.result or IngestResult.not_started(
                    request, "the run stopped early", RequestCounts(), record.run_id, str(self.root))
                if not stopped.interrupted:  # one the run did not mark itself (it marks a stop it caught)
                    stopped.interrupted, stopped.signal = True, signal_of(stop)
                stop.result = stopped  # type: ignore[attr-defined]
                raise
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
            wanted = sorted(clean_symbols(symbols, source="symbols"))
        if self.source is None and wanted:
            sources.check_keys(self.settings, name)
        start = parse_bound(start_date or self.settings.default_start, is_end=False, name="start").astimezone(NEW_YORK).date()
        record = RunRecord(command=self.command, start=start.isoformat(), symbols_requested=len(wanted), source=name)
        new_store = check_writable_root(root)
        with locked_and_recorded(
            root, self.ledger, record, wait=self.wait_for_lock, timeout=self.lock_timeout, command=" ".join(self.command),
            held=self._held, new_store=new_store,
        ) as outcome:
            started = time.monotonic()
            clients = ActionClients(self.source or sources.factory(self.settings, name), self.max_workers)
            try:
                update = update_actions_of(root, wanted, start, clients, self.progress, feed="sip", source=name)
            finally:
                clients.close()
                record_new_actions(root, Provenance(run_id=record.run_id, reason="corporate-actions",
                                                    command=" ".join(self.command)))
            result = IngestResult(
                successful=[s for s in wanted if s not in update.failed], failed=dict(sorted(update.failed.items())),
                start=start.isoformat(), actions_new=update.changed.height, storage_dir=str(root), run_id=record.run_id,
                elapsed_s=round(time.monotonic() - started, 3), source=name,
            )
            result.count_requests(clients.stats)
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


def _unless_stopped(result: IngestResult) -> IngestResult:
    """The result of a library call's run, or, when a signal stopped it, the stop raised again with the result
    as ``.result``. The run caught the stop to finish cleanly (the write in progress, its version, the ledger
    line); a script must still stop, as it would on Ctrl-C anywhere else. The CLI calls :meth:`run` itself and
    turns a stopped run into its exit code instead."""
    if not result.interrupted:
        return result
    stop = KeyboardInterrupt() if result.signal in (None, signal.SIGINT) else Terminated(result.signal)
    stop.result = result  # type: ignore[attr-defined]
    raise stop

