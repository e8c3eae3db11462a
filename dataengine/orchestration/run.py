"""The run: units on a thread pool, each streamed page by page into the store, failures isolated per symbol.

Fatal errors (keys rejected, endpoint unreachable, store not writable) stop every worker at once. Ctrl-C stops
cleanly: workers finish the partition write they are in (each write is atomic) and drop what is not yet
written. Coverage is recorded as partitions land, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, cast

import polars as pl

from dataengine.counters import RequestCounts, WriteCounts, copy_counters
from dataengine.errors import (
    DamagedPartitionError,
    DataEngineError,
    DecodeProcessDied,
    FatalRunError,
    Interrupted,
    LockError,
    TerminalSourceError,
    Terminated,
    TransientSourceError,
)
from dataengine.orchestration import stopping
from dataengine.orchestration.planner import Plan, WorkUnit
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.read_ahead import read_ahead
from dataengine.orchestration.request import IngestRequest
from dataengine.orchestration.result import IngestResult
from dataengine.sources.source import BarSource, Page, SourceFactory, process_spec
from dataengine.storage import layout
from dataengine.storage.coverage import CoverageLedger, Piece
from dataengine.storage.layout import PartitionKey, split_partitions
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timerange import NEW_YORK, ONE_MICROSECOND, ny_month_start

if TYPE_CHECKING:
    from dataengine.orchestration.decode_pool import DecodePool

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 10.0
MAX_WORKERS = 64  # past this, threads only contend for the GIL, the disk and the request budget


class IngestRun:
    """One ingest of a planned request: shared by the worker threads, guarded by ``lock``.

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
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.sources: list[BarSource] = list(sources)
        self.failed_before = dict(failed_before or {})
        self.remaining: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.successful: list[str] = []
        self.with_bars: set[str] = set()  # symbols the source returned at least one bar for
        self.written = WriteCounts()
        self._worker_numbers = itertools.count(1)
        self.reads_ahead = True  # a worker's next page is fetched while it writes (not with decode processes)
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

    # -- orchestration (main thread) ----------------------------------------------------------------------

    def execute(self) -> IngestResult:
        """Fetch every unit on the pool; return the result, or raise the fatal error with ``.result`` set."""
        started = self.started if self.started is not None else time.monotonic()
        plan = self.plan
        units = plan.units
        for unit in units:
            for symbol in unit.symbols:
                self.remaining[symbol] = self.remaining.get(symbol, 0) + 1
        for symbol, reason in {**self.failed_before, **plan.damaged}.items():
            self.fail_symbol(symbol, reason)
        if plan.up_to_date:
            self.successful.extend(plan.up_to_date)
            self.result.notes.append(f"{len(plan.up_to_date)} symbol(s) already up to date: nothing to fetch")
        if self._sessionless_span is not None:
            self.result.notes.append(
                f"{self._sessionless_span} holds no trading session (a weekend or a market holiday): no bars to expect")
        log.info(
            "ingesting %d symbol(s), %s, %s..%s, feed %s, adjustment %s: %d unit(s) on %d worker(s)",
            len(self.request.symbols), self.request.timeframe, self.request.range.start.isoformat(),
            self.request.range.end.isoformat(), self.request.feed, self.request.adjustment, len(units),
            self.workers,
        )
        self.progress.start(
            symbols=len(self.request.symbols),
            units=len(units),
            est_bars=sum(u.est_bars for u in units),
            counters=self.counters,
            up_to_date=len(plan.up_to_date),
            run_id=self.result.run_id,
        )
        fatal: BaseException | None = None
        threads = min(self.workers, MAX_WORKERS, max(len(units), 1))
        if self.workers > MAX_WORKERS:
            self.result.notes.append(
                f"{self.workers} workers asked for, {MAX_WORKERS} used: more threads only wait on each other "
                "and on the rate limit"
            )
        decoders = self._start_decoders(threads)
        pool = ThreadPoolExecutor(max_workers=threads, initializer=self._name_worker)
        futures: list[Future[None]] = [pool.submit(self.execute_unit, unit) for unit in units]
        try:
            pending: set[Future[None]] = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
                for future in done:
                    exc = future.exception()
                    if isinstance(exc, Interrupted):
                        continue
                    if exc is not None:
                        fatal = exc
                        self.stop.set()
                if fatal is not None:
                    break
        except KeyboardInterrupt as exc:
            log.warning("interrupted: stopping workers")
            self.result.signal = exc.signum if isinstance(exc, Terminated) else None
            self.stop.set()
            self.result.interrupted = True
        finally:
            if fatal is not None or self.result.interrupted:
                self.stop.set()
            if decoders is not None and self.stop.is_set():
                decoders.stop_all()
            pool.shutdown(wait=False, cancel_futures=True)
            # A future cancelled by shutdown() never counts as done for wait(): waiting on it would always
            # take the whole grace period. Wait only for the units that were running.
            _wait_for_running([f for f in futures if not f.cancelled()])
            for source in self.sources:
                source.close()
            if decoders is not None:
                decoders.close()
            if units:
                # Fenced like every write: a run that lost the lock leaves the coverage uncompacted rather than
                # rewrite it under the run that took over (which the run guard then reports, exit 3).
                with contextlib.suppress(LockError):
                    self.coverage.compact()
        self.finish(time.monotonic() - started)
        self.progress.finish(self.result)
        if fatal is not None:
            if isinstance(fatal, DataEngineError):
                fatal.result = self.result
            raise fatal
        return self.result

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
        decoders = DecodePool(spec, processes, self.stop, threads)
        self.make_source = cast(SourceFactory, decoders.source)  # its sources have no corporate actions
        self.reads_ahead = False  # a decode process already streams pages ahead of its worker
        log.info("decoding pages in %d process(es) for %d worker thread(s)", processes, threads)
        return decoders

    def _name_worker(self) -> None:
        """Pool threads are named ``worker-1``, ``worker-2``...: every log record and progress row shows it."""
        threading.current_thread().name = f"worker-{next(self._worker_numbers)}"

    def finish(self, elapsed: float) -> None:
        stats = self.counters()
        r = self.result
        r.successful = sorted(self.successful)
        r.failed = dict(sorted(self.failed.items()))
        if r.interrupted or self.stop.is_set():
            pending = [s for s, n in self.remaining.items() if n > 0 and s not in self.failed]
            if pending and not r.interrupted:
                r.failed.update({s: "not fetched: the run stopped early" for s in pending})
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
        silent = sorted(s for s in self.successful if s not in self.with_bars)
        if not silent or self._sessionless_span is not None:  # a weekend has no bars: that blames no symbol
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

    def counters(self) -> dict[str, int]:
        """Live totals over all workers (read by progress displays and copied into the result)."""
        total = RequestCounts()
        for source in list(self.sources):
            total.add(source.stats)
        return {**asdict(total), "rows_written": self.written.rows_written, "rows_added": self.written.rows_added}

    # -- worker side --------------------------------------------------------------------------------------

    def source(self) -> BarSource:
        """This worker thread's source (made on first use: a client per thread, pacing shared)."""
        source: BarSource | None = getattr(self.local, "source", None)
        if source is None:
            worker = _worker_name()
            source = self.make_source(
                stop=self.stop, on_wait=lambda reason, seconds: self.progress.waiting(worker, reason, seconds)
            )
            self.local.source = source
            with self.lock:
                self.sources.append(source)
        return source

    def execute_unit(self, unit: WorkUnit) -> None:
        """Run one unit; isolate per-symbol failures, let fatal ones through."""
        worker = _worker_name()
        queue = deque([unit])
        while queue:
            current = queue.popleft()
            if not current.symbols:
                continue
            if self.stop.is_set():
                raise Interrupted("stopped")
            self.progress.unit_started(worker, current)
            ok = False
            try:
                self.stream_unit(current, worker)
                ok = True
            except TerminalSourceError as exc:
                if exc.symbol in current.symbols and len(current.symbols) > 1:
                    self.fail_symbol(exc.symbol, str(exc))
                    queue.append(current.without({exc.symbol}))  # its neighbours go on without it
                elif len(current.symbols) > 1:
                    queue.extend(current.halves())  # a paging loop names no symbol: bisect to find it
                else:
                    self.fail_symbol(current.symbols[0], str(exc))
            except DamagedPartitionError as exc:  # a file in the store is damaged: that symbol, not the run
                if exc.symbol in current.symbols and len(current.symbols) > 1:
                    self.fail_symbol(exc.symbol, str(exc))
                    queue.append(current.without({exc.symbol}))
                else:
                    for symbol in current.symbols:
                        self.fail_symbol(symbol, str(exc))
            except TransientSourceError as exc:
                for symbol in current.symbols:
                    self.fail_symbol(symbol, f"gave up after {exc.retries} retries: {exc}")
            except DecodeProcessDied as exc:  # what was written stays; the rest of the unit is not fetched
                for symbol in current.symbols:
                    self.fail_symbol(symbol, str(exc))
            except (FatalRunError, Interrupted):
                self.stop.set()
                raise
            except Exception as exc:  # a bug must not take the other symbols down with it
                log.exception("unexpected error in %s", current.label)
                for symbol in current.symbols:
                    self.fail_symbol(symbol, f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self.progress.unit_finished(worker, current, ok)
            if ok:
                self.unit_succeeded(current)

    def stream_unit(self, unit: WorkUnit, worker: str) -> None:
        """Fetch a unit page by page and write every partition as soon as it is complete.

        Pages are sorted by symbol, then time, so once a page ends in partition P, every buffered row of an
        earlier partition is final. Memory stays at about one partition plus one page.
        """
        source = self.source()
        request = self.request
        fetched = datetime.now(timezone.utc)
        pages = source.iter_pages(
            unit.symbols, request.timeframe, unit.start, unit.end, feed=request.feed, adjustment=request.adjustment,
            asof=request.asof,
        )
        if self.reads_ahead:
            pages = read_ahead(pages, name=worker)
        try:
            self._stream_pages(unit, worker, pages, fetched)
        finally:  # left early: the source's stream (and a helper reading ahead) ends before the next unit
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        self.coverage.record_many([Piece(symbol, unit.start, unit.end, fetched) for symbol in unit.symbols])

    def _stream_pages(self, unit: WorkUnit, worker: str, pages: Iterator[Page], fetched: datetime) -> None:
        held: list[tuple[PartitionKey, pl.DataFrame]] = []  # slices of the partition the last page ended in
        for page in pages:
            written = 0
            parts = split_partitions(page.bars)  # zero-copy slices: no per-bar work
            if parts:
                got = {key[0] for key, _ in parts}
                if not got <= self.with_bars:
                    with self.lock:
                        self.with_bars |= got
                pending = held + parts
                last = pending[-1][0]
                ready = [part for part in pending if part[0] != last]
                held = [part for part in pending if part[0] == last]
                written = self.write(ready)
                self.record_progress(unit, [key for key, _ in ready], last, fetched)
            self.progress.page_done(worker, unit, page.bars.height, written)
        if held:
            self.write(held)

    def record_progress(self, unit: WorkUnit, ready: list[PartitionKey], last: PartitionKey, fetched: datetime) -> None:
        """Record coverage for what was just written, so a killed run resumes where it stopped.

        A symbol before the page's last one is complete for the whole unit; the last symbol is complete up
        to the start of the month still being filled (pages are sorted by symbol, then time)."""
        pieces = []
        for symbol in dict.fromkeys(key[0] for key in ready):
            if symbol not in unit.symbols:
                continue  # not asked for (Alpaca maps some renamed symbols): nothing to record
            end = min(unit.end, ny_month_start(last[1], last[2]) - ONE_MICROSECOND) if symbol == last[0] else unit.end
            pieces.append(Piece(symbol, unit.start, end, fetched))
        self.coverage.record_many(pieces)

    def write(self, parts: list[tuple[PartitionKey, pl.DataFrame]]) -> int:
        if not parts:
            return 0
        stats = self.storage.write_partitions(parts, self.request.dataset)
        with self.lock:
            self.written.add(stats)
        return stats.rows_written

    def fail_symbol(self, symbol: str, reason: str) -> None:
        with self.lock:
            first = symbol not in self.failed
            self.failed.setdefault(symbol, reason)
        if first:
            log.warning("%s failed: %s", symbol, reason)
            self.progress.symbol_done(symbol, False, reason)

    def unit_succeeded(self, unit: WorkUnit) -> None:
        finished: list[str] = []
        with self.lock:
            for symbol in unit.symbols:
                self.remaining[symbol] -= 1
                if self.remaining[symbol] == 0 and symbol not in self.failed:
                    self.successful.append(symbol)
                    finished.append(symbol)
        for symbol in finished:
            self.progress.symbol_done(symbol, True)


def _wait_for_running(running: list[Future[None]]) -> None:
    """Wait up to the grace period for the units that were running; a further Ctrl-C (:mod:`.stopping`)
    shortens it to a second."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    hurried = False
    while True:
        if not hurried and stopping.hurried():
            hurried, deadline = True, min(deadline, time.monotonic() + stopping.HURRIED_GRACE_S)
        left = deadline - time.monotonic()
        if left <= 0 or not wait(running, timeout=min(left, 0.1)).not_done:
            return


def _worker_name() -> str:
    return threading.current_thread().name
