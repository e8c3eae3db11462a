"""Progress reporting: a seam between the pipeline and whatever shows a run to a person.

The pipeline calls a :class:`ProgressReporter`'s hooks from its worker threads; implementations must be
thread-safe and cheap. :class:`ProgressReporter` itself does nothing (library default: the library never
prints). :class:`PlainProgress` writes a line every few seconds to a stream (cron, pipes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from dataengine.orchestration.planner import WorkUnit
    from dataengine.orchestration.result import IngestResult


class ProgressReporter:
    """No-op base; override what you need. Every hook may be called from any worker thread."""

    def start(
        self, *, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None = None
    ) -> None:
        """Called once before any request; ``counters()`` returns live requests/retries/throttled/bars."""
    def unit_started(self, worker: str, unit: "WorkUnit") -> None: ...
    def page_done(self, worker: str, unit: "WorkUnit", bars: int, written: int) -> None: ...
    def waiting(self, worker: str, reason: str, seconds: float) -> None: ...
    def unit_finished(self, worker: str, unit: "WorkUnit", ok: bool) -> None: ...
    def symbol_done(self, symbol: str, ok: bool, reason: str | None = None) -> None: ...
    def finish(self, result: "IngestResult") -> None: ...


class Tally:
    """Thread-safe running totals for displays: units and symbols done, bars, ETA from estimated bars."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.symbols_total = self.units_total = 0
        self.est_bars = 0.0
        self.units_done = self.symbols_ok = self.symbols_failed = 0
        self.bars = 0
        self.est_done = 0.0  # estimated bars of finished units (the ETA's yardstick)

    def eta_s(self) -> float | None:
        """Seconds left, projected from the share of estimated work finished (units weigh by their bars)."""
        elapsed = time.monotonic() - self.started
        if self.est_done <= 0 or self.est_bars <= 0 or elapsed < 1:
            return None
        fraction = min(self.est_done / self.est_bars, 1.0)
        return elapsed * (1 - fraction) / fraction


class PlainProgress(ProgressReporter):
    """One line every ``interval`` seconds, and one per failed symbol, for logs and cron mail."""

    def __init__(self, stream: TextIO, interval: float = 10.0) -> None:
        self._stream = stream
        self._interval = interval
        self._tally = Tally()
        self._last = 0.0

    def start(
        self, *, symbols: int, units: int, est_bars: float, counters: Callable[[], dict[str, int]] | None = None
    ) -> None:
        t = self._tally
        t.symbols_total, t.units_total, t.est_bars = symbols, units, est_bars
        self._line(f"planned {symbols} symbol(s) in {units} unit(s), ~{est_bars:,.0f} bars at most")

    def page_done(self, worker: str, unit: "WorkUnit", bars: int, written: int) -> None:
        with self._tally.lock:
            self._tally.bars += bars
        self._maybe_report()

    def unit_finished(self, worker: str, unit: "WorkUnit", ok: bool) -> None:
        with self._tally.lock:
            self._tally.units_done += 1
            self._tally.est_done += unit.est_bars
        self._maybe_report()

    def symbol_done(self, symbol: str, ok: bool, reason: str | None = None) -> None:
        with self._tally.lock:
            if ok:
                self._tally.symbols_ok += 1
            else:
                self._tally.symbols_failed += 1
        if not ok:
            self._line(f"FAILED {symbol}: {reason}")

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        t = self._tally
        eta = t.eta_s()
        self._line(
            f"{t.units_done}/{t.units_total} units, {t.symbols_ok} symbols done, {t.symbols_failed} failed, "
            f"{t.bars:,} bars, elapsed {_clock(now - t.started)}, ETA {_clock(eta) if eta is not None else '?'}"
        )

    def _line(self, text: str) -> None:
        self._stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self._stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
