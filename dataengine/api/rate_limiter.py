"""One request pacer shared by every worker thread of a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Alpaca's windows are one minute; never trust a reset header asking for longer than this.
MAX_SERVER_WAIT_S = 65.0
RESET_MARGIN_S = 0.05
# X-RateLimit-Reset is whole epoch seconds: the quota may come back up to this much before the instant it names.
RESET_GRANULARITY_S = 1.0


class RateLimiter:
    """Spaces requests evenly at ``per_minute`` and pauses everyone when the server says the quota is spent.

    Thread-safe. ``acquire`` reserves the next send slot under a lock and sleeps outside it, so workers queue
    fairly in arrival order. ``observe`` feeds back Alpaca's ``X-RateLimit-Remaining`` / ``-Reset`` headers:
    when the remaining quota hits zero (or a 429 arrives) no worker takes a new slot before the reset instant,
    and a worker already asleep towards a slot that falls surely before the reset takes a new one after it,
    instead of sending a request certain to be refused.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._interval = 60.0 / per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0  # no new slot before this instant
        self._spent_until = 0.0  # a request sent before this instant is certainly refused
        self._pause_reset: float | None = None  # the server's reset instant behind the current pause

    @property
    def per_minute(self) -> float:
        return 60.0 / self._interval

    def reserve(self) -> tuple[float, str]:
        """Claim the next send slot; return (seconds to wait before sending, why)."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            reason = "rate limit"
            if self._paused_until > slot:
                slot, reason = self._paused_until, "rate-limit reset"
            self._next_slot = slot + self._interval
            return slot - now, reason

    def acquire(self, stop: threading.Event | None = None, on_wait: Callable[[str, float], None] | None = None) -> float:
        """Block until this thread may send; return the seconds waited. Returns early if ``stop`` is set."""
        waited = 0.0
        wait, reason = self.reserve()
        for _ in range(5):  # bounded: a clock that never advances must not hang a worker
            if wait > 0.001:
                if on_wait is not None and wait > 0.2:
                    on_wait(reason, wait)
                if stop is not None:
                    if stop.wait(wait):
                        return waited + wait
                else:
                    time.sleep(wait)
                waited += wait
            wait = self._after_pause()
            if wait <= 0:
                return waited
            reason = "rate-limit reset"
        return waited

    def _after_pause(self) -> float:
        """0 if this thread may send now; else the wait until a new slot after a pause announced meanwhile."""
        with self._lock:
            now = self._clock()
            if self._spent_until <= now:
                return 0.0
            slot = max(now, self._paused_until)
            self._next_slot = max(self._next_slot, slot + self._interval)
            return max(slot - now, 0.002)

    def observe(self, *, remaining: int | None, reset_epoch: float | None, throttled: bool = False) -> None:
        """Take the server's view of the quota into account (call after every response)."""
        if not throttled and (remaining is None or remaining > 0):
            if remaining is not None and reset_epoch is not None:
                self._window_renewed(reset_epoch)
            return
        wait = 1.0 if reset_epoch is None else reset_epoch - time.time() + RESET_MARGIN_S
        wait = min(max(wait, 0.0), MAX_SERVER_WAIT_S)
        # After a 429 trust nothing earlier than the reset; when the quota merely reached zero, the window may
        # end up to a second before the rounded header, so slots already given out in that second still go.
        sure = wait if throttled or reset_epoch is None else max(wait - RESET_MARGIN_S - RESET_GRANULARITY_S, 0.0)
        with self._lock:
            now = self._clock()
            self._paused_until = max(self._paused_until, now + wait)
            self._spent_until = max(self._spent_until, now + sure)
            if reset_epoch is not None:
                self._pause_reset = max(self._pause_reset or 0.0, reset_epoch)

    def _window_renewed(self, reset_epoch: float) -> None:
        """A response with quota left and a later reset than the one we wait for: a new window has opened
        (the rounded header made us wait longer than the server did), so the pause is over."""
        with self._lock:
            if self._pause_reset is not None and reset_epoch > self._pause_reset:
                now = self._clock()
                self._paused_until = min(self._paused_until, now)
                self._spent_until = min(self._spent_until, now)
                self._pause_reset = None
