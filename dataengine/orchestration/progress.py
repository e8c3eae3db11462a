"""Progress reporting: a seam between the pipeline and whatever shows a run to a person.

The pipeline calls a :class:`ProgressReporter`'s hooks from its worker threads; implementations must be
thread-safe and cheap. :class:`ProgressReporter` itself does nothing (library default: the library never
prints). :class:`TrackingProgress` keeps a :class:`Tally` and logs each unit's outcome (for ``--log-file``);
:class:`PlainProgress` adds a line every few seconds and one per failed symbol (cron, pipes); the live Rich
display is :class:`dataengine.orchestration.live_progress.LiveProgress`.

Work is measured in bars received, across every unit in flight, against the bars the run is expected to
bring: the bars finished units actually brought, plus the planner's (upper) estimate of the rest scaled by
how far finished units fell short of theirs. So the percentage moves with every page instead of jumping when
a chunk finishes, and the ETA (the bars left at the rate of the last minute) comes down to earth as soon as
the first units show what the estimate is worth. Symbols already up to date count as done from the start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from dataengine.orchestration.planner import WorkUnit
    from dataengine.orchestration.result import IngestResult

log = logging.getLogger("dataengine.progress")

ETA_WINDOW_S = 60.0
INFLIGHT_CAP = 0.95  # a unit in flight never counts more than this share of its estimate
LONG_RUN_S = 3600.0  # a run this long shows a decimal percent: on the 9-hour main job 1 % is five minutes
UNANSWERED_S = 10.0  # S3 silent this long is said on the progress line (its retries take minutes to fail a write)


class ProgressReporter:
    """No-op base; override what you need. Every hook may be called from any worker thread."""

    def start(
        self, *, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None = None,
        up_to_date: int = 0, run_id: str = "",
    ) -> None:
        """Called once before any request; ``counters()`` returns live requests/retries/throttled/bars;
        ``up_to_date`` symbols need nothing and count as done from the start."""
    def announce(self, text: str) -> None:
        """A line shown at once, before planning (which can take seconds on a large store)."""
    def unit_started(self, worker: str, unit: WorkUnit) -> None: ...
    def page_done(self, worker: str, unit: WorkUnit, bars: int, written: int) -> None: ...
    def waiting(self, worker: str, reason: str, seconds: float) -> None: ...
    def unit_finished(self, worker: str, unit: WorkUnit, ok: bool) -> None: ...
    def symbol_done(self, symbol: str, ok: bool, reason: str | None = None) -> None: ...
    def finish(self, result: IngestResult) -> None: ...
    def stopped(self, result: IngestResult, error: BaseException) -> None:
        """Called instead of :meth:`finish` when a fatal error (keys rejected, the store not writable) ends the
        run, before ``error`` is raised with ``result``; by default :meth:`finish`."""
        self.finish(result)
    def close(self) -> None:
        """Stop any display thread; safe to call more than once (the CLI calls it in ``finally``)."""


@dataclass
class WorkerState:
    """What one worker thread is doing, for displays. Mutated under :attr:`Tally.lock`."""

    name: str
    label: str = ""
    symbols: tuple[str, ...] = ()
    est_bars: float = 0.0
    bars: int = 0
    pages: int = 0
    unit_started: float = 0.0
    wait_reason: str = ""
    wait_until: float = 0.0
    busy: bool = False

    def unit_fraction(self) -> float:
        if not self.busy or self.est_bars <= 0:
            return 0.0
        return min(self.bars / self.est_bars, INFLIGHT_CAP)


class Tally:
    """Thread-safe running totals for displays: units and symbols done, bars, per-worker state, work and ETA.

    Read the plain attributes under ``lock`` (or accept a slightly stale view). ``clock`` is injectable for
    tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.Lock()
        self.clock = clock
        self.started = clock()
        self.symbols_total = self.units_total = 0
        self.est_bars = 0.0
        self.units_done = self.symbols_ok = self.symbols_failed = 0
        self.bars = 0
        self.est_finished = 0.0  # planner estimates of the units finished so far
        self.bars_finished = 0  # bars those units actually brought
        self.run_id = ""
        self.workers: dict[str, WorkerState] = {}
        self.failed_symbols: set[str] = set()
        self.counters: Callable[[], dict[str, int]] | None = None
        self.long_run = False  # known to take an hour or more: percentages get a decimal (see :meth:`percent`)
        self._samples: deque[tuple[float, float]] = deque()

    # -- updates (any thread) -----------------------------------------------------------------------------

    def begin(
        self, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None,
        up_to_date: int = 0, run_id: str = "",
    ) -> None:
        with self.lock:
            self.started = self.clock()
            self.symbols_total, self.units_total, self.est_bars = symbols, units, est_bars
            self.symbols_ok, self.run_id = up_to_date, run_id
            self.counters = counters
            self.long_run = False
            self._samples.clear()

    def unit_started(self, worker: str, unit: WorkUnit) -> None:
        with self.lock:
            state = self._worker(worker)
            state.label, state.symbols, state.est_bars = unit.label, unit.symbols, unit.est_bars
            state.bars = state.pages = 0
            state.unit_started = self.clock()
            state.wait_until, state.wait_reason, state.busy = 0.0, "", True

    def page_done(self, worker: str, bars: int) -> None:
        with self.lock:
            self.bars += bars
            state = self._worker(worker)
            state.bars += bars
            state.pages += 1
            state.wait_until = 0.0

    def waiting(self, worker: str, reason: str, seconds: float) -> None:
        with self.lock:
            state = self._worker(worker)
            state.wait_reason, state.wait_until = reason, self.clock() + seconds

    def unit_finished(self, worker: str, unit: WorkUnit, ok: bool = True) -> WorkerState:
        """Count the unit done; return a copy of the worker's state as it was (for the unit's log line).

        A failed unit is credited only for its symbols that failed for good: the pipeline re-queues the rest
        (a batch without its invalid symbol, or its two halves) as new units that carry their own estimate,
        and a unit stopped by Ctrl-C did no work worth counting."""
        with self.lock:
            state = self._worker(worker)
            gone = sum(1 for s in unit.symbols if s in self.failed_symbols)
            if ok or gone:  # a unit stopped by Ctrl-C is neither done nor failed
                self.units_done += 1
                share = 1.0 if ok else gone / len(unit.symbols)
                self.est_finished += unit.est_bars * share
                self.bars_finished += round(state.bars * share)
            before = WorkerState(**vars(state))
            state.busy, state.wait_until, state.label, state.symbols = False, 0.0, "", ()
            state.bars = state.pages = 0
            return before

    def symbol_done(self, ok: bool, symbol: str | None = None) -> None:
        with self.lock:
            if ok:
                self.symbols_ok += 1
            else:
                self.symbols_failed += 1
                if symbol is not None:
                    self.failed_symbols.add(symbol)

    def _worker(self, name: str) -> WorkerState:
        state = self.workers.get(name)
        if state is None:
            state = self.workers[name] = WorkerState(name)
        return state

    # -- views --------------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.clock() - self.started

    def work_done(self) -> float:
        """Bars received so far, across finished units and units in flight."""
        with self.lock:
            return self._work_done()

    def _work_done(self) -> float:
        return float(self.bars)

    def _expected(self) -> float:
        """Bars the run is expected to bring: what finished units brought, plus the estimate of the rest
        scaled by how finished units compared with their estimate."""
        ratio = self.bars_finished / self.est_finished if self.est_finished > 0 else 1.0
        return self.bars_finished + max(self.est_bars - self.est_finished, 0.0) * ratio

    def fraction(self) -> float:
        """Share of the run's expected work done, 0..1."""
        with self.lock:
            return self._fraction(self._work_done())

    def _fraction(self, done: float) -> float:
        if self.units_total == 0:
            return 1.0
        expected = self._expected()
        return min(done / expected, INFLIGHT_CAP) if expected > 0 else 0.0

    def eta_s(self) -> float | None:
        """Seconds left: the work left divided by the rate of the last minute (of the whole run before that).
        None until there is a rate to go by."""
        with self.lock:
            now = self.clock()
            done = self._work_done()
            elapsed = now - self.started
            if not self._samples or now - self._samples[-1][0] >= 1.0:
                self._samples.append((now, done))
            while len(self._samples) >= 2 and now - self._samples[1][0] >= ETA_WINDOW_S:
                self._samples.popleft()
            if self.est_bars <= 0 or done <= 0 or elapsed < 1.0:
                return None
            remaining = max(self._expected() - done, 0.0)
            t0, w0 = self._samples[0]
            rate = done / elapsed
            if now - t0 >= ETA_WINDOW_S and done > w0:
                rate = (done - w0) / (now - t0)
            return remaining / rate if rate > 0 else None

    def percent(self, fraction: float, eta: float | None) -> str:
        """``fraction`` as a percentage: ``12%``, or ``12.4%`` once the run is known to take an hour or more
        (elapsed time plus ETA, trusted after its first minute; it stays so for the rest of the run)."""
        if not self.long_run:
            elapsed = self.elapsed()
            self.long_run = elapsed >= LONG_RUN_S or (elapsed >= ETA_WINDOW_S and elapsed + (eta or 0.0) >= LONG_RUN_S)
        return f"{fraction:.1%}" if self.long_run else f"{fraction:.0%}"

    def live_counters(self) -> dict[str, int]:
        counters = self.counters
        if counters is None:
            return {}
        try:
            return counters()
        except Exception:  # noqa: BLE001 - a display must never take the run down
            return {}


