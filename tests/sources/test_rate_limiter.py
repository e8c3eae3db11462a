"""The request budget on a controlled clock: windows, the server's headers, pauses."""

from dataengine.sources.rate_limiter import WINDOW_S, RateLimiter


class Clock:
    """Monotonic and wall time that move together, by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now


def limiter(per_minute: float) -> tuple[RateLimiter, Clock]:
    clock = Clock()
    return RateLimiter(per_minute, clock=clock, wall=clock.wall), clock


def test_a_fresh_window_lets_a_burst_go_at_once() -> None:
    rl, _ = limiter(200)
    waits = [rl.reserve()[0] for _ in range(35)]
    assert waits == [0.0] * 35  # the old even pacing would have spread these over 10.2 s


def test_a_spent_window_makes_the_next_permits_wait_for_the_next_window() -> None:
    rl, clock = limiter(3)
    assert [rl.reserve()[0] for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 10
    wait, reason, _ = rl.reserve()
    assert wait == WINDOW_S - 10 and reason == "rate limit"
    # the next window's budget is shared by whoever asks next: two more go with it, the fourth waits again
    assert [rl.reserve()[0] for _ in range(2)] == [WINDOW_S - 10] * 2
    assert rl.reserve()[0] == 2 * WINDOW_S - 10


def test_the_servers_count_lowers_the_budget_and_counts_permits_sent_after_that_answer() -> None:
    rl, clock = limiter(200)
    first = rl.reserve()[2]
    for _ in range(4):
        rl.reserve()  # four more in flight, sent after the first
    # the server counted the first request and 190 others (another program on the same key): 9 left
    rl.observe(remaining=9, reset_epoch=clock.wall() + 50, permit=first)
    assert [rl.reserve()[0] for _ in range(5)] == [0.0] * 5  # 9 - 4 unseen = 5 left
    assert rl.reserve()[0] > 49


def test_an_older_answer_does_not_undo_a_newer_one() -> None:
    rl, clock = limiter(200)
    permits = [rl.reserve()[2] for _ in range(3)]
    rl.observe(remaining=100, reset_epoch=clock.wall() + 50, permit=permits[2])
    rl.observe(remaining=150, reset_epoch=clock.wall() + 50, permit=permits[0])  # arrived late
    assert [rl.reserve()[0] for _ in range(100)] == [0.0] * 100
    assert rl.reserve()[0] > 49


def test_the_setting_stays_a_ceiling_when_the_server_allows_more() -> None:
    rl, clock = limiter(5)
    permit = rl.reserve()[2]
    rl.observe(remaining=9_999, reset_epoch=clock.wall() + 59, permit=permit)
    assert [rl.reserve()[0] for _ in range(4)] == [0.0] * 4
    assert rl.reserve()[0] > 58


def test_the_servers_reset_instant_ends_the_window() -> None:
    rl, clock = limiter(2)
    permit = rl.reserve()[2]
    rl.reserve()
    rl.observe(remaining=1, reset_epoch=clock.wall() + 59.8, permit=permit)  # the server's window opened later
    assert 59.8 <= rl.reserve()[0] <= 59.9


def test_spent_quota_pauses_everyone_until_reset() -> None:
    rl, clock = limiter(60_000)
    rl.observe(remaining=0, reset_epoch=clock.wall() + 2.0)
    wait, reason, _ = rl.reserve()
    assert 2.0 <= wait <= 2.1 and reason == "rate-limit reset"
    clock.now += 2.1
    assert rl.reserve()[0] == 0.0  # and a fresh window opens after it


def test_a_429_without_headers_pauses_briefly_and_a_huge_reset_is_capped() -> None:
    rl, clock = limiter(60_000)
    rl.observe(remaining=None, reset_epoch=None, throttled=True)
    assert 0.9 < rl.reserve()[0] <= 1.0
    rl.observe(remaining=0, reset_epoch=clock.wall() + 3600)
    assert rl.reserve()[0] <= 65.1


def test_a_sleeper_whose_slot_falls_inside_a_new_pause_waits_for_the_pause() -> None:
    rl, clock = limiter(1)
    rl.reserve()
    wait, _, _ = rl.reserve()  # the next window's permit, 60 s away
    assert wait == WINDOW_S
    rl.observe(remaining=None, reset_epoch=clock.wall() + 64, throttled=True)  # the server's window ends later
    clock.now += wait  # the sleeper wakes: its slot is inside the pause, so it must take a new one
    assert rl._paused_now()
    assert rl.reserve()[0] > 3.9
