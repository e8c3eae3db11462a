"""A worker thread's side of a run: one unit's pages streamed into partitions, failures isolated per symbol.

The main thread (:mod:`.run`) hands each unit to :meth:`UnitWorker.execute_unit` on its pool. A failing symbol
is recorded and its neighbours go on without it; fatal errors stop every worker. Coverage is recorded as
partitions land, so a killed run resumes where it stopped, and a symbol counts as done as soon as its part of
every unit it is in is written and recorded, not when the unit it shares with others ends: a run stopped
partway reports the symbols it completed. What the workers share with the main thread is a :class:`RunTally`,
guarded by its lock.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import polars as pl

from dataengine.counters import RequestCounts, WriteCounts
from dataengine.errors import (
    DamagedPartitionError,
    DecodeProcessDied,
    FatalRunError,
    Interrupted,
    TerminalSourceError,
    TransientSourceError,
)
from dataengine.orchestration.planner import WorkUnit
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.read_ahead import read_ahead
from dataengine.orchestration.request import IngestRequest
from dataengine.sources.source import BarSource, Page, SourceFactory
from dataengine.storage.coverage import CoverageLedger, Piece
from dataengine.storage.layout import PartitionKey, split_partitions
from dataengine.storage.parquet_storage import ParquetStorage
from dataengine.timerange import ONE_MICROSECOND, ny_month_start

log = logging.getLogger(__name__)


class RunTally:
    """What a run's worker threads share with its main thread, guarded by ``lock``: the stop flag, the sources
    made so far, how each symbol ended, the rows written."""

    def __init__(
        self, progress: ProgressReporter, sources: Sequence[BarSource] = (), unanswered: Callable[[], float] | None = None
    ) -> None:
        self.progress = progress
        self.unanswered = unanswered  # seconds the store has left requests unanswered (S3 not answering)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sources: list[BarSource] = list(sources)
        self.remaining: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.successful: list[str] = []
        self.with_bars: set[str] = set()  # symbols the source returned at least one bar for
        self.written = WriteCounts()

    def counters(self) -> dict[str, int]:
        """Live totals over all workers (read by progress displays and copied into the result), and
        ``store_unanswered_s``: how long the store has left requests unanswered, for the displays to say."""
        total = RequestCounts()
        for source in list(self.sources):
            total.add(source.stats)
        return {**asdict(total), "rows_written": self.written.rows_written, "rows_added": self.written.rows_added,
                "store_unanswered_s": int(self.unanswered()) if self.unanswered is not None else 0}

    def fail_symbol(self, symbol: str, reason: str) -> None:
        with self.lock:
            first = symbol not in self.failed
            self.failed.setdefault(symbol, reason)
        if first:
            log.warning("%s failed: %s", symbol, reason)
            self.progress.symbol_done(symbol, False, reason)

    def parts_done(self, symbols: Iterable[str]) -> None:
        """Count one unit's part of each of ``symbols`` written and recorded (``remaining`` counts a symbol's
        units: a long history is cut in time). A symbol with no part left that failed nowhere is done: it joins
        ``successful`` and the progress is told, once."""
        finished: list[str] = []
        with self.lock:
            for symbol in symbols:
                self.remaining[symbol] -= 1
                if self.remaining[symbol] == 0 and symbol not in self.failed:
                    self.successful.append(symbol)
                    finished.append(symbol)
        for symbol in finished:
            self.progress.symbol_done(symbol, True)


@dataclass(eq=False)  # shared by identity, like any worker
class UnitWorker:
    """Runs a run's units on the pool's threads: one instance shared by all of them, a source per thread.

    ``reads_ahead``: a worker's next page is fetched while it writes (not with decode processes)."""

    request: IngestRequest
    tally: RunTally
    storage: ParquetStorage
    coverage: CoverageLedger
    make_source: SourceFactory
    progress: ProgressReporter
    reads_ahead: bool
    local: threading.local = field(default_factory=threading.local)

    def source(self) -> BarSource:
        """This worker thread's source (made on first use: a client per thread, pacing shared)."""
        source: BarSource | None = getattr(self.local, "source", None)
        if source is None:
            worker = _worker_name()
            source = self.make_source(
                stop=self.tally.stop, on_wait=lambda reason, seconds: self.progress.waiting(worker, reason, seconds)
            )
            self.local.source = source
            with self.tally.lock:
                self.tally.sources.append(source)
        return source

    def execute_unit(self, unit: WorkUnit) -> None:
        """Run one unit; isolate per-symbol failures, let fatal ones through.

        A symbol whose part of the unit is written and recorded while the unit still runs (pages come sorted by
        symbol, then time: every symbol before the one being read) is counted then, once. Whatever befalls the
        rest of the unit afterwards (a failure, a stop) no longer touches it: it is not failed with the others,
        nor fetched again with a re-queued remainder. Its bars are all stored and recorded, so it is done."""
        worker = _worker_name()
        tally = self.tally
        finished: set[str] = set()  # symbols whose part of this unit is written and recorded, already counted
        queue = deque([unit])
        while queue:
            current = queue.popleft()
            if not current.symbols:
                continue
            if tally.stop.is_set():
                raise Interrupted("stopped")
            self.progress.unit_started(worker, current)
            ok = False
            try:
                self.stream_unit(current, worker, finished)
                ok = True
            except TerminalSourceError as exc:
                rest = current.without(finished)
                if exc.symbol in rest.symbols and len(rest.symbols) > 1:
                    tally.fail_symbol(exc.symbol, str(exc))
                    queue.append(rest.without({exc.symbol}))  # its neighbours go on without it
                elif len(rest.symbols) > 1:
                    queue.extend(rest.halves())  # a paging loop names no symbol: bisect to find it
                else:
                    for symbol in rest.symbols:
                        tally.fail_symbol(symbol, str(exc))
            except DamagedPartitionError as exc:  # a file in the store is damaged: that symbol, not the run
                rest = current.without(finished)
                if exc.symbol in rest.symbols and len(rest.symbols) > 1:
                    tally.fail_symbol(exc.symbol, str(exc))
                    queue.append(rest.without({exc.symbol}))
                else:
                    for symbol in rest.symbols:
                        tally.fail_symbol(symbol, str(exc))
            except TransientSourceError as exc:
                for symbol in current.symbols:
                    if symbol not in finished:
                        tally.fail_symbol(symbol, f"gave up after {exc.retries} retries: {exc}")
            except DecodeProcessDied as exc:  # what was written stays; the rest of the unit is not fetched
                for symbol in current.symbols:
                    if symbol not in finished:
                        tally.fail_symbol(symbol, str(exc))
            except (FatalRunError, Interrupted):
                tally.stop.set()
                raise
            except Exception as exc:  # a bug must not take the other symbols down with it
                log.exception("unexpected error in %s", current.label)
                for symbol in current.symbols:
                    if symbol not in finished:
                        tally.fail_symbol(symbol, f"internal error: {type(exc).__name__}: {exc}")
            finally:
                self.progress.unit_finished(worker, current, ok)
            if ok:
                tally.parts_done([s for s in current.symbols if s not in finished])
                finished.update(current.symbols)

    def stream_unit(self, unit: WorkUnit, worker: str, finished: set[str]) -> None:
        """Fetch a unit page by page and write every partition as soon as it is complete.

        Pages are sorted by symbol, then time, so once a page ends in partition P, every buffered row of an
        earlier partition is final. Memory stays at about one partition plus one page. A symbol complete
        before the unit ends is added to ``finished`` and counted done (:meth:`RunTally.parts_done`) then.
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
            self._stream_pages(unit, worker, pages, fetched, finished)
        finally:  # left early: the source's stream (and a helper reading ahead) ends before the next unit
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        self.coverage.record_many([Piece(symbol, unit.start, unit.end, fetched) for symbol in unit.symbols])

    def _stream_pages(
        self, unit: WorkUnit, worker: str, pages: Iterator[Page], fetched: datetime, finished: set[str]
    ) -> None:
        held: list[tuple[PartitionKey, pl.DataFrame]] = []  # slices of the partition the last page ended in
        tally = self.tally
        for page in pages:
            if tally.stop.is_set():  # a page read ahead before the stop is dropped, as one not yet asked for
                raise Interrupted("stopped")
            written = 0
            parts = split_partitions(page.bars)  # zero-copy slices: no per-bar work
            if parts:
                got = {key[0] for key, _ in parts}
                if not got <= tally.with_bars:
                    with tally.lock:
                        tally.with_bars |= got
                pending = held + parts
                last = pending[-1][0]
                ready = [part for part in pending if part[0] != last]
                held = [part for part in pending if part[0] == last]
                written = self.write(ready)
                complete = self.record_progress(unit, [key for key, _ in ready], last, fetched)
                fresh = [symbol for symbol in complete if symbol not in finished]
                if fresh:
                    finished.update(fresh)
                    tally.parts_done(fresh)
            self.progress.page_done(worker, unit, page.bars.height, written)
        if held:
            self.write(held)

    def record_progress(
        self, unit: WorkUnit, ready: list[PartitionKey], last: PartitionKey, fetched: datetime
    ) -> list[str]:
        """Record coverage for what was just written, so a killed run resumes where it stopped; return the
        symbols now recorded complete over the whole unit.

        A symbol before the page's last one is complete for the whole unit; the last symbol is complete up
        to the start of the month still being filled (pages are sorted by symbol, then time)."""
        pieces = []
        for symbol in dict.fromkeys(key[0] for key in ready):
            if symbol not in unit.symbols:
                continue  # not asked for (Alpaca maps some renamed symbols): nothing to record
            end = min(unit.end, ny_month_start(last[1], last[2]) - ONE_MICROSECOND) if symbol == last[0] else unit.end
            pieces.append(Piece(symbol, unit.start, end, fetched))
        self.coverage.record_many(pieces)
        return [piece.symbol for piece in pieces if piece.end == unit.end]

    def write(self, parts: list[tuple[PartitionKey, pl.DataFrame]]) -> int:
        if not parts:
            return 0
        stats = self.storage.write_partitions(parts, self.request.dataset)
        with self.tally.lock:
            self.tally.written.add(stats)
        return stats.rows_written


def _worker_name() -> str:
    return threading.current_thread().name