class TrackingProgress(ProgressReporter):
    """Keeps a :class:`Tally` and logs every unit's outcome (symbols, bars, pages, seconds) with the worker's
    thread name: INFO per unit, DEBUG per page and wait. Shows nothing itself (``-q`` uses it as is)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tally = Tally(clock)

    def start(
        self, *, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None = None,
        up_to_date: int = 0, run_id: str = "",
    ) -> None:
        self.tally.begin(symbols, units, est_bars, counters, up_to_date, run_id)

    def unit_started(self, worker: str, unit: WorkUnit) -> None:
        self.tally.unit_started(worker, unit)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("start %s (~%s bars)", unit.label, f"{unit.est_bars:,.0f}")

    def page_done(self, worker: str, unit: WorkUnit, bars: int, written: int) -> None:
        self.tally.page_done(worker, bars)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: page of %d bars, %d written", unit.label, bars, written)

    def waiting(self, worker: str, reason: str, seconds: float) -> None:
        self.tally.waiting(worker, reason, seconds)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("waiting %.1fs: %s", seconds, reason)

    def unit_finished(self, worker: str, unit: WorkUnit, ok: bool) -> None:
        state = self.tally.unit_finished(worker, unit, ok)
        if log.isEnabledFor(logging.INFO):
            took = self.tally.clock() - state.unit_started if state.unit_started else 0.0
            who = "" if len(unit.symbols) == 1 else f" ({_few(unit.symbols)})"
            log.info(
                "%s%s %s: %s bars in %d page(s), %.1fs", unit.label, who, "done" if ok else "FAILED",
                f"{state.bars:,}", state.pages, took,
            )

    def symbol_done(self, symbol: str, ok: bool, reason: str | None = None) -> None:
        self.tally.symbol_done(ok, symbol)


class PlainProgress(TrackingProgress):
    """A line every ``interval`` seconds from a background thread (so lines keep coming while workers wait),
    one per failed symbol, and one at the end; for logs, pipes and cron mail."""

    def __init__(self, stream: TextIO, interval: float = 10.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self._stream = stream
        self._interval = interval
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(
        self, *, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None = None,
        up_to_date: int = 0, run_id: str = "",
    ) -> None:
        super().start(symbols=symbols, units=units, est_bars=est_bars, counters=counters, up_to_date=up_to_date,
                      run_id=run_id)
        fresh = f", {up_to_date} already up to date" if up_to_date else ""
        self._line(f"planned {symbols} symbol(s) in {units} unit(s), ~{est_bars:,.0f} bars at most{fresh}"
                   + (f" | run {run_id}" if run_id else ""))
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._thread.start()

    def symbol_done(self, symbol: str, ok: bool, reason: str | None = None) -> None:
        super().symbol_done(symbol, ok, reason)
        if not ok:
            self._line(f"FAILED {symbol}: {reason}")

    def finish(self, result: IngestResult) -> None:
        self.close()
        self._line(final_line(result, self.tally.symbols_total, result.elapsed_s))  # the summary's time, to agree

    def stopped(self, result: IngestResult, error: BaseException) -> None:
        """No ``finished:`` line for a run a fatal error ended (the CLI's ``Error:`` line says why, next): a
        ``stopped:`` line if it stored bars before it, else none (keys rejected at the first request)."""
        self.close()
        if result.rows_written:
            self._line(final_line(result, self.tally.symbols_total, result.elapsed_s, stopped=True))

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def status_line(self, *, final: bool = False) -> str:
        t = self.tally
        eta = None if final else t.eta_s()
        c = t.live_counters()
        trouble = "" if final else store_trouble(c)
        with t.lock:
            ok, failed, total, bars = t.symbols_ok, t.symbols_failed, t.symbols_total, t.bars
        return (
            f"{t.percent(t.fraction(), eta)} | {ok}/{total} symbols done, {failed} failed | {bars:,} bars | "
            f"{c.get('requests', 0)} requests, {c.get('retries', 0)} retries, {c.get('throttled', 0)} throttled | "
            f"elapsed {clock(t.elapsed())}" + ("" if final else f", ETA {clock(eta) if eta is not None else '?'}")
            + (f" | {trouble}" if trouble else ""))

    def _tick(self) -> None:
        while not self._stop.wait(self._interval):
            self._line(self.status_line())

    def announce(self, text: str) -> None:
        """A line before the run starts (imports and planning take seconds: say what is happening)."""
        self._line(text)

    def _line(self, text: str) -> None:
        with self._write_lock:
            try:
                # a full local date-time with its UTC offset: lines appended to a cron log stay unambiguous
                self._stream.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S%z')}] {text}\n")
                self._stream.flush()
            except (OSError, ValueError):  # a closed pipe must not break the run
                pass


def final_line(result: IngestResult, symbols_total: int, elapsed: float, *, stopped: bool = False) -> str:
    """The last line of a run, from its result: the same numbers as the summary and ``--json``. ``stopped``: a
    fatal error ended the run; its share is the symbols done (those it never fetched are failed)."""
    done, failed = len(result.successful), len(result.failed)
    total = max(symbols_total, done + failed)
    head = "interrupted" if result.interrupted else "stopped" if stopped else "finished"
    share = (done if stopped else done + failed) / total if total else 1.0
    percent = f"{share:.1%}" if elapsed >= LONG_RUN_S else f"{share:.0%}"
    return (
        f"{head}: {percent} | {done}/{total} symbols done, {failed} failed | {result.rows_written:,} bars | "
        f"{result.requests} requests, {result.retries} retries, {result.throttled} throttled | elapsed {clock(elapsed)}"
        + (f" | run {result.run_id}" if result.run_id else "")
    )


def store_trouble(counters: dict[str, int]) -> str:
    """What a display says of a store not answering (``store_unanswered_s`` of the live counters), or "" """
    silent = counters.get("store_unanswered_s", 0)
    return f"S3 has not answered for {silent} s (retrying)" if silent >= UNANSWERED_S else ""


def _few(symbols: tuple[str, ...], shown: int = 8) -> str:
    text = ",".join(symbols[:shown])
    return text if len(symbols) <= shown else f"{text},... {len(symbols)} in all"


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
