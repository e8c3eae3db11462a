"""The run's main thread: units handed to a thread pool, the pool stopped, the result put together.

Each unit is streamed into the store by a worker (:mod:`.run_worker`), which isolates per-symbol failures.
Fatal errors (keys rejected, endpoint unreachable, store not writable) stop every worker at once. Ctrl-C stops
cleanly: workers finish the partition write they are in (each write is atomic) and drop what is not yet
written.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from dataengine.counters import copy_counters
from dataengine.errors import DataEngineError, Interrupted, LockError, signal_of
from dataengine.orchestration import stopping
from dataengine.orchestration.planner import Plan
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.request import IngestRequest
from dataengine.orchestration.result import IngestResult
from dataengine.orchestration.run_worker import RunTally, UnitWorker
from dataengine.sources.source import BarSource, SourceFactory, process_spec
from dataengine.storage import layout
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timerange import NEW_YORK

if TYPE_CHECKING:
    from dataengine.orchestration.decode_pool import DecodePool

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 10.0
MAX_WORKERS = 64  # past this, threads only contend for the GIL, the disk and the request budget


class IngestRun:
    """One ingest of a planned request, driven from the main thread; its workers share ``tally`` with it.

    Collaborators come in as arguments: the store, the dataset's coverage ledger, the plan, a factory making
    one :class:`~dataengine.sources.source.BarSource` per worker thread, and the progress reporter.
    """

    def __init__(
        self,
        request: IngestRequest,
        plan: Plan,
        *,
        storage: ParquetStorage,
        coverage: CoverageLedger,
        make_source: SourceFactory,
        progress: ProgressReporter,
        workers: int,
        notes: Sequence[str] = (),
        run_id: str = "",
        failed_before: dict[str, str] | None = None,
        sources: Sequence[BarSource] = (),
        started: float | None = None,
    ) -> None:
        """``failed_before``: symbols a step before the bars failed (their corporate actions), failed in the
        result whatever their bars do; ``sources``: sources made for such a step, counted and closed with
        the workers'; ``started``: when the run began (``time.monotonic()``), if steps came before the bars:
        the result's ``elapsed_s`` covers the whole run."""
        self.started = started
        self.request = request
        self.plan = plan
        self.storage = storage
        self.coverage = coverage
        self.make_source = make_source
        self.progress = progress
        self.workers = workers
        self.tally = RunTally(progress, sources, storage.root.store.unanswered_s)
        self.failed_before = dict(failed_before or {})
        self._worker_numbers = itertools.count(1)
        # A worker's next page is fetched while it writes (not with decode processes: they read ahead already).
        # Intraday only: a page of daily bars is ~40 symbols x 12 months = ~480 files to write, far longer than
        # its request, so reading ahead saves little there and adds threads to a write-bound job.
        self.reads_ahead = request.timeframe.intraday
        self.result = IngestResult(
            timeframe=request.timeframe.name,
            feed=request.feed,
            adjustment=request.adjustment,
            start=request.range.start.isoformat(),
            end=request.range.end.isoformat(),
            notes=[*notes, *request.range.notes],
            run_id=run_id,
            storage_dir=str(storage.root),
        )

    def execute(self) -> IngestResult:
        """Fetch every unit on the pool; return the result, or raise the fatal error with ``.result`` set."""
        stopping.raise_if_requested()  # a stop asked for while planning whose KeyboardInterrupt was lost
        started = self.started if self.started is not None else time.monotonic()
        plan, tally = self.plan, self.tally
        units = plan.units
        for unit in units:
            for symbol in unit.symbols:
                tally.remaining[symbol] = tally.remaining.get(symbol, 0) + 1
        for symbol, reason in {**self.failed_before, **plan.damaged}.items():
            tally.fail_symbol(symbol, reason)
        if plan.up_to_date:
            tally.successful.extend(plan.up_to_date)
        if plan.up_to_date and not self.request.range.empty:  # an empty range's note says why instead
            self.result.notes.append(f"{len(plan.up_to_date)} symbol(s) already up to date: nothing to fetch")
        if self._sessionless_span is not None:
            self.result.notes.append(
                f"{self._sessionless_span} holds no trading session (a weekend or a market holiday): no bars to expect")
        # The threads the pool really gets: never more than MAX_WORKERS, nor more than there are units to run
        # (the log line says this number, not the one asked for; the note below says why they differ).
        threads = min(self.workers, MAX_WORKERS, max(len(units), 1))
        log.info(
            "ingesting %d symbol(s), %s, %s..%s, feed %s, adjustment %s: %d unit(s) on %d worker(s)",
            len(self.request.symbols), self.request.timeframe, self.request.range.start.isoformat(),
            self.request.range.end.isoformat(), self.request.feed, self.request.adjustment, len(units),
            threads,
        )
        self.progress.start(
            symbols=len(self.request.symbols),
            units=len(units),
            est_bars=sum(u.est_bars for u in units),
            counters=tally.counters,
            up_to_date=len(plan.up_to_date),
            run_id=self.result.run_id,
        )
        fatal: BaseException | None = None
        if self.workers > MAX_WORKERS:
            self.result.notes.append(
                f"{self.workers} workers asked for, {MAX_WORKERS} used: more threads only wait on each other "
                "and on the rate limit"
            )
        decoders = self._start_decoders(threads)
        worker = UnitWorker(self.request, tally, storage=self.storage, coverage=self.coverage,
                            make_source=self.make_source, progress=self.progress, reads_ahead=self.reads_ahead)
        pool = ThreadPoolExecutor(max_workers=threads, initializer=self._name_worker)
        futures: list[Future[None]] = []
        try:
            # inside the try: a stop landing while units are handed out must still stop and wait for the
            # workers already writing, before the run releases the store (a review found them writing after it)
            futures.extend(pool.submit(worker.execute_unit, unit) for unit in units)  # one at a time: kept if stopped
            pending: set[Future[None]] = set(futures)
            while pending:
                stopping.raise_if_requested()  # a stop whose KeyboardInterrupt was lost on its way here
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for future in done:
                    exc = future.exception()
                    if isinstance(exc, Interrupted):
                        continue
                    if exc is not None:
                        fatal = exc
                        tally.stop.set()
                if fatal is not None:
                    break
        except KeyboardInterrupt as exc:
            log.warning("interrupted: stopping workers")
            self.result.signal = signal_of(exc)
            tally.stop.set()
            self.result.interrupted = True
        finally:
            if fatal is not None or self.result.interrupted:
                tally.stop.set()
            if decoders is not None and tally.stop.is_set():
                decoders.stop_all()
            pool.shutdown(wait=False, cancel_futures=True)
            # A future cancelled by shutdown() never counts as done for wait(): waiting on it would always
            # take the whole grace period. Wait only for the units that were running.
            wait_for_running([f for f in futures if not f.cancelled()])
            for source in tally.sources:
                source.close()
            if decoders is not None:
                decoders.close()
            if units:
                self._compact_coverage()
        self.finish(time.monotonic() - started)
        if fatal is None:
            self.progress.finish(self.result)
            return self.result
        self.progress.stopped(self.result, fatal)  # no "finished" line before the error's own
        if isinstance(fatal, DataEngineError):
            fatal.result = self.result
        raise fatal

    def _compact_coverage(self) -> None:
        """Merge the run's coverage records. Uncompacted coverage is as true, only longer: a run that lost the
        lock leaves it so rather than rewrite it under the run that took over (the run guard reports that, exit
        3), and a store that stopped answering only gets a warning here, so the error that stopped the run (or
        the next step's) is the one the user sees, with the run's result."""
        try:
            self.coverage.compact()
        except LockError:
            pass
        except DataEngineError as exc:
            log.warning("coverage not compacted (the next run does it): %s", exc)

    def _start_decoders(self, threads: int) -> DecodePool | None:
        """Decode processes for this run when it is worth them (:func:`.decode_pool.decode_processes`): the
        worker threads' sources then fetch and decode in them, and the threads only write."""
        if not self.plan.units:
            return None
        from dataengine.orchestration.decode_pool import DecodePool, decode_processes  # a run with bars to fetch

        spec = process_spec(self.make_source)
        processes = decode_processes(spec, threads, sum(u.est_bars for u in self.plan.units))
        if spec is None or not processes:
            return None
        decoders = DecodePool(spec, processes, self.tally.stop, threads)
        self.make_source = cast(SourceFactory, decoders.source)  # its sources have no corporate actions
        self.reads_ahead = False  # a decode process already streams pages ahead of its worker
        log.info("decoding pages in %d process(es) for %d worker thread(s)", processes, threads)
        return decoders

    def _name_worker(self) -> None:
        """Pool threads are named ``worker-1``, ``worker-2``...: every log record and progress row shows it."""
        threading.current_thread().name = f"worker-{next(self._worker_numbers)}"

    def finish(self, elapsed: float) -> None:
        tally = self.tally
        stats = tally.counters()
        r = self.result
        r.successful = sorted(tally.successful)
        r.failed = dict(sorted(tally.failed.items()))
        if r.interrupted or tally.stop.is_set():
            pending = [s for s, n in tally.remaining.items() if n > 0 and s not in tally.failed]
            if pending and not r.interrupted:  # a symbol with bars written is part-fetched, not "not fetched"
                r.failed.update({s: "partly fetched: the run stopped early (the same command fetches the rest)"
                                 if s in tally.with_bars else "not fetched: the run stopped early" for s in pending})
        copy_counters(stats, r)
        r.no_data = self.no_data()
        r.symbols_fetched = sum(1 for spans in self.plan.todo.values() if spans)
        r.asof = self.request.asof
        r.elapsed_s = round(elapsed, 3)

    def no_data(self) -> list[str]:
        """Symbols that finished without error of which the dataset holds no bar at all, whether fetched this
        run or already up to date: a typo (APPL) or a ticker the feed does not know. Named on every run until a
        bar of theirs is stored, not only on the run that first found them empty (a symbol with bars stored
        outside the range is not among them). One listing of the dataset, only when some symbol got no bar."""
        silent = sorted(s for s in self.tally.successful if s not in self.tally.with_bars)
        # A weekend has no bars, and a range still in the SIP delay none yet: that blames no symbol.
        if not silent or self._sessionless_span is not None or self.request.range.empty:
            return []
        stored = set(layout.symbols_in(self.storage.dataset_dir(self.request.dataset)))
        return [s for s in silent if s not in stored]

    @cached_property
    def _sessionless_span(self) -> str | None:
        """The run's New York days (``first..last``) when they hold no XNYS session, else None. The overnight
        feed (boats) trades on Sunday evenings too: for it, every range may hold bars."""
        from dataengine.calendar import sessions

        first, last = (moment.astimezone(NEW_YORK).date() for moment in (self.request.range.start, self.request.range.end))
        if self.request.feed == "boats" or sessions(first, last):
            return None
        return first.isoformat() if first == last else f"{first}..{last}"


def wait_for_running(running: Sequence[Future[Any]]) -> None:
    """Wait up to the grace period for the units that were running (a run's, or its corporate actions'); a
    further Ctrl-C (:mod:`.stopping`) shortens it to a second."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    hurried = False
    while True:
        if not hurried and stopping.hurried():
            hurried, deadline = True, min(deadline, time.monotonic() + stopping.HURRIED_GRACE_S)
        left = deadline - time.monotonic()
        if left <= 0 or not wait(running, timeout=min(left, 0.1)).not_done:
            return
