"""One request budget shared by every worker thread of a run, spent the way Alpaca counts it: per window.

Alpaca allows N requests per minute and says, on every answer, how many are left (``X-RateLimit-Remaining``)
and when the window resets (``X-RateLimit-Reset``, whole epoch seconds). A job of 35 requests may send all 35 at
once; pacing them evenly at 60/N seconds apart (0.3 s on the free plan) turned a one-second job into ten. So the
budget is a window: requests go out as fast as the workers ask while the window has quota, and when it is spent
every worker waits for the reset, then the next window's quota goes out the same way. Over a long run that keeps
every window full (the bench measures the share of the limit achieved) without a 429 in steady state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

WINDOW_S = 60.0  # Alpaca counts requests per minute; the window we assume before the server names its own
# Never trust a reset header asking for longer than this.
MAX_SERVER_WAIT_S = 65.0
RESET_MARGIN_S = 0.05
# X-RateLimit-Reset is whole epoch seconds: two reset instants this close name the same window.
SAME_WINDOW_S = 1.5
PAUSE_WITHOUT_HEADERS_S = 1.0


class RateLimiter:
    """A per-window request budget, corrected by the server's rate-limit headers. Thread-safe.

    ``acquire`` hands out a numbered permit, sleeping first when this window's budget is spent or the server
    asked for a pause. ``observe`` feeds back each answer's headers with its permit number: the server's count
    of what is left, minus the permits handed out after that request (which it may not have counted yet), is
    the budget from then on. The budget never exceeds ``per_minute`` in a window (a user's setting stays a
    ceiling, e.g. to leave quota to another program on the same key); the headers only lower it. A 429, or an
    answer saying nothing is left, pauses every worker until the reset, and a worker already asleep towards a
    slot that falls before it takes a new one after it instead of sending a request certain to be refused.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self._limit = max(1, int(per_minute))
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._window_start = 0.0
        self._window_end: float | None = None  # None: no window open (the next permit opens a fresh one)
        self._left = 0  # permits left in the current window
        self._sent = 0  # permits handed out so far: each request's number
        self._seen = 0  # the number of the newest answer the budget was taken from
        self._paused_until = 0.0  # no permit is good before this instant

    @property
    def per_minute(self) -> float:
        return float(self._limit)

    def reserve(self) -> tuple[float, str, int]:
        """Take the next permit; return (seconds to wait before sending, why, the permit's number)."""
        with self._lock:
            now = self._clock()
            at = max(now, self._paused_until)
            reason = "rate-limit reset" if at > now else "rate limit"
            if self._window_end is None or at >= self._window_end:
                self._open(at)
            elif self._left <= 0:  # this window is spent: the permit is the next window's
                at = self._window_end
                self._open(at)
            else:
                at = max(at, self._window_start)  # the window may be a future one, opened by a waiting permit
            self._left -= 1
            self._sent += 1
            return at - now, reason, self._sent

    def _open(self, at: float) -> None:
        self._window_start, self._window_end, self._left = at, at + WINDOW_S, self._limit

    def acquire(self, stop: threading.Event | None = None, on_wait: Callable[[str, float], None] | None = None) -> int:
        """Block until this thread may send; return the permit's number (for :meth:`observe`).

        Returns early if ``stop`` is set."""
        wait, reason, permit = self.reserve()
        for _ in range(5):  # bounded: a clock that never advances must not hang a worker
            if wait > 0.001:
                if on_wait is not None and wait > 0.2:
                    on_wait(reason, wait)
                if stop is not None:
                    if stop.wait(wait):
                        return permit
                else:
                    time.sleep(wait)
            if not self._paused_now():
                return permit
            wait, reason, permit = self.reserve()  # a pause was announced while this thread slept
        return permit

    def _paused_now(self) -> bool:
        with self._lock:
            return self._paused_until > self._clock() + 0.002

    def observe(
        self, *, remaining: int | None, reset_epoch: float | None, throttled: bool = False, permit: int | None = None
    ) -> None:
        """Take the server's view of the quota into account (call after every answer, with its permit)."""
        now = self._clock()
        reset = None
        if reset_epoch is not None:
            reset = now + min(max(reset_epoch - self._wall(), 0.0), MAX_SERVER_WAIT_S) + RESET_MARGIN_S
        with self._lock:
            if throttled or (remaining is not None and remaining <= 0):
                until = reset if reset is not None else now + PAUSE_WITHOUT_HEADERS_S
                self._paused_until = max(self._paused_until, until)
                if self._window_end is None or self._window_start < until - SAME_WINDOW_S:
                    self._window_end = None  # the window after the pause starts afresh
                return
            if remaining is None or reset is None or permit is None or self._window_end is None:
                return
            if reset < self._window_start + SAME_WINDOW_S:
                return  # about the window before ours (a waiting permit already opened the next one)
            newer = reset > self._window_end + SAME_WINDOW_S
            self._window_end = reset  # the server's instant, exact to its rounding
            if newer or permit > self._seen:
                unseen = self._sent - permit  # sent after this request: maybe not counted by the server yet
                self._left = min(self._limit if newer else self._left, remaining - unseen)
                self._seen = permit
