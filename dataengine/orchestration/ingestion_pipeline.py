"""Multithreaded ingestion: plan units, fetch them on a thread pool, stream each page into the store.

Per-symbol isolation: a symbol that fails is recorded with its reason and the run goes on. Fatal errors
(keys rejected, endpoint unreachable, store not writable) stop every worker at once. Ctrl-C stops cleanly:
workers finish the partition write they are in (each write is atomic) and drop what is not yet written.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from dataengine.api.alpaca_client import AlpacaClient, ClientStats, RetryPolicy
from dataengine.api.rate_limiter import RateLimiter
from dataengine.config import Settings
from dataengine.datasets import DatasetKey, parse_adjustment, parse_feed
from dataengine.errors import (
    DataEngineError,
    FatalRunError,
    Interrupted,
    LockError,
    TerminalSourceError,
    TransientSourceError,
    UsageError,
)
from dataengine.loaders.symbol_loader import SymbolLoader, clean_symbols
from dataengine.orchestration.planner import PAGE_BARS, WorkUnit, plan_todo
from dataengine.orchestration.progress import ProgressReporter
from dataengine.orchestration.result import IngestResult
from dataengine.storage.coverage import CoverageLedger, Interval
from dataengine.storage.metadata_store import MetadataStore, validate_index_name
from dataengine.storage.parquet_storage import ParquetStorage, WriteStats, with_partition_columns
from dataengine.storage.run_ledger import RunLedger, RunRecord, mask_secrets
from dataengine.storage.run_lock import RunLock
from dataengine.timeframes import Timeframe, parse_timeframe
from dataengine.timerange import ONE_MICROSECOND, TimeRange, ny_month_start, resolve_range

if TYPE_CHECKING:
    from alpaca.data.timeframe import TimeFrame

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_S = 10.0
SLOW_PLAN_RPM = 1_000  # at or below this many requests per minute, requests are what a run waits for
SLOW_PLAN_MIN_PAGES = 5

DateLike = str | date | datetime | None


@dataclass(frozen=True)
class IngestRequest:
    """A validated request: nothing in it can make the run fail with a usage error any more."""

    symbols: tuple[str, ...]
    timeframe: Timeframe
    range: TimeRange
    feed: str
    adjustment: str
    start_given: bool = True  # False: each stored symbol resumes from its own stored history
    full_refresh: bool = False  # ignore what is stored and fetch the whole range
    lag: int = 1  # sessions re-fetched after the last fetch (late corrections)
    ranges: dict[str, tuple[Interval, ...]] | None = None  # explicit per-symbol ranges (gaps --repair)

    @property
    def dataset(self) -> DatasetKey:
        return DatasetKey(self.timeframe, self.adjustment)


@dataclass(frozen=True)
class Plan:
    """What a run will fetch: per-symbol missing ranges and the work units covering them."""

    todo: dict[str, tuple[Interval, ...]]
    units: list[WorkUnit]

    @property
    def up_to_date(self) -> list[str]:
        return sorted(s for s, spans in self.todo.items() if not spans)

    def summary(self) -> dict[str, object]:
        est_bars = sum(u.est_bars for u in self.units)
        return {
            "symbols": len(self.todo),
            "symbols_to_fetch": sum(1 for spans in self.todo.values() if spans),
            "symbols_up_to_date": len(self.up_to_date),
            "units": len(self.units),
            "est_bars_max": round(est_bars),
            "est_requests_max": sum(math.ceil(max(u.est_bars, 1) / PAGE_BARS) for u in self.units),
            "todo": {s: [[a.isoformat(), b.isoformat()] for a, b in spans] for s, spans in self.todo.items()},
        }


class IngestionPipeline:
    """Fetch bars for many symbols in parallel and store each bar exactly once.

    One pipeline may run several ingests one after another; it is not meant to run two at once.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        settings: Settings | None = None,
        storage_dir: str | Path | None = None,
        storage: ParquetStorage | None = None,
        metadata: MetadataStore | None = None,
        progress: ProgressReporter | None = None,
        ledger: RunLedger | None = None,
        wait_for_lock: bool = False,
        lock_timeout: float | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        """Every collaborator is a keyword argument (the test seam). ``wait_for_lock``: when another process
        holds the store, wait for it (at most ``lock_timeout`` seconds) instead of raising
        :class:`~dataengine.errors.LockError` at once. ``command``: the command line the run ledger records
        (default ``sys.argv``; secrets are masked)."""
        settings = settings or Settings.load()
        if storage_dir is not None:
            settings = settings.with_overrides(storage_dir=storage_dir)
        if max_workers is not None:
            settings = settings.with_overrides(workers=max_workers)
        self.settings = settings
        self.max_workers = settings.workers
        self.storage = storage or ParquetStorage(settings.storage_dir)
        self.metadata = metadata or MetadataStore(settings.storage_dir)
        self.progress = progress or ProgressReporter()
        self.ledger = ledger or RunLedger(settings.storage_dir)
        self.wait_for_lock = wait_for_lock or lock_timeout is not None
        self.lock_timeout = lock_timeout
        self.command = mask_secrets(list(command) if command is not None else sys.argv, (settings.api_key_id, settings.api_secret_key))

    # -- public API (names from the product description) ---------------------------------------------------

    def ingest_symbols(
        self,
        symbols: Iterable[str],
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        full_refresh: bool = False,
        lag: int = 1,
    ) -> IngestResult:
        """Fetch and store ``symbols`` over ``[start_date, end_date]`` (New York days, inclusive).

        Incremental: only what the dataset does not hold yet is fetched (plus the ``lag`` most recent sessions
        of the last fetch, which may have been corrected since); ``full_refresh=True`` fetches everything.
        Raises :class:`~dataengine.errors.UsageError` before any request for bad input, and
        :class:`~dataengine.errors.FatalRunError` (with ``.result`` attached) when the run cannot go on.
        Per-symbol failures are in the returned result's ``failed``.
        """
        request = self.prepare(
            symbols, start_date, end_date, timeframe, feed=feed, adjustment=adjustment, full_refresh=full_refresh, lag=lag
        )
        return self.run(request)

    def ingest_from_csv(
        self,
        csv_path: str | Path,
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        index_name: str | None = None,
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        full_refresh: bool = False,
        lag: int = 1,
    ) -> IngestResult:
        """Like :meth:`ingest_symbols` for the symbols of a CSV or text file; ``index_name`` also records the
        list as that index's membership from today."""
        if index_name is not None:
            validate_index_name(index_name)
        symbols = SymbolLoader.from_file(csv_path)
        request = self.prepare(
            symbols, start_date, end_date, timeframe, feed=feed, adjustment=adjustment, full_refresh=full_refresh, lag=lag
        )
        if index_name is not None:
            self.metadata.store(index_name, list(request.symbols))
        return self.run(request)

    def prepare(
        self,
        symbols: Iterable[str],
        start_date: DateLike = None,
        end_date: DateLike = None,
        timeframe: str | TimeFrame | Timeframe = "minute",
        *,
        feed: str = "sip",
        adjustment: str = "raw",
        full_refresh: bool = False,
        lag: int = 1,
        ranges: dict[str, list[Interval]] | None = None,
    ) -> IngestRequest:
        """Validate everything a run needs (no request is sent, nothing is written)."""
        clean = clean_symbols([symbols] if isinstance(symbols, str) else symbols)
        feed = parse_feed(feed)
        if lag < 0:
            raise UsageError(f"--lag must be 0 or more sessions, got {lag}")
        request = IngestRequest(
            symbols=tuple(clean),
            timeframe=parse_timeframe(timeframe),
            range=resolve_range(start_date, end_date, feed=feed),
            feed=feed,
            adjustment=parse_adjustment(adjustment),
            start_given=start_date is not None,
            full_refresh=full_refresh,
            lag=lag,
            ranges={s: tuple(v) for s, v in ranges.items()} if ranges is not None else None,
        )
        self.settings.credentials()
        self.storage.check_feed(request.dataset, request.feed)
        return request

    def coverage(self, dataset: DatasetKey) -> CoverageLedger:
        return CoverageLedger(self.storage.coverage_path(dataset))

    def plan(self, request: IngestRequest, coverage: CoverageLedger | None = None, *, persist: bool = False) -> Plan:
        """Per-symbol ranges still to fetch, and the units that fetch them (nothing is sent)."""
        rng = request.range
        if request.ranges is not None:
            todo = {s: tuple(request.ranges.get(s, ())) for s in request.symbols}
        elif request.full_refresh:
            todo = {s: ((rng.start, rng.end),) for s in request.symbols}
        else:
            coverage = coverage or self.coverage(request.dataset)
            self._adopt_untracked(request, coverage, persist)
            todo = {}
            for symbol in request.symbols:
                # Without --start a stored symbol resumes from its own history, not from the default start.
                pieces = coverage.pieces().get(symbol)
                start = rng.start if request.start_given or not pieces else min(p.start for p in pieces)
                todo[symbol] = tuple(coverage.remaining(symbol, start, rng.end, request.lag))
        # On a slow plan requests are the bottleneck: fewer, longer units leave fewer partly-filled pages.
        min_pages = SLOW_PLAN_MIN_PAGES if self.settings.requests_per_minute <= SLOW_PLAN_RPM else 1
        return Plan(todo, plan_todo(todo, request.timeframe, workers=self.max_workers, min_pages=min_pages))

    def _adopt_untracked(self, request: IngestRequest, coverage: CoverageLedger, persist: bool) -> None:
        """Bars stored without a coverage record (``ParquetStorage.store``, older versions) count as covered
        from their first month to their last bar, fetched when the last file was written."""
        known = coverage.pieces()
        for symbol in request.symbols:
            if symbol in known:
                continue
            extent = self.storage.extent(request.dataset, symbol)
            if extent is not None:
                first, last, written = extent
                coverage.record(symbol, first, last, written, persist=persist)

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
            log.warning(note)
        record = RunRecord(
            command=self.command,
            timeframe=request.timeframe.name,
            feed=request.feed,
            adjustment=request.adjustment,
            start=request.range.start.isoformat(),
            end=request.range.end.isoformat(),
            symbols_requested=len(request.symbols),
        )
        started = time.monotonic()
        lock = RunLock(self.storage.root, wait=self.wait_for_lock, timeout=self.lock_timeout, command=" ".join(self.command))
        result: IngestResult | None = None
        try:
            with lock:
                got_lock = time.monotonic()
                record.begin(waited_s=got_lock - started)
                try:
                    result = _Run(self, request).execute()
                except BaseException as exc:
                    record.close(result=getattr(exc, "result", None), error=exc, elapsed_s=time.monotonic() - got_lock)
                    self.ledger.append(record)
                    raise
                record.close(result=result)
                self.ledger.append(record)  # inside the lock: the ledger has one writer, like the store
                _refresh_status_cache(self.storage.root, request)
        except LockError as exc:
            if record.exit_code is None:  # refused the lock: nothing ran, but cron should see why
                record.close(error=exc, elapsed_s=time.monotonic() - started)
                self.ledger.append(record)
            raise
        assert result is not None
        return result


