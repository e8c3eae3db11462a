"""The fake server's two rate-limit models, as a client sees them through Alpaca's X-RateLimit-* headers."""

from __future__ import annotations

import math
import time

import pytest
import requests

from tests.alpaca_server import FakeAlpaca

AUTH = {"APCA-API-KEY-ID": "test-key", "APCA-API-SECRET-KEY": "test-secret"}
QUERY = {"symbols": "AAPL", "timeframe": "1Day", "start": "2024-03-04", "end": "2024-03-05", "limit": "1"}


def get(server: FakeAlpaca) -> tuple[int, int, int]:
    """(status, X-RateLimit-Remaining, X-RateLimit-Reset) of one bars request."""
    r = requests.get(server.url + "/v2/stocks/bars", params=QUERY, headers=AUTH, timeout=10)
    assert r.headers["X-RateLimit-Limit"] == str(server.rate_limit)
    return r.status_code, int(r.headers["X-RateLimit-Remaining"]), int(r.headers["X-RateLimit-Reset"])


def sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


@pytest.mark.parametrize("model", ["fixed", "rolling"])
def test_a_spent_window_refuses_and_names_the_reset(model: str) -> None:
    with FakeAlpaca(rate_limit=2, rate_window_s=1.0, rate_model=model) as s:
        first = time.time()
        assert get(s)[:2] == (200, 1)
        assert get(s)[:2] == (200, 0)
        status, remaining, reset = get(s)
        assert (status, remaining) == (429, 0)
        assert first + 1 <= reset <= math.ceil(first + 1.1)  # whole epoch seconds, rounded up


def test_a_rolling_window_gives_quota_back_one_request_at_a_time() -> None:
    """A request arrives between the client's clock readings around it, so its reset is one of theirs rounded
    up (CI once saw the first arrive in the next second after ``time.time()`` was read before it)."""
    with FakeAlpaca(rate_limit=2, rate_window_s=1.0, rate_model="rolling") as s:
        first = time.time()
        get(s)
        first_answered = time.time()
        sleep_until(first + 0.5)
        second = time.time()
        status, remaining, reset = get(s)
        second_answered = time.time()
        # Reset: when the oldest request ages out
        assert (status, remaining) == (200, 0) and math.ceil(first + 1.0) <= reset <= math.ceil(first_answered + 1.0)
        sleep_until(first_answered + 1.1)
        # the first request aged out, the second still counts: one slot came back, not the whole limit
        status, remaining, reset = get(s)
        assert (status, remaining) == (200, 0) and math.ceil(second + 1.0) <= reset <= math.ceil(second_answered + 1.0)
        assert get(s)[0] == 429


def test_a_fixed_window_gives_all_quota_back_at_its_end() -> None:
    with FakeAlpaca(rate_limit=2, rate_window_s=1.0, rate_model="fixed") as s:
        first = time.time()
        get(s)
        sleep_until(first + 0.5)
        get(s)
        sleep_until(first + 1.1)
        status, remaining, reset = get(s)  # opens the next window
        assert (status, remaining) == (200, 1) and reset >= first + 2


def test_refused_requests_count_in_a_rolling_window_too() -> None:
    with FakeAlpaca(rate_limit=1, rate_window_s=0.6, rate_model="rolling") as s:
        first = time.time()
        get(s)
        sleep_until(first + 0.3)
        assert get(s)[0] == 429
        sleep_until(first + 0.65)  # the first aged out, the refused one has not
        assert get(s)[0] == 429


def test_an_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_model"):
        FakeAlpaca(rate_model="sliding")


def test_quota_use_is_the_share_of_the_limit_answered_requests_held() -> None:
    with FakeAlpaca(rate_limit=2, rate_window_s=1.0, rate_model="rolling") as s:
        get(s)
        get(s)
        get(s)  # refused: holds quota, but none of it is use
        first, last = (r.counted for r in s.all_requests[:2])
        assert first is not None and last is not None
        assert s.quota_use(first[0], first[0] + 1.0) == pytest.approx(1.0, abs=0.02)
        assert s.quota_use(first[0], first[0] + 2.0) == pytest.approx(0.5, abs=0.02)


def test_a_runs_quota_use_counts_from_when_it_met_the_limit() -> None:
    # a 4 s window: the third request is refused unless a loaded machine holds this test up 1.8 s (a 1 s window
    # left it 0.3 s)
    with FakeAlpaca(rate_limit=2, rate_window_s=4.0, rate_model="fixed") as s:
        get(s)
        time.sleep(2.0)
        get(s)  # the limit is met here, half a window in
        time.sleep(0.2)
        assert get(s)[0] == 429  # refused
        whole, limited = s.run_quota_use(s.all_requests)
        assert whole == pytest.approx(1.0, abs=0.05) and limited == pytest.approx(1.0, abs=0.05)
        assert math.isnan(s.run_quota_use(s.all_requests[:1])[1])  # never met the limit
