"""The Massive client against a local Massive-compatible server: paging, exact bars, errors and faults."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from dataengine.actions.factors import adjust_frame, cumulative_factors, factor_events
from dataengine.actions.schema import ACTION_SCHEMA
from dataengine.config import Settings
from dataengine.errors import (
    AuthError,
    ConfigError,
    FatalRunError,
    Interrupted,
    PagingLoopError,
    RequestRejectedError,
    SourceUnreachableError,
    TransientSourceError,
)
from dataengine.sources.http import RetryPolicy
from dataengine.sources.massive_client import MassiveClient, _relative
from dataengine.sources.rate_limiter import RateLimiter
from dataengine.storage.layout import BAR_SCHEMA
from tests.massive_server import FakeMassive

NY = ZoneInfo("America/New_York")
Make = Callable[..., MassiveClient]


def days(first: str, last: str) -> tuple[datetime, datetime]:
    """New York days first..last, inclusive, as UTC instants."""
    lo = datetime.combine(date.fromisoformat(first), datetime.min.time(), NY)
    hi = datetime.combine(date.fromisoformat(last) + timedelta(days=1), datetime.min.time(), NY) - timedelta(microseconds=1)
    return lo.astimezone(timezone.utc), hi.astimezone(timezone.utc)


def fetch(client: MassiveClient, symbols: list[str], timeframe: str, rng: tuple[datetime, datetime]) -> pl.DataFrame:
    pages = list(client.iter_pages(symbols, timeframe, *rng))
    assert all(dict(p.bars.schema) == BAR_SCHEMA for p in pages)
    return pl.concat([p.bars for p in pages])


def truth(server: FakeMassive, symbol: str, n: int, span: str, rng: tuple[datetime, datetime]) -> pl.DataFrame:
    return server.synthetic_frame(symbol, n, span, *rng).insert_column(0, pl.lit(symbol).alias("symbol"))


LONG = days("2024-01-02", "2024-03-22")  # 56 sessions of 960 minute bars: more than one page of 50,000


def test_pages_are_followed_as_given_and_bars_equal_the_servers(massive: FakeMassive, massive_client: Make) -> None:
    client = massive_client()
    bars = fetch(client, ["AAPL"], "minute", LONG)
    assert bars.equals(truth(massive, "AAPL", 1, "minute", LONG))
    sent = massive.requests
    assert len(sent) == math.ceil(bars.height / 50_000) == client.stats.requests == 2
    assert sent[0].params == {"adjusted": "false", "sort": "asc", "limit": "50000"}
    assert sent[0].path.endswith(f"/range/1/minute/{int(LONG[0].timestamp() * 1000)}/{int(LONG[1].timestamp() * 1000)}")
    assert set(sent[1].params) == {"cursor"} and sent[1].path.split("/")[-1] == sent[0].path.split("/")[-1]
    assert (client.stats.bars, client.stats.retries, client.stats.throttled) == (bars.height, 0, 0)


def test_symbols_one_after_another_sorted_with_day_bars_at_new_york_midnight(massive: FakeMassive, massive_client: Make) -> None:
    rng = days("2024-03-07", "2024-03-12")  # across the switch to daylight saving time
    pages = list(massive_client().iter_pages(["MSFT", "AAPL", "MSFT"], "day", *rng))
    assert [p.bars["symbol"].unique().to_list() for p in pages] == [["AAPL"], ["MSFT"]]
    stamps = pages[0].bars["timestamp"].dt.convert_time_zone("America/New_York").to_list()
    assert [(t.hour, t.minute) for t in stamps] == [(0, 0)] * 4
    assert pages[0].bars["timestamp"].dt.hour().to_list() == [5, 5, 4, 4]  # EST, then EDT: ms -> µs exact
    assert pl.concat([p.bars for p in pages]).equals(
        pl.concat([truth(massive, s, 1, "day", rng) for s in ("AAPL", "MSFT")]))


@pytest.mark.parametrize("name,n,span", [("15min", 15, "minute"), ("2hour", 2, "hour"), ("week", 1, "week"), ("3month", 3, "month")])
def test_every_size_maps_to_a_multiplier_and_timespan(massive: FakeMassive, massive_client: Make, name: str, n: int, span: str) -> None:
    rng = days("2024-01-02", "2024-01-05") if span in ("minute", "hour") else days("2024-01-02", "2024-06-28")
    assert fetch(massive_client(), ["AAPL"], name, rng).equals(truth(massive, "AAPL", n, span, rng))
    assert f"/range/{n}/{span}/" in massive.requests[0].path


def test_both_ends_are_inclusive_to_the_millisecond(massive: FakeMassive, massive_client: Make) -> None:
    first = datetime(2024, 1, 3, 14, 30, tzinfo=timezone.utc)
    last = datetime(2024, 1, 3, 15, 0, tzinfo=timezone.utc)
    bars = fetch(massive_client(), ["AAPL"], "minute", (first, last))
    assert (bars["timestamp"][0], bars["timestamp"][-1], bars.height) == (first, last, 31)
    later = fetch(massive_client(), ["AAPL"], "minute", (first + timedelta(microseconds=1), last - timedelta(microseconds=1)))
    assert later.height == 29  # a start a microsecond after a bar's excludes it (ceil to the next millisecond)


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "504", "drop", "partial", "hang"])
def test_transient_faults_are_retried_and_lose_nothing(massive: FakeMassive, massive_client: Make, fault: str) -> None:
    rng = days("2024-01-02", "2024-01-31")
    massive.inject(fault)
    client = massive_client(timeout=0.5 if fault == "hang" else 2.0)
    assert fetch(client, ["AAPL"], "day", rng).equals(truth(massive, "AAPL", 1, "day", rng))
    assert (client.stats.requests, client.stats.retries, client.stats.throttled) == (2, 1, int(fault == "429"))


def test_a_slow_answer_is_waited_for(massive: FakeMassive, massive_client: Make) -> None:
    massive.inject("slow")
    client = massive_client()
    assert fetch(client, ["AAPL"], "day", days("2024-01-02", "2024-01-05")).height == 4
    assert (client.stats.requests, client.stats.retries) == (1, 0)


def test_a_429_storm_has_a_larger_budget_then_gives_up_as_transient(massive: FakeMassive, massive_client: Make) -> None:
    massive.inject("429", count=100)
    client = massive_client(retry=RetryPolicy(max_retries=1, base_s=0.001))  # 1 retry of a 5xx, 4 of a 429
    with pytest.raises(TransientSourceError) as caught:
        fetch(client, ["AAPL"], "day", days("2024-01-02", "2024-01-05"))
    assert caught.value.status == 429 and caught.value.retry_at is None  # no header says until when
    assert (client.stats.requests, client.stats.throttled, caught.value.retries) == (5, 5, 4)


def test_a_429_pauses_every_worker_of_the_shared_pacer(massive: FakeMassive, massive_client: Make) -> None:
    limiter = RateLimiter(5)
    massive.inject("429")
    with pytest.raises(TransientSourceError):
        fetch(massive_client(rate_limiter=limiter, retry=RetryPolicy(max_retries=0)), ["AAPL"], "day",
              days("2024-01-02", "2024-01-05"))
    permit, wait, _ = limiter.try_acquire()
    assert permit is None and wait is not None and wait > 0.5  # every worker waits: no header names the reset


def test_wrong_key_stops_at_the_first_request_with_one_line(massive: FakeMassive, massive_client: Make) -> None:
    with pytest.raises(AuthError) as caught:
        fetch(massive_client(api_key="wrong"), ["AAPL", "MSFT"], "day", days("2024-01-02", "2024-01-05"))
    message = str(caught.value)
    assert caught.value.exit_code == 3 and "\n" not in message
    assert "Unknown API Key" in message and "MASSIVE_API_KEY" in message and "wrong" not in message
    assert len(massive.requests) == 1


def test_a_range_the_plan_lacks_is_fatal_with_massives_words(massive: FakeMassive, massive_client: Make) -> None:
    massive.history_from = date(2024, 1, 1)
    with pytest.raises(FatalRunError) as caught:
        fetch(massive_client(), ["AAPL", "MSFT"], "day", days("2016-01-04", "2024-01-05"))
    assert not isinstance(caught.value, AuthError) and "HTTP 403" in str(caught.value)
    assert "plan doesn't include this data timeframe" in str(caught.value) and len(massive.requests) == 1


def test_a_fractional_volume_is_stored_rounded_to_whole_shares_and_said_once(
    massive: FakeMassive, massive_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    """Massive's volumes can be fractional in recent data (fractional-share trades; its docs say so): refusing
    them (as for Alpaca, whose volumes are whole) made such a symbol impossible to store, every run failing it
    (a user's trial). They are rounded to the nearest whole share, halves up, with one warning per symbol."""
    exact = fetch(massive_client(), ["AAPL", "MSFT"], "minute", days("2024-01-02", "2024-01-05"))
    massive.fractional = {"MSFT"}  # the first bar of each page gets half a share more
    with caplog.at_level(logging.WARNING):
        got = fetch(massive_client(), ["AAPL", "MSFT"], "minute", days("2024-01-02", "2024-01-05"))
    assert got.drop("volume").equals(exact.drop("volume")) and got.schema == exact.schema
    more = got["volume"] - exact["volume"]
    pages = len([r for r in massive.requests if "/MSFT/" in r.path]) // 2  # the second fetch's MSFT pages
    assert more.filter(got["symbol"] == "AAPL").sum() == 0 and more.filter(got["symbol"] == "MSFT").to_list().count(1) == pages >= 1
    assert more.sum() == pages  # each page's one fractional bar, 0.5 more, rounded up; every other bar as it was
    said = [r.getMessage() for r in caplog.records if "fractional volume" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("MSFT: ") and "rounded to whole shares" in said[0]


def test_a_next_url_that_loops_fails_its_symbol(massive: FakeMassive, massive_client: Make) -> None:
    massive.loop_symbol = "AAPL"
    with pytest.raises(PagingLoopError, match="repeated a next_url") as caught:
        fetch(massive_client(), ["AAPL"], "minute", LONG)
    assert caught.value.symbol == "AAPL" and len(massive.requests) == 2  # the repeat is never sent


def test_the_key_is_never_in_a_url_or_a_log_line(massive: FakeMassive, massive_client: Make, caplog: pytest.LogCaptureFixture) -> None:
    massive.api_key = "mk-SECRET-2f9a"
    massive.announce_split("AAPL", "2024-02-01", 1, 4)
    massive.inject("503", with_cursor=True)
    caplog.set_level(logging.DEBUG)
    client = massive_client(api_key="mk-SECRET-2f9a")
    fetch(client, ["AAPL"], "minute", LONG)
    client.fetch_actions(["AAPL"], date(2024, 1, 1), date(2024, 12, 31))
    assert client.stats.retries == 1 and any("GET /v2/aggs/ticker/AAPL" in r.getMessage() for r in caplog.records)
    assert any("127.0.0.1" in r.getMessage() for r in caplog.records)  # urllib3's own request lines are there too
    assert not [r for r in caplog.records if "mk-SECRET" in r.getMessage()]
    assert not [r for r in massive.requests + massive.action_requests if "SECRET" in r.query or "apiKey" in r.query]


def test_a_next_url_is_followed_on_our_host_without_an_api_key() -> None:
    assert _relative("https://api.massive.com/v2/aggs/ticker/A/range/1/day/1/2?cursor=abc") == "/v2/aggs/ticker/A/range/1/day/1/2?cursor=abc"
    assert _relative("https://elsewhere/v3/reference/splits?cursor=x&apiKey=K") == "/v3/reference/splits?cursor=x"


def test_requests_cost_ceil_bars_per_page_per_symbol_plus_actions(massive: FakeMassive, massive_client: Make) -> None:
    client = massive_client()
    bars = fetch(client, ["AAPL", "MSFT"], "minute", LONG)
    actions = client.fetch_actions(["AAPL", "MSFT"], date(2016, 1, 1), date(2026, 12, 31))
    per_symbol = bars.group_by("symbol").len()["len"].to_list()
    assert client.stats.requests == sum(math.ceil(n / 50_000) for n in per_symbol) + 2 * 2 and actions.is_empty()


def test_splits_and_dividends_become_tagged_actions(massive: FakeMassive, massive_client: Make) -> None:
    massive.announce_split("AAPL", "2020-08-31", 1, 4)
    massive.announce_split("GE", "2021-08-02", 8, 1)
    massive.announce_dividend("AAPL", "2024-02-09", 0.24, pay_date="2024-02-15")
    massive.announce_dividend("AAPL", "2023-11-10", 1.5, dividend_type="SC")
    massive.announce_dividend("AAPL", "2015-05-07", 0.47)  # before the range asked for
    actions = massive_client().fetch_actions(["GE", "AAPL"], date(2016, 1, 1), date(2026, 12, 31))
    assert dict(actions.schema) == ACTION_SCHEMA and actions["id"].str.starts_with("massive:E").all()
    rows = {(r["symbol"], r["type"], str(r["ex_date"])): r for r in actions.iter_rows(named=True)}
    assert set(rows) == {("AAPL", "forward_split", "2020-08-31"), ("GE", "reverse_split", "2021-08-02"),
                         ("AAPL", "cash_dividend", "2024-02-09"), ("AAPL", "cash_dividend", "2023-11-10")}
    split = rows["AAPL", "forward_split", "2020-08-31"]
    assert (split["old_rate"], split["new_rate"]) == (1.0, 4.0)  # 4-for-1: prices before x 1/4
    dividend = rows["AAPL", "cash_dividend", "2024-02-09"]
    assert (dividend["rate"], dividend["special"], str(dividend["payable_date"])) == (0.24, False, "2024-02-15")
    assert rows["AAPL", "cash_dividend", "2023-11-10"]["special"] is True
    assert {r.params["ticker"] for r in massive.action_requests} == {"AAPL", "GE"}


def test_corporate_action_pages_are_followed(massive: FakeMassive, massive_client: Make) -> None:
    for month in range(1, 1002):  # 1,001 monthly dividends: two pages of at most 1,000
        massive.announce_dividend("KO", date(1940 + month // 12, month % 12 + 1, 1), 0.01)
    actions = massive_client().fetch_actions(["KO"], date(1900, 1, 1), date(2099, 12, 31))
    assert actions.height == 1001 and actions["id"].is_unique().all()
    assert [set(r.params) for r in massive.action_requests][-2:] == [
        {"ticker", "ex_dividend_date.gte", "ex_dividend_date.lte", "limit", "sort", "order"}, {"cursor"}]


def test_local_split_adjustment_of_massive_bars_is_massives_adjusted_series(massive: FakeMassive, massive_client: Make) -> None:
    massive.announce_split("NVDA", "2024-01-10", 1, 4)
    rng = days("2024-01-02", "2024-01-19")
    client = massive_client()
    raw = fetch(client, ["NVDA"], "day", rng)
    factors = cumulative_factors(factor_events(client.fetch_actions(["NVDA"], date(2024, 1, 1), date(2024, 12, 31)),
                                               pl.DataFrame(), "split", source="massive"))
    local = adjust_frame(raw.lazy(), factors).collect()
    served = massive.synthetic_frame("NVDA", 1, "day", *rng, adjusted=True)  # what adjusted=true would send
    assert raw["close"][0] > 3 * raw["close"][-1]  # raw prices jump at the split
    assert local.height == served.height and local["volume"].to_list() == served["volume"].to_list()
    assert (local["close"] - served["close"]).abs().max() < 1e-3


def test_what_massive_does_not_serve_is_refused_before_any_request(massive: FakeMassive, massive_client: Make) -> None:
    client = massive_client()
    for options in ({"adjustment": "split"}, {"feed": "iex"}):
        with pytest.raises(RequestRejectedError):
            list(client.iter_pages(["AAPL"], "day", *days("2024-01-02", "2024-01-05"), **options))
    assert massive.requests == [] and fetch(client, ["AAPL"], "day", days("2024-01-02", "2024-01-05")).height == 4


def test_a_stop_interrupts_between_pages(massive: FakeMassive, massive_client: Make) -> None:
    stop = threading.Event()
    pages = massive_client(stop=stop).iter_pages(["AAPL", "MSFT"], "day", *days("2024-01-02", "2024-01-05"))
    next(pages)
    stop.set()
    with pytest.raises(Interrupted):
        next(pages)


def test_nothing_listening_is_unreachable_after_the_retries(massive_client: Make) -> None:
    client = massive_client(base_url="http://127.0.0.1:9")
    with pytest.raises(SourceUnreachableError, match=r"cannot reach http://127\.0\.0\.1:9"):
        fetch(client, ["AAPL"], "day", days("2024-01-02", "2024-01-05"))
    assert client.stats.requests == 4


def test_settings_make_clients_that_share_one_pacer_at_the_free_plans_pace(massive: FakeMassive, tmp_path: Path) -> None:
    settings = Settings.load(env={"MASSIVE_API_KEY": massive.api_key, "MASSIVE_API_URL": massive.url}, cwd=tmp_path)
    make = MassiveClient.factory(settings)
    first, second = (make(stop=threading.Event(), on_wait=None) for _ in range(2))
    assert first._limiter is second._limiter and first._limiter is not None and first._limiter.per_minute == 5
    assert fetch(first, ["AAPL"], "day", days("2024-01-02", "2024-01-05")).height == 4
    assert MassiveClient.factory(settings, requests_per_minute=6000)(stop=threading.Event(), on_wait=None)._limiter.per_minute == 6000  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="MASSIVE_API_KEY"):
        MassiveClient.factory(Settings.load(env={}, cwd=tmp_path))
    for client in (first, second):
        client.close()


def test_a_client_made_without_arguments_reads_the_settings(massive: FakeMassive, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a new user's trial: MassiveClient() was a TypeError (its key had to be passed), while
    AlpacaClient() reads the settings. It reads them too now: key, URL, and the plan's pace."""
    from dataengine.errors import ConfigError

    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="MASSIVE_API_KEY"):
        MassiveClient()
    monkeypatch.setenv("MASSIVE_API_KEY", massive.api_key)
    monkeypatch.setenv("MASSIVE_API_URL", massive.url)
    monkeypatch.setenv("DATAENGINE_MASSIVE_PLAN", "paid")
    client = MassiveClient()
    try:
        assert fetch(client, ["AAPL"], "day", days("2024-01-02", "2024-01-05")).height == 4
    finally:
        client.close()


def test_fetch_bars_gives_one_symbols_bars_as_alpacas_does(massive: FakeMassive, massive_client: Make) -> None:
    """The README's one-call API, on Massive too: New York days inclusive, every page, the symbol spelled as
    ingest spells it; anything but one symbol is refused before a request."""
    from dataengine.errors import UsageError

    client = massive_client()
    bars = client.fetch_bars("aapl", "2024-01-02", "2024-03-22", "minute")  # more than one page
    assert bars.equals(truth(massive, "AAPL", 1, "minute", LONG)) and len(massive.requests) == 2
    assert all(r.ticker == "AAPL" for r in massive.requests)
    daily = client.fetch_bars("MSFT", date(2024, 1, 2), "2024-01-03", "day")
    assert daily.equals(truth(massive, "MSFT", 1, "day", days("2024-01-02", "2024-01-03")))
    with pytest.raises(UsageError, match=r"^fetch_bars takes one symbol, not a list \['AAPL', 'MSFT'\]: .*source='massive'"):
        client.fetch_bars(["AAPL", "MSFT"], "2024-01-02", "2024-01-03", "day")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"^symbol: invalid symbol\(s\) 'AAPL,MSFT' \(one symbol a value"):
        client.fetch_bars("AAPL,MSFT", "2024-01-02", "2024-01-03", "day")
    assert len(massive.requests) == 3