def _refresh_status_cache(root: Path, request: IngestRequest) -> None:
    """Read the footers this run wrote into the status cache now, while they are in the page cache, so that
    ``dataengine status`` stays fast. Best effort: a failure here never fails the run."""
    from dataengine.storage.footer_index import refresh_cache  # late: only needed after a run

    started = time.monotonic()
    try:
        read = refresh_cache(root, request.dataset.dirname, request.symbols)
    except Exception as exc:  # noqa: BLE001
        log.info("status cache not refreshed: %s", exc)
        return
    log.debug("status cache: %d footer(s) read in %.2fs", read, time.monotonic() - started)


class _Run:
    """The state of one ingest: shared by the worker threads, guarded by ``lock``."""

    def __init__(self, pipeline: IngestionPipeline, request: IngestRequest) -> None:
        self.pipeline = pipeline
        self.request = request
        self.settings = pipeline.settings
        self.storage = pipeline.storage
        self.progress = pipeline.progress
        self.stop = threading.Event()
        self.limiter = RateLimiter(self.settings.requests_per_minute)
        self.lock = threading.Lock()
        self.local = threading.local()
        self.clients: list[AlpacaClient] = []
        self.remaining: dict[str, int] = {}
        self.failed: dict[str, str] = {}
        self.successful: list[str] = []
        self.written = WriteStats()
        self.coverage = pipeline.coverage(request.dataset)
        self.result = IngestResult(
            timeframe=request.timeframe.name,
            feed=request.feed,
            adjustment=request.adjustment,
            start=request.range.start.isoformat(),
            end=request.range.end.isoformat(),
            notes=list(request.range.notes),
        )

    # -- orchestration (main thread) ----------------------------------------------------------------------

    def execute(self) -> IngestResult:
        started = time.monotonic()
        self.storage.remove_stale_temp_files()
        self.storage.claim_dataset(self.request.dataset, self.request.feed)
        plan = self.pipeline.plan(self.request, self.coverage, persist=True)
        units = plan.units
        for unit in units:
            for symbol in unit.symbols:
                self.remaining[symbol] = self.remaining.get(symbol, 0) + 1
        if plan.up_to_date:
            self.successful.extend(plan.up_to_date)
            self.result.notes.append(f"{len(plan.up_to_date)} symbol(s) already up to date: nothing to fetch")
        log.info(
            "ingesting %d symbol(s), %s, %s..%s, feed %s, adjustment %s: %d unit(s) on %d worker(s)",
            len(self.request.symbols), self.request.timeframe, self.request.range.start.isoformat(),
            self.request.range.end.isoformat(), self.request.feed, self.request.adjustment, len(units),
            self.pipeline.max_workers,
        )
        self.progress.start(
            symbols=len(self.request.symbols),
            units=len(units),
            est_bars=sum(u.est_bars for u in units),
            counters=self.counters,
        )
        fatal: BaseException | None = None
        pool = ThreadPoolExecutor(max_workers=self.pipeline.max_workers, initializer=_name_worker)
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
        except KeyboardInterrupt:
            log.warning("interrupted: stopping workers")
            self.stop.set()
            self.result.interrupted = True
        finally:
            if fatal is not None or self.result.interrupted:
                self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            wait(futures, timeout=SHUTDOWN_GRACE_S)
            for client in self.clients:
                client.close()
            if units:
                self.coverage.compact()
        self.finish(time.monotonic() - started)
        self.progress.finish(self.result)
        if fatal is not None:
            if isinstance(fatal, DataEngineError):
                fatal.result = self.result  # type: ignore[attr-defined]
                raise fatal
            raise fatal
        return self.result

    def finish(self, elapsed: float) -> None:
        stats = self.counters()
        r = self.result
        r.successful = sorted(self.successful)
        r.failed = dict(sorted(self.failed.items()))
        if r.interrupted or self.stop.is_set():
            pending = [s for s, n in self.remaining.items() if n > 0 and s not in self.failed]
            if pending and not r.interrupted:
                r.failed.update({s: "not fetched: the run stopped early" for s in pending})
        r.rows_written, r.rows_added = self.written.rows_written, self.written.rows_added
        r.requests, r.retries, r.throttled = stats["requests"], stats["retries"], stats["throttled"]
        r.elapsed_s = round(elapsed, 3)

    def counters(self) -> dict[str, int]:
        """Live totals over all workers (read by progress displays)."""
        total = ClientStats()
        for client in list(self.clients):
            total.requests += client.stats.requests
            total.retries += client.stats.retries
            total.throttled += client.stats.throttled
            total.bars += client.stats.bars
        return {
            "requests": total.requests,
            "retries": total.retries,
            "throttled": total.throttled,
            "bars": total.bars,
            "rows_written": self.written.rows_written,
        }

    # -- worker side --------------------------------------------------------------------------------------

    def client(self) -> AlpacaClient:
        client = getattr(self.local, "client", None)
        if client is None:
            worker = _worker_name()
            key, secret = self.settings.credentials()
            client = AlpacaClient(
                key,
                secret,
                base_url=self.settings.data_url,
                rate_limiter=self.limiter,
                timeout=self.settings.request_timeout,
                retry=RetryPolicy(max_retries=self.settings.max_retries, base_s=self.settings.retry_backoff),
                stop=self.stop,
                on_wait=lambda reason, seconds: self.progress.waiting(worker, reason, seconds),
            )
            self.local.client = client
            with self.lock:
                self.clients.append(client)
        return client

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
                    queue.extend(current.halves())  # the server did not say which symbol: bisect
                else:
                    self.fail_symbol(current.symbols[0], str(exc))
            except TransientSourceError as exc:
                for symbol in current.symbols:
                    self.fail_symbol(symbol, f"gave up after {exc.retries} retries: {exc}")
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
        client = self.client()
        request = self.request
        fetched = datetime.now(timezone.utc)
        held: pl.DataFrame | None = None
        for page in client.iter_pages(
            unit.symbols, request.timeframe, unit.start, unit.end, feed=request.feed, adjustment=request.adjustment
        ):
            written = 0
            if page.bars.height:
                keyed = with_partition_columns(page.bars)  # New York year/month, computed once per bar
                if held is not None:
                    keyed = pl.concat([held, keyed])
                last = keyed.select("symbol", "year", "month").row(-1)
                in_last = (pl.col("symbol") == last[0]) & (pl.col("year") == last[1]) & (pl.col("month") == last[2])
                ready = keyed.filter(~in_last)
                held = keyed.filter(in_last)
                written = self.write(ready)
                self.record_progress(unit, ready, last, fetched)
            self.progress.page_done(worker, unit, page.bars.height, written)
        if held is not None:
            self.write(held)
        for symbol in unit.symbols:
            self.coverage.record(symbol, unit.start, unit.end, fetched)

    def record_progress(self, unit: WorkUnit, ready: pl.DataFrame, last: tuple, fetched: datetime) -> None:
        """Record coverage for what was just written, so a killed run resumes where it stopped.

        A symbol before the page's last one is complete for the whole unit; the last symbol is complete up
        to the start of the month still being filled (pages are sorted by symbol, then time)."""
        for symbol in ready.get_column("symbol").unique(maintain_order=True).to_list():
            if symbol not in unit.symbols:
                continue  # not asked for (Alpaca maps some renamed symbols): nothing to record
            end = min(unit.end, ny_month_start(last[1], last[2]) - ONE_MICROSECOND) if symbol == last[0] else unit.end
            self.coverage.record(symbol, unit.start, end, fetched)

    def write(self, bars: pl.DataFrame) -> int:
        if bars.is_empty():
            return 0
        stats = self.storage.write_keyed(bars, self.request.dataset)
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


_worker_counter = 0
_worker_counter_lock = threading.Lock()


def _name_worker() -> None:
    """Pool threads are named ``worker-1``, ``worker-2``...: every log record and progress row shows it."""
    global _worker_counter
    with _worker_counter_lock:
        _worker_counter += 1
        n = _worker_counter
    threading.current_thread().name = f"worker-{n}"


def _worker_name() -> str:
    return threading.current_thread().name
