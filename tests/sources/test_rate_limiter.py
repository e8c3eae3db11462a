"""The request budget on a controlled clock: the first answer, bursts, fixed and rolling windows, 429s."""

from __future__ import annotations

import math

import pytest

from dataengine.sources.rate_limiter import MARGIN_S, RateLimiter

WALL0 = 1_700_000_000.3  # a wall clock off the whole second, as a server's rounded-up reset is


class Clock:
    """Monotonic and wall time that move together, by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL0 + self.now - 100.0


def limiter(per_minute: float = 10_000) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(per_minute, clock=clock, wall=clock.wall), clock


def grants(rl: RateLimiter, n: int) -> list[int]:
    """Take ``n`` permits that must all be free now."""
    taken = []
    for _ in range(n):
        permit, wait, reason = rl.try_acquire()
        assert permit is not None, f"no permit after {len(taken)}: wait {wait} ({reason})"
        taken.append(permit)
    return taken


def blocked(rl: RateLimiter) -> tuple[float | None, str]:
    permit, wait, reason = rl.try_acquire()
    assert permit is None
    return wait, reason


def answer(rl: RateLimiter, clock: Clock, permit: int, remaining: int, *, limit: int = 200, window: float = 60.0,
           oldest: float | None = None, throttled: bool = False) -> None:
    """An answer as the server sends it: the reset is when the oldest request counted (``oldest``, a clock time;
    this one by default) ages out, rounded up to the whole second."""
    reset = math.ceil(clock.wall() - clock.now + (oldest if oldest is not None else clock.now) + window)
    rl.observe(remaining=remaining, reset_epoch=reset, limit=limit, permit=permit, throttled=throttled)


def test_the_first_request_goes_alone_and_its_answer_sets_the_budget() -> None:
    rl, clock = limiter()
    [first] = grants(rl, 1)
    assert blocked(rl) == (None, "rate limit")  # until its answer comes back
    answer(rl, clock, first, remaining=199)
    grants(rl, 35)  # a job that fits in the quota goes out at once, not spaced 60/200 s apart


def test_quota_spent_by_someone_else_lowers_the_budget() -> None:
    rl, clock = limiter()
    [first] = grants(rl, 1)
    answer(rl, clock, first, remaining=9, oldest=70.0)  # a previous run spent 190 of 200, its oldest 30 s ago
    for permit, left in zip(grants(rl, 9), range(8, -1, -1), strict=True):
        answer(rl, clock, permit, remaining=left, oldest=70.0)
    wait, reason = blocked(rl)
    assert wait is not None and 30 < wait <= 31 + MARGIN_S and reason == "rate-limit reset"


def test_requests_in_flight_count_against_what_the_server_said_was_left() -> None:
    rl, clock = limiter()
    answer(rl, clock, grants(rl, 1)[0], remaining=199)
    permits = grants(rl, 5)
    answer(rl, clock, permits[0], remaining=10)  # four more left after it: the server may not have seen them
    grants(rl, 10 - 4)
    blocked(rl)


def test_an_older_answer_does_not_undo_a_newer_one() -> None:
    rl, clock = limiter()
    answer(rl, clock, grants(rl, 1)[0], remaining=199)
    permits = grants(rl, 3)
    answer(rl, clock, permits[2], remaining=100)
    answer(rl, clock, permits[0], remaining=150)  # arrived late
    grants(rl, 100)
    blocked(rl)


def test_the_setting_stays_a_ceiling_when_the_server_allows_more() -> None:
    rl, clock = limiter(per_minute=5)
    answer(rl, clock, grants(rl, 1)[0], remaining=9_999, limit=10_000)
    grants(rl, 4)
    clock.now += 10
    wait, reason = blocked(rl)
    assert wait == pytest.approx(50.0) and reason == "rate limit"


def test_the_window_length_comes_from_the_headers_not_from_a_minute() -> None:
    rl, clock = limiter()
    assert rl.window_s is None
    answer(rl, clock, grants(rl, 1)[0], remaining=24, limit=25, window=5.0)
    assert rl.window_s == 5.0  # reset 5.7 s away, rounded up from 5 s after its arrival: 5 is the only whole second


def test_a_rolling_window_gives_quota_back_one_request_at_a_time() -> None:
    rl, clock = limiter()
    [first] = grants(rl, 1)
    answer(rl, clock, first, remaining=2, limit=3, window=5.0)
    clock.now += 1
    [second] = grants(rl, 1)
    answer(rl, clock, second, remaining=1, limit=3, window=5.0, oldest=100.0)
    clock.now += 1
    [third] = grants(rl, 1)
    answer(rl, clock, third, remaining=0, limit=3, window=5.0, oldest=100.0)
    wait, _ = blocked(rl)
    assert wait == pytest.approx(100.0 + 5.0 + MARGIN_S - clock.now)  # the first request ages out, alone
    clock.now += wait
    grants(rl, 1)
    wait, _ = blocked(rl)
    assert wait == pytest.approx(1.0)  # then the second, a second later


def test_a_fixed_window_that_starts_afresh_frees_every_slot_at_once() -> None:
    rl, clock = limiter()
    answer(rl, clock, grants(rl, 1)[0], remaining=2, limit=3, window=5.0)
    permits = grants(rl, 2)
    for permit in permits:
        answer(rl, clock, permit, remaining=0, limit=3, window=5.0, oldest=100.0)
    clock.now = 105.0 + MARGIN_S
    [opener] = grants(rl, 1)  # the first slot aged out: this request opens the next window
    clock.now += 0.01
    answer(rl, clock, opener, remaining=2, limit=3, window=5.0)  # it is the only one counted
    grants(rl, 2)  # so the other two slots are free too, before our own record says so
    blocked(rl)


def test_spent_quota_waits_for_the_reset_then_one_request_asks_what_came_back() -> None:
    rl, clock = limiter()
    [first] = grants(rl, 1)
    answer(rl, clock, first, remaining=0, oldest=70.0)  # a previous run spent the window; its oldest leaves at 130
    wait, reason = blocked(rl)
    assert reason == "rate-limit reset" and 30 < wait <= 31 + MARGIN_S
    clock.now += wait
    [probe] = grants(rl, 1)
    assert blocked(rl) == (None, "rate limit")  # one request asks; the others wait for its answer
    answer(rl, clock, probe, remaining=40, oldest=75.0)  # some quota came back, not all of it
    grants(rl, 40)
    blocked(rl)


def test_a_reset_does_not_send_a_request_when_one_sent_since_may_hold_the_quota_it_gives_back() -> None:
    # CI, 2026-12-07: a run drew a 429 by a lone request sent at a reset whose slot a request in flight had taken
    rl, clock = limiter()
    answer(rl, clock, grants(rl, 1)[0], remaining=2, limit=3, window=5.0)
    second, third = grants(rl, 2)  # every slot held
    clock.now += 0.1
    # someone else's request, counted from 95.05, leaves at 100.05: third, which arrives after, takes its slot
    answer(rl, clock, second, remaining=0, limit=3, window=5.0, oldest=95.05)
    clock.now = 100.7 + MARGIN_S + 0.01  # past the reset second's answer named
    wait, reason = blocked(rl)  # nothing came back that third may not have taken: wait for our first to leave
    assert reason == "rate limit" and wait == pytest.approx(100.0 + 5.0 + MARGIN_S - clock.now)
    answer(rl, clock, third, remaining=0, limit=3, window=5.0, oldest=100.0)  # full indeed
    assert blocked(rl) == (wait, "rate limit")


def test_a_429_pauses_everyone_until_the_reset_then_one_request_asks() -> None:
    rl, clock = limiter()
    [first] = grants(rl, 1)
    answer(rl, clock, first, remaining=0, throttled=True, oldest=90.0)
    wait, reason = blocked(rl)
    assert reason == "rate-limit reset" and 50 < wait <= 51 + MARGIN_S
    clock.now += wait
    [probe] = grants(rl, 1)
    blocked(rl)
    answer(rl, clock, probe, remaining=0, throttled=True, oldest=95.0)  # wrong again: back off for longer
    wait, _ = blocked(rl)
    assert wait is not None and wait >= 1.0


def test_a_429_without_headers_pauses_briefly_and_a_huge_reset_is_capped() -> None:
    rl, _ = limiter()
    [first] = grants(rl, 1)
    rl.observe(remaining=None, reset_epoch=None, throttled=True, permit=first)
    wait, _ = blocked(rl)
    assert wait is not None and 0.9 < wait <= 1.0
    rl2, clock2 = limiter()
    [first] = grants(rl2, 1)
    rl2.observe(remaining=0, reset_epoch=clock2.wall() + 3600, limit=200, throttled=True, permit=first)
    wait, _ = blocked(rl2)
    assert wait is not None and wait <= 65.1


def test_a_429_on_a_slot_the_model_believed_free_stops_the_rounding_to_whole_seconds() -> None:
    rl, clock = limiter()
    answer(rl, clock, grants(rl, 1)[0], remaining=24, limit=25, window=5.0)
    assert rl.window_s == 5.0
    [permit] = grants(rl, 1)
    answer(rl, clock, permit, remaining=0, limit=25, window=5.0, throttled=True)
    window = rl.window_s
    assert window is not None and window > 5.0  # the upper bound, no longer rounded down


def test_a_server_without_rate_limit_headers_leaves_the_ceiling_alone_in_charge() -> None:
    rl, _ = limiter(per_minute=50)
    [first] = grants(rl, 1)
    rl.observe(remaining=None, reset_epoch=None, permit=first)
    grants(rl, 49)
    wait, _ = blocked(rl)
    assert wait == pytest.approx(60.0)


def test_a_request_without_an_answer_or_never_sent_lets_the_next_one_go() -> None:
    rl, _ = limiter()
    [first] = grants(rl, 1)
    rl.done(first)  # the connection dropped: still nothing known, so the next request goes alone again
    [second] = grants(rl, 1)
    blocked(rl)
    rl.release(second)
    grants(rl, 1)


def test_a_lone_request_nobody_reports_on_stops_holding_the_others_back() -> None:
    rl, clock = limiter()
    grants(rl, 1)  # its caller never says how it went
    blocked(rl)
    clock.now += 10.1
    grants(rl, 1)


def test_without_headers_an_answer_after_a_429s_pause_ends_it_and_the_next_429_pauses_briefly_again() -> None:
    """Massive sends no rate-limit headers. An answer to the lone request after a 429's pause used to change
    nothing: every later request still went alone, and each later 429 paused twice as long as the one before
    (1, 1, 2, 4, 8, 16, 30 s across separate episodes in a user's trial of its free plan)."""
    rl, clock = limiter()
    rl.observe(remaining=None, reset_epoch=None, permit=grants(rl, 1)[0])
    for _ in range(3):  # three separate episodes, each over before the next
        [throttled] = grants(rl, 1)
        rl.observe(remaining=None, reset_epoch=None, throttled=True, permit=throttled)
        wait, _ = blocked(rl)
        assert wait is not None and 0.9 < wait <= 1.0  # brief every time: the 429s were not in a row
        clock.now += wait
        [probe] = grants(rl, 1)
        blocked(rl)  # the lone request asks first
        rl.observe(remaining=None, reset_epoch=None, permit=probe)
        grants(rl, 5)  # answered: requests go out together again
