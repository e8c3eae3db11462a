import time

from dataengine.api.rate_limiter import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slots_are_spaced_evenly_across_callers() -> None:
    clock = Clock()
    limiter = RateLimiter(120, clock=clock)  # one every 0.5 s
    waits = [limiter.reserve()[0] for _ in range(4)]
    assert waits == [0.0, 0.5, 1.0, 1.5]


def test_an_idle_limiter_does_not_bank_a_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    limiter.reserve()
    clock.now += 10
    assert [limiter.reserve()[0] for _ in range(2)] == [0.0, 1.0]


def test_spent_quota_pauses_everyone_until_reset() -> None:
    clock = Clock()
    limiter = RateLimiter(60_000, clock=clock)
    limiter.observe(remaining=0, reset_epoch=time.time() + 2.0)
    wait, reason = limiter.reserve()
    assert 1.5 < wait <= 2.1 and reason == "rate-limit reset"


def test_remaining_quota_does_not_pause() -> None:
    limiter = RateLimiter(60_000, clock=Clock())
    limiter.observe(remaining=5, reset_epoch=time.time() + 30)
    assert limiter.reserve()[0] == 0.0


def test_a_429_without_headers_pauses_briefly_and_a_huge_reset_is_capped() -> None:
    clock = Clock()
    limiter = RateLimiter(60_000, clock=clock)
    limiter.observe(remaining=None, reset_epoch=None, throttled=True)
    assert 0.9 < limiter.reserve()[0] <= 1.0
    limiter.observe(remaining=0, reset_epoch=time.time() + 3600)
    assert limiter.reserve()[0] <= 65.1
