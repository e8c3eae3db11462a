"""One request budget shared by every worker thread of a run, kept the way the server counts it.

Alpaca allows N requests in a window and says, on every answer, how many are left (``X-RateLimit-Remaining``),
the limit (``X-RateLimit-Limit``) and when "the remaining quota changes" (``X-RateLimit-Reset``, whole epoch
seconds). It does not say whether the window is fixed (all quota back at the reset) or rolling (each request
ages out on its own, and the reset is when the oldest does), nor how long it is. The pacer is built to be right
under both without knowing which:

* **It mirrors the server's count.** Every request it lets out holds a slot until it ages out: ``W`` after its
  answer's headers came back, ``W`` being the window length learned from the headers (below). Under a rolling
  window the server gives the slot back a little before that (the request was counted on arrival); under a
  fixed one, no later. Requests go out as fast as the workers ask while slots are free, so a job that fits in
  the quota goes out at once.
* **The server's word lowers the budget.** Each answer says how many requests the server counts; whatever
  this run cannot account for (a previous run, another program on the same keys) holds slots too, and a count
  lower than ours frees our older slots at once (a fixed window that started afresh).
* **The first request of a run goes alone**, and its answer sets the budget: a run started right after
  another one has no idea what is left until then.
* **The reset is the moment some quota comes back, not all of it.** When every slot is held and the reset
  passes, one request asks alone how much came back; not while one sent since it was named is out (it may hold it).
* **A 429 says the model was wrong.** Every worker pauses until the reset (exponentially longer after 429s in
  a row), then one request asks; the pacer stops trusting what led it there (see ``_distrust``).

The window length ``W`` is never assumed. Each answer bounds it: the reset is at most ``W`` after the arrival
of a request the server still counts, so ``W`` <= reset - (the send time of a request of ours that certainly
arrived no later than the oldest one the server counts), and ``W`` > reset - 1 s - (this answer's time). Slots
are held for the upper bound rounded down to the whole second, as long as that stays above the lower bound
(windows are taken to be whole seconds; Alpaca's is 60): that spares up to a second per window of the reset's
rounding. A 429 on a slot the model believed free drops the rounding and adds slack to every reset.

``requests_per_minute`` stays a ceiling of the user's: never more than that many requests in any 60 seconds.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0  # requests_per_minute counts requests over this many seconds
MAX_SERVER_WAIT_S = 65.0  # never trust a reset (or a window) asking for longer than this
MARGIN_S = 0.05  # added to every instant the server's count is predicted to change
PAUSE_WITHOUT_HEADERS_S = 1.0  # a 429 that names no reset
PROBE_SPACING_S = 0.25  # between two lone requests asking after a reset that did not free anything
POLL_S = 0.25  # a waiting worker looks at its stop event at least this often
PROBE_LOST_S = 10.0  # a lone request neither answered nor reported on for this long no longer holds the others
_HISTORY = 256  # answers counting more requests than this do not bound the window (it is learned long before)


@dataclass
class _Request:
    sent: float  # monotonic: when the permit was handed out (the request leaves right after)
    answered: float | None = None  # monotonic: when its answer (or its failure) came back
    informed: bool = False  # let out because the model said a slot was free (a 429 then proves it wrong)


class RateLimiter:
    """The request budget of one run, shared by all its workers. Thread-safe.

    ``acquire`` blocks until a request may go and returns its permit number; the caller reports how it went
    with the same number: ``observe`` (an answer, with its rate-limit headers), ``done`` (no answer: a dropped
    connection, a timeout) or ``release`` (never sent). ``try_acquire`` is the same decision without blocking.
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
        self._per_minute = max(1, int(per_minute))
        self._clock, self._wall = clock, wall
        self._cond = threading.Condition()
        self._changes = 0  # bumped by every report: a waiting worker looks again
        self._ceiling: deque[float] = deque()  # send instants of the last minute
        self._sent = 0  # permits handed out: each request's number
        self._in_flight: dict[int, _Request] = {}
        self._held_since: list[float] = []  # answer times (ascending) of ours the server may still count
        self._history: deque[_Request] = deque()  # recent requests in permit order, to bound the window
        self._answered = False  # an HTTP answer came back (before that, one request at a time)
        self._headers = False  # the server sends rate-limit headers: its model is on
        self._limit: int | None = None  # the server's limit
        self._newest = 0  # permit of the newest answer the budget was taken from
        self._foreign = 0  # requests the server counts that cannot be this run's (another program's)
        self._foreign_since = 0.0
        self._leftover = 0  # requests counted before this run's first answer (a previous run's), at most
        self._first_at = 0.0  # monotonic: this run's first answer with rate-limit headers
        self._reset_at = 0.0  # monotonic: the server's next reset (some quota comes back), inf once spent
        self._last_answer = 0.0
        self._probe: int | None = None  # a lone request asking what is left, in flight
        self._probe_only = False  # after a 429: nothing but a lone request until an answer shows quota
        self._probe_not_before = 0.0
        self._paused_until = 0.0
        self._pause_began = -math.inf
        self._throttled = 0  # 429s in a row
        self._w_lo, self._w_hi = 0.0, math.inf  # bounds of the server's window length
        self._w_lo_seen = 0.0  # a tighter lower bound, from which of our requests the server still counted
        self._slack = 0.0  # seconds added to every reset after 429s proved the model early
        self._whole_seconds = True

    @property
    def per_minute(self) -> float:
        return float(self._per_minute)

    @property
    def window_s(self) -> float | None:
        """The server's window length as learned so far (an upper estimate), or None before it is known."""
        with self._cond:
            return self._window()

    # -- handing out permits ----------------------------------------------------------------------------------

    def acquire(
        self, stop: threading.Event | None = None, on_wait: Callable[[str, float], None] | None = None
    ) -> int | None:
        """Block until a request may go; return its permit number, or None if ``stop`` was set first.

        ``on_wait(reason, seconds)`` is told of every wait longer than 0.2 s before it starts."""
        told: tuple[str, float] | None = None
        while True:
            with self._cond:
                permit, wait, reason = self._decide()
                seen = self._changes
            if permit is not None:
                return permit
            if stop is not None and stop.is_set():
                return None
            if on_wait is not None and wait is not None and wait > 0.2:
                until = self._clock() + wait
                if told is None or told[0] != reason or abs(told[1] - until) > 0.1:
                    on_wait(reason, wait)
                    told = (reason, until)
            with self._cond:
                if self._changes == seen:
                    self._cond.wait(min(POLL_S, wait) if wait is not None else POLL_S)

    def try_acquire(self) -> tuple[int | None, float | None, str]:
        """(permit, None, "") if a request may go now; else (None, seconds to wait or None for "until an answer
        comes back", why: ``rate limit`` for our own pacing, ``rate-limit reset`` when the server's is spent)."""
        with self._cond:
            return self._decide()

    def _decide(self) -> tuple[int | None, float | None, str]:
        now = self._clock()
        if now < self._paused_until:
            return None, self._paused_until - now, "rate-limit reset"
        while self._ceiling and self._ceiling[0] <= now - WINDOW_S:
            self._ceiling.popleft()
        if len(self._ceiling) >= self._per_minute:
            return None, self._ceiling[0] + WINDOW_S - now, "rate limit"
        if self._probe is not None:  # a lone request nobody reported on (a caller without done()) is lost
            lone = self._in_flight.get(self._probe)
            if lone is None or now - lone.sent > PROBE_LOST_S:
                self._answer(self._probe, now)
        if not self._answered or self._probe_only:  # nothing known yet, or a 429 said it was wrong: ask alone
            if self._probe is not None:
                return None, None, "rate limit"
            return self._grant(now, probe=True), None, ""  # sent blind: a 429 on it proves no model wrong
        if not self._headers or self._limit is None:
            return self._grant(now), None, ""  # a server without rate-limit headers: the ceiling alone
        held, frees_at = self._held(now)
        if held < self._limit:
            self._reset_at = math.inf  # the quota the last reset promised may be this very slot
            return self._grant(now, informed=True), None, ""
        if self._probe is None:
            ask_at = max(self._reset_at, self._probe_not_before)
            if ask_at == frees_at == math.inf and not self._in_flight:  # nothing would ever free a slot
                ask_at = self._last_answer + PAUSE_WITHOUT_HEADERS_S
            if ask_at <= now:  # the reset passed: some quota may be back, one request asks how much
                return self._grant(now, probe=True, informed=True), None, ""
            if ask_at < frees_at:
                return None, ask_at - now, "rate-limit reset"
        return None, (frees_at - now if frees_at < math.inf else None), "rate limit"

    def _grant(self, now: float, *, probe: bool = False, informed: bool = False) -> int:
        self._sent += 1
        request = _Request(now, informed=informed)
        self._in_flight[self._sent] = request
        self._history.append(request)
        while len(self._history) > 2 * _HISTORY:
            self._history.popleft()
        self._ceiling.append(now)
        if probe:
            self._probe = self._sent
        return self._sent

    def _window(self) -> float | None:
        """The window length slots are held for: the upper bound, rounded down to the whole second while windows
        are taken to be whole seconds and one lies above the lower bound."""
        if self._w_hi == math.inf:
            return None
        low = max(self._w_lo, self._w_lo_seen) if self._w_lo_seen <= self._w_hi else self._w_lo
        whole = math.floor(self._w_hi)
        if self._whole_seconds and whole >= 1 and low < whole:
            return float(whole)
        return self._w_hi

    def _held(self, now: float) -> tuple[int, float]:
        """(slots the server may count now, when the next one frees); forgets requests that aged out."""
        window = self._window()
        if window is None:  # until the window is known, only the server's count frees a slot
            ours = len(self._in_flight) + len(self._held_since)
            return ours + max(self._leftover, self._foreign), math.inf
        aged = bisect.bisect_right(self._held_since, now - window - MARGIN_S)
        del self._held_since[:aged]
        frees_at = self._held_since[0] + window + MARGIN_S if self._held_since else math.inf
        # a previous run's requests arrived before our first answer, someone else's before the answer that
        # showed them: either kind has aged out one window later
        if self._leftover and self._first_at + window + MARGIN_S <= now:
            self._leftover = 0
        if self._foreign and self._foreign_since + window + MARGIN_S <= now:
            self._foreign = 0
        if self._leftover:
            frees_at = min(frees_at, self._first_at + window + MARGIN_S)
        if self._foreign:
            frees_at = min(frees_at, self._foreign_since + window + MARGIN_S)
        ours = len(self._in_flight) + len(self._held_since)
        return ours + max(self._leftover, self._foreign), frees_at

    # -- reports --------------------------------------------------------------------------------------------

    def release(self, permit: int | None) -> None:
        """The request of ``permit`` was never sent."""
        with self._cond:
            self._in_flight.pop(permit or 0, None)
            if self._probe == permit:
                self._probe = None
            self._changed()

    def done(self, permit: int | None) -> None:
        """The request of ``permit`` got no answer (dropped, timed out): it may still have been counted."""
        with self._cond:
            self._answer(permit, self._clock())
            self._changed()

    def _answer(self, permit: int | None, now: float, ago: float = 0.0) -> _Request | None:
        request = self._in_flight.pop(permit or 0, None)
        if request is not None:
            request.answered = max(request.sent, now - ago)
            bisect.insort(self._held_since, request.answered)
        if self._probe == permit:
            self._probe = None
        return request

    def observe(
        self,
        *,
        remaining: int | None,
        reset_epoch: float | None,
        throttled: bool = False,
        permit: int | None = None,
        limit: int | None = None,
        headers_ago: float = 0.0,
    ) -> None:
        """Take one answer into account: its ``X-RateLimit-*`` headers (None when absent) and whether it was a
        429. Call it after every HTTP answer, with the permit its request went out with, and how long ago its
        headers came in (``headers_ago``, the time spent reading its body: the request was counted before that)."""
        with self._cond:
            now, offset = self._clock(), self._wall() - self._clock()
            was_probe = permit is not None and self._probe == permit
            request = self._answer(permit, now, max(0.0, headers_ago))
            self._answered, self._last_answer = True, now
            first = remaining is not None and not self._headers
            if remaining is not None:
                self._headers = True
                self._limit = limit if limit is not None else max(self._limit or 0, remaining + 1)
            reset = None
            if reset_epoch is not None:
                reset = now + min(max(reset_epoch + self._slack - offset - now, 0.0), MAX_SERVER_WAIT_S) + MARGIN_S
            if throttled:
                if first and self._limit is not None:  # it went alone: all the rest was counted before this run
                    self._leftover, self._first_at = self._limit - 1, now
                self._on_429(now, request, reset)
            elif remaining is not None and permit is not None and request is not None and self._limit is not None:
                if limit is not None and reset_epoch is not None:
                    self._bound_window(limit - remaining, request, reset_epoch, offset)
                # the newest answer sets the budget; after a 429, only one sent after it (older news lost)
                if permit > self._newest and not (self._probe_only and request.sent < self._pause_began):
                    self._newest, self._throttled = permit, 0
                    self._recount(permit, self._limit - remaining, request.sent, now, first)
                    if reset is not None:  # unless a request sent since may hold what it gives back
                        self._reset_at = math.inf if any(p > permit for p in self._in_flight) else reset
                    if was_probe or self._probe_only:
                        self._probe_only = False
                        # a lone request that found nothing free: the next one waits for the next reset
                        full = self._held(now)[0] >= self._limit
                        self._probe_not_before = now + PROBE_SPACING_S if full else 0.0
            elif not self._headers and request is not None and request.sent >= self._pause_began:
                # a server that sends no headers (Massive) answered a request sent since the last 429's pause:
                # the pause is over, and the next 429 is not "in a row" with the last
                self._throttled, self._probe_only = 0, False
            self._changed()

    def _changed(self) -> None:
        self._changes += 1
        self._cond.notify_all()

    def _recount(self, permit: int, counted: int, sent: float, now: float, first: bool) -> None:
        """The server counted ``counted`` requests when ``permit`` (sent at ``sent``) arrived.

        Ours answered before it left had arrived: beyond ``counted`` - 1 of them (it counts itself) they have
        aged out, the oldest first. Ours answered since, or still in flight, may have arrived before it or after
        it: they stay held either way, and the rest of the count is someone else's. How much is unclear by up to
        those uncertain ones: a previous run's requests are bounded from above (they only age out, so the lowest
        bound any answer gave holds), another program's from below unless a 429 showed the model is wrong."""
        concurrent = 0
        for answered in reversed(self._held_since):
            if answered < sent:
                break
            concurrent += 1
        settled = len(self._held_since) - concurrent
        keep = max(0, min(settled, counted - 1))
        del self._held_since[: settled - keep]
        at_most = max(0, counted - keep - 1)
        earlier = sum(1 for p in self._in_flight if p < permit)
        at_least = max(0, counted - keep - concurrent - earlier)
        if first:
            self._leftover, self._first_at = at_most, now
        else:
            self._leftover = min(self._leftover, at_most)
        self._foreign, self._foreign_since = (at_most if self._slack or not self._whole_seconds else at_least), now

    def _bound_window(self, counted: int, request: _Request, reset_epoch: float, offset: float) -> None:
        """Narrow the window length with one answer that counted ``counted`` requests (the module docstring).

        The server counts the ``counted`` latest of its arrivals, and resets when the oldest of those goes
        (``reset`` = its arrival + W, rounded up): W <= reset - (the arrival of any request no later than it),
        W > reset - 1 s - (the arrival of any request no earlier than it). Only our own requests' send and
        answer times are known; they bound their arrivals."""
        if counted < 1 or counted > _HISTORY or request.answered is None:
            return
        reset = reset_epoch + self._slack - offset  # monotonic
        answered, sent = request.answered, request.sent
        self._w_lo = max(self._w_lo, reset - 1.0 - answered)
        recent = list(self._history)[-(counted + _HISTORY // 2):]
        # Upper bound: a request j certainly arrived no later than the oldest counted when at least counted - 2
        # others certainly arrived between it and this one (sent after j's answer, answered before this left).
        if counted == 1:
            oldest: float | None = sent
        else:
            before = sorted((r.sent for r in recent if r is not request and r.answered is not None
                             and r.answered <= sent), reverse=True)
            older: list[float] = []
            if counted == 2:  # any request answered before this one left
                older = [r.sent for r in recent if r is not request and r.answered is not None and r.answered <= sent]
            elif len(before) >= counted - 2:  # one answered before the (counted-2)-th latest of those left
                pivot = before[counted - 3]
                older = [r.sent for r in recent if r.answered is not None and r.answered < pivot]
            oldest = max(older) if older else None
        if oldest is not None:
            self._w_hi = min(self._w_hi, MAX_SERVER_WAIT_S, reset - oldest)
        # Lower bound: a request j arrived no earlier than the oldest counted when fewer than counted requests
        # can have arrived after it (ours in flight at any time since it left, this one included). Someone
        # else's requests would make this too high, never too low: it is used only while it stays below the
        # upper bound.
        ends = sorted(r.answered if r.answered is not None else math.inf for r in recent if r.sent <= answered)
        best = None
        for r in reversed(recent):
            if r.sent > answered:
                continue
            overlapping = len(ends) - bisect.bisect_right(ends, r.sent) - 1
            if overlapping >= counted:
                break
            best = r.answered if r.answered is not None else answered
        if best is not None:
            self._w_lo_seen = max(self._w_lo_seen, reset - 1.0 - best)
        if self._w_hi < self._w_lo:  # the headers contradict the model: keep the safe side, stop rounding
            self._w_hi, self._whole_seconds = self._w_lo + 1.0, False

    def _on_429(self, now: float, request: _Request | None, reset: float | None) -> None:
        if request is not None and request.sent >= self._pause_began:  # not one already in flight at a pause
            self._throttled += 1
            if request.informed:
                self._distrust()
        until = reset if reset is not None else now + PAUSE_WITHOUT_HEADERS_S
        if self._throttled > 1:
            until = max(until, now + min(PAUSE_WITHOUT_HEADERS_S * 2 ** (self._throttled - 2), 30.0))
        if until > self._paused_until:
            self._paused_until, self._pause_began = min(until, now + MAX_SERVER_WAIT_S), now
        self._reset_at = max(self._reset_at, self._paused_until)
        self._probe_only = True
        if self._limit is not None:  # the quota is spent: every slot is held until an answer says otherwise
            self._foreign = max(0, self._limit - len(self._in_flight) - len(self._held_since))
            self._foreign_since = now

    def _distrust(self) -> None:
        """A 429 on a request the model let out: stop rounding the window to whole seconds, and from the second
        time on read every reset a little later (the server may round it down, or someone else spends quota)."""
        if not self._whole_seconds:
            self._slack = min(1.0, self._slack + 0.5)
            if self._w_hi < math.inf:
                self._w_hi = min(MAX_SERVER_WAIT_S, self._w_hi + 0.5)
        self._whole_seconds = False
