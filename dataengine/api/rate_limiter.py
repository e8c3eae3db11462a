"""One request pacer shared by every worker thread of a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Alpaca's windows are one minute; never trust a reset header asking for longer than this.
MAX_SERVER_WAIT_S = 65.0
RESET_MARGIN_S = 0.05


class RateLimiter:
    """Spaces requests evenly at ``per_minute`` and pauses everyone when the server says the quota is spent.

    Thread-safe. ``acquire`` reserves the next send slot under a lock and sleeps outside it, so workers queue
    fairly in arrival order. ``observe`` feeds back Alpaca's ``X-RateLimit-Remaining`` / ``-Reset`` headers:
    when the remaining quota hits zero (or a 429 arrives) no worker sends until the reset instant.
    """

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._interval = 60.0 / per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0

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
        wait, reason = self.reserve()
        if wait > 0.001:
            if on_wait is not None and wait > 0.2:
                on_wait(reason, wait)
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
        return max(wait, 0.0)

    def observe(self, *, remaining: int | None, reset_epoch: float | None, throttled: bool = False) -> None:
        """Take the server's view of the quota into account (call after every response)."""
        if not throttled and (remaining is None or remaining > 0):
            return
        wait = 1.0 if reset_epoch is None else reset_epoch - time.time() + RESET_MARGIN_S
        wait = min(max(wait, 0.0), MAX_SERVER_WAIT_S)
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + wait)
