"""Tests of the fake Alpaca market-data server (tests/alpaca_server.py) against alpaca-py and plain requests."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests
from alpaca.common.enums import Sort, SupportedCurrencies
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from tests.alpaca_server import (
    FakeAlpaca,
    Universe,
    decode_page_token,
    parse_time,
    synthetic_bars,
    synthetic_frame,
)

UTC = timezone.utc
AUTH = {"APCA-API-KEY-ID": "test-key", "APCA-API-SECRET-KEY": "test-secret"}
UNIVERSE = Universe(
    thin={"THIN"},
    no_data={"NODATA"},
    listings={"NEWCO": ("2024-03-06", "2024-03-07")},
    holes={"HOLEY": ["2024-03-06"]},
)
# 2024-03-05 (EST): the session window is 09:00Z .. 00:59Z next day; 09:00Z..23:59Z holds 900 minute bars
DAY_START, DAY_END = "2024-03-05T09:00:00Z", "2024-03-05T23:59:00Z"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def srv():
    with FakeAlpaca(universe=UNIVERSE) as s:
        yield s
    assert s.errors == []


@pytest.fixture
def client(srv):
    c = StockHistoricalDataClient("test-key", "test-secret", raw_data=True, url_override=srv.url)
    yield c
    c._session.close()


def get(server: FakeAlpaca, path: str = "/v2/stocks/bars", headers=AUTH, timeout: float = 10, **params):
    return requests.get(server.url + path, params=params, headers=headers, timeout=timeout)


def bars_req(**kw):
    q = {"symbols": "AAPL", "timeframe": "1Min", "start": DAY_START, "end": DAY_END, "feed": "sip"}
    q.update(kw)
    return q


# ------------------------------------------------------------------------------------------------ alpaca-py


def test_alpaca_py_multi_page_matches_ground_truth(srv, client):
    start, end = utc(2024, 3, 4), utc(2024, 3, 9)
    syms = ["MSFT", "AAPL", "THIN", "NODATA", "ZZZ"]
    got = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols=syms, timeframe=TimeFrame.Minute, start=start, end=end, feed=DataFeed.SIP)
    )
    assert set(got) == {"AAPL", "MSFT", "THIN", "ZZZ"}  # no-data symbol is absent
    for sym in got:
        assert got[sym] == srv.synthetic_bars(sym, "1Min", start, end)
    log = srv.requests
    assert [r.status for r in log] == [200, 200]
    assert log[0].page_token is None and log[1].page_token == log[0].next_page_token
    assert log[0].bars == 10_000 and log[1].next_page_token is None
    # page 1 ended inside THIN, after finishing AAPL and MSFT; page 2 finished THIN and did ZZZ
    assert decode_page_token(log[0].next_page_token)[0] == "THIN"
    assert {k: v for k, v in log[0].params.items()} == {k: v for k, v in log[1].params.items() if k != "page_token"}
    assert log[0].params["start"] == "2024-03-04T00:00:00+00:00"  # what alpaca-py sends


def test_alpaca_py_every_request_field_is_accepted(srv, client):
    req = StockBarsRequest(
        symbol_or_symbols="AAPL",
        timeframe=TimeFrame(5, TimeFrameUnit.Minute),
        start=utc(2024, 3, 5),
        end=utc(2024, 3, 6),
        limit=5,
        adjustment=Adjustment.SPLIT,
        feed=DataFeed.IEX,
        asof="2024-03-05",
        currency=SupportedCurrencies.USD,
        sort=Sort.DESC,
    )
    sent = req.to_request_fields()
    assert set(sent) == {"symbols", "timeframe", "start", "end", "limit", "adjustment", "feed", "asof", "currency", "sort"}
    got = client.get_stock_bars(req)
    expected = srv.synthetic_bars("AAPL", "5Min", utc(2024, 3, 5), utc(2024, 3, 6), feed="iex", adjustment="split")
    assert got["AAPL"] == expected[::-1][:5]


def test_alpaca_py_barset_and_api_error(srv):
    c = StockHistoricalDataClient("test-key", "test-secret", url_override=srv.url)
    try:
        bs = c.get_stock_bars(
            StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=utc(2024, 3, 4), end=utc(2024, 3, 8))
        )
        assert [b.timestamp for b in bs["AAPL"]][0] == utc(2024, 3, 4, 5)
        assert isinstance(bs["AAPL"][0].volume, float)  # alpaca-py models volume as float
        srv.inject("500")
        with pytest.raises(APIError) as ei:
            c.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=utc(2024, 3, 4)))
        assert ei.value.status_code == 500 and str(ei.value) == "internal server error"
        # alpaca-py retries 504 (and 429) itself; make its fixed 3 s sleep zero
        c._retry_wait = 0
        srv.inject("504")
        srv.reset_log()
        c.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=utc(2024, 3, 4), end=utc(2024, 3, 8)))
        assert [r.status for r in srv.requests] == [504, 200]
    finally:
        c._session.close()


# ------------------------------------------------------------------------------------------------ paging


def test_page_tokens_and_limit_across_symbols(srv):
    pages, token = [], None
    while True:
        q = bars_req(symbols="MSFT,AAPL", limit=700)
        if token:
            q["page_token"] = token
        body = get(srv, **q).json()
        pages.append(body)
        token = body["next_page_token"]
        if token is None:
            break
    assert [{s: len(b) for s, b in p["bars"].items()} for p in pages] == [
        {"AAPL": 700},
        {"AAPL": 200, "MSFT": 500},
        {"MSFT": 400},
    ]
    assert list(pages[1]["bars"]) == ["AAPL", "MSFT"]
    raw = base64.b64decode(pages[0]["next_page_token"]).decode()
    assert raw == "AAPL|M|2024-03-05T20:39:00.000000000Z"
    for sym in ("AAPL", "MSFT"):
        joined = [b for p in pages for b in p["bars"].get(sym, [])]
        assert joined == synthetic_bars(sym, "1Min", DAY_START, DAY_END)


def test_page_token_with_changed_params_is_rejected(srv):
    first = get(srv, **bars_req(limit=100)).json()
    r = get(srv, **bars_req(limit=100, end="2024-03-05T22:00:00Z", page_token=first["next_page_token"]))
    assert r.status_code == 400
    assert get(srv, **bars_req(limit=50, page_token=first["next_page_token"])).status_code == 200  # limit may change
    assert get(srv, **bars_req(page_token="not-a-token")).status_code == 400


def test_empty_last_page():
    with FakeAlpaca(empty_last_page=True) as s:
        p1 = get(s, **bars_req(limit=900)).json()
        assert len(p1["bars"]["AAPL"]) == 900 and p1["next_page_token"]
        p2 = get(s, **bars_req(limit=900, page_token=p1["next_page_token"])).json()
        assert p2 == {"bars": {}, "next_page_token": None}
    with FakeAlpaca() as s:
        assert get(s, **bars_req(limit=900)).json()["next_page_token"] is None


def test_single_symbol_endpoint(srv):
    q = bars_req(limit=500)
    del q["symbols"]
    p1 = get(srv, "/v2/stocks/AAPL/bars", **q).json()
    assert p1["symbol"] == "AAPL" and len(p1["bars"]) == 500 and p1["next_page_token"]
    p2 = get(srv, "/v2/stocks/AAPL/bars", **q, page_token=p1["next_page_token"]).json()
    assert p1["bars"] + p2["bars"] == synthetic_bars("AAPL", "1Min", DAY_START, DAY_END)
    assert p2["next_page_token"] is None
    assert get(srv, "/v2/stocks/NODATA/bars", **q).json() == {"bars": [], "symbol": "NODATA", "next_page_token": None}
    r = get(srv, "/v2/stocks/AAPL/bars", **bars_req())
    assert r.status_code == 400 and r.json()["message"] == "unexpected query parameter(s): symbols"


def test_default_limit_and_dot_symbols(srv):
    body = get(srv, **bars_req(symbols="BRK.B")).json()
    assert len(body["bars"]["BRK.B"]) == 900 and body["next_page_token"] is None
    body = get(srv, **bars_req(symbols="BRK.B", end="2024-03-07T00:00:00Z")).json()
    assert len(body["bars"]["BRK.B"]) == 1000 and body["next_page_token"]  # default limit 1000


@pytest.mark.parametrize("sort", ["asc", "desc"])
@pytest.mark.parametrize(
    ("tf", "start", "end"),
    [
        ("7Min", "2024-03-05T20:00:00Z", "2024-03-07T12:00:00Z"),
        ("1Day", "2024-01-01", "2024-06-01"),
        ("1Week", "2023-06-01", "2024-06-01"),
    ],
)
def test_small_pages_match_ground_truth(srv, tf, start, end, sort):
    syms = ["AAPL", "HOLEY", "NEWCO", "NODATA", "THIN"]
    got: dict[str, list] = {}
    token = None
    while True:
        q = bars_req(symbols=",".join(syms), timeframe=tf, start=start, end=end, limit=37, sort=sort)
        if token:
            q["page_token"] = token
        body = get(srv, **q).json()
        assert sum(map(len, body["bars"].values())) <= 37
        for sym, bars in body["bars"].items():
            got.setdefault(sym, []).extend(bars)
        token = body["next_page_token"]
        if token is None:
            break
    for sym in syms:
        expected = srv.synthetic_bars(sym, tf, start, end)
        assert got.get(sym, []) == (expected if sort == "asc" else expected[::-1])
    assert "NODATA" not in got


def test_token_survives_server_restart_and_prewarm():
    with FakeAlpaca() as s1:
        assert s1.prewarm(["AAPL"], "1Min", DAY_START, DAY_END) == 900
        p1 = get(s1, **bars_req(limit=600)).json()
    with FakeAlpaca() as s2:  # tokens are stateless, like Alpaca's: a persisted token resumes elsewhere
        p2 = get(s2, **bars_req(limit=600, page_token=p1["next_page_token"])).json()
    assert p1["bars"]["AAPL"] + p2["bars"]["AAPL"] == synthetic_bars("AAPL", "1Min", DAY_START, DAY_END)


# ------------------------------------------------------------------------------------------------ errors


def test_auth_failures(srv):
    r = get(srv, headers={"APCA-API-KEY-ID": "test-key", "APCA-API-SECRET-KEY": "wrong"}, **bars_req())
    assert r.status_code == 401 and r.json() == {"message": "unauthorized"}
    assert get(srv, headers={}, **bars_req()).status_code == 401
    with FakeAlpaca(auth_status=403) as s:
        assert get(s, headers={}, **bars_req()).status_code == 403


def test_invalid_and_unknown_symbols():
    with FakeAlpaca(invalid_symbols={"DELIST"}, no_data={"GHOST"}) as s:
        r = get(s, **bars_req(symbols="AAPL,BAD$,TAOP:NASDAQ"))
        assert r.status_code == 400 and r.json() == {"code": 40010001, "message": "invalid symbol: BAD$"}
        assert get(s, **bars_req(symbols="AAPL,DELIST")).json()["message"] == "invalid symbol: DELIST"
        assert get(s, **bars_req(symbols="aapl")).status_code == 400
        body = get(s, **bars_req(symbols="AAPL,GHOST", limit=5)).json()
        assert list(body["bars"]) == ["AAPL"]


def test_parameter_validation(srv):
    r = get(srv, **bars_req(foo="1"))
    assert r.status_code == 400 and r.json() == {"message": "unexpected query parameter(s): foo"}
    assert get(srv, **bars_req(limit=10001)).status_code == 422
    assert get(srv, **bars_req(limit=0)).status_code == 422
    r = get(srv, **bars_req(timeframe="2Day"))
    assert r.status_code == 422 and r.json() == {"code": 42210000, "message": "invalid timeframe"}
    r = get(srv, **bars_req(start=DAY_END, end=DAY_START))
    assert r.status_code == 400 and r.json()["message"] == "end should not be before start"
    assert get(srv, **bars_req(start="2024-13-01")).status_code == 400
    assert get(srv, **bars_req(start="2024-03-05 09:00:00")).status_code == 400
    assert get(srv, **bars_req(feed="delayed_sip")).status_code == 400
    assert get(srv, **bars_req(adjustment="spin-off,split", sort="desc", asof="-", currency="USD")).status_code == 200


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-03-05T09:00:00+00:00", "2024-03-05T09:04:00+00:00"),
        ("2024-03-05T04:00:00-05:00", "2024-03-05T04:04:59.999999999-05:00"),
        ("2024-03-05T08:59:59.5Z", "2024-03-05T09:04:00Z"),
    ],
)
def test_time_formats(srv, start, end):
    body = get(srv, **bars_req(start=start, end=end)).json()
    assert [b["t"] for b in body["bars"]["AAPL"]] == [f"2024-03-05T09:0{i}:00Z" for i in range(5)]


def test_date_only_means_midnight_utc(srv):
    body = get(srv, **bars_req(timeframe="1Day", start="2024-03-04", end="2024-03-06")).json()
    assert [b["t"] for b in body["bars"]["AAPL"]] == ["2024-03-04T05:00:00Z", "2024-03-05T05:00:00Z"]
    assert parse_time("2024-03-04") == parse_time("2024-03-04T00:00:00Z")


# ------------------------------------------------------------------------------------------------ rate limit


def test_rate_limit_headers_and_429():
    with FakeAlpaca(rate_limit=3) as s:
        now = time.time()
        r1 = get(s, **bars_req(limit=1))
        r2 = get(s, headers={}, **bars_req(limit=1))  # rejected requests count too
        r3 = get(s, **bars_req(limit=1))
        r4 = get(s, **bars_req(limit=1))
        assert [r.status_code for r in (r1, r2, r3, r4)] == [200, 401, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in (r1, r2, r3, r4)] == ["2", "1", "0", "0"]
        assert all(r.headers["X-RateLimit-Limit"] == "3" for r in (r1, r2, r3, r4))
        assert now + 59 <= int(r4.headers["X-RateLimit-Reset"]) <= now + 62
        assert r4.json() == {"message": "rate limit exceeded"}
    # a 2 s window: the second request is refused however long a loaded machine holds the test between the two
    # (a 0.3 s window gave it 0.3 s)
    with FakeAlpaca(rate_limit=1, rate_window_s=2.0) as s:
        assert get(s, **bars_req(limit=1)).status_code == 200
        assert get(s, **bars_req(limit=1)).status_code == 429
        time.sleep(2.05)
        assert get(s, **bars_req(limit=1)).status_code == 200


def test_unlimited_server_reports_10000(srv):
    r = get(srv, **bars_req(limit=1))
    assert r.headers["X-RateLimit-Limit"] == "10000" and r.headers["X-RateLimit-Remaining"] == "9999"


# ------------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_http_error_faults(srv, code):
    srv.inject(str(code))
    r = get(srv, **bars_req(limit=1))
    assert r.status_code == code and r.headers["Content-Type"].startswith("text/plain")
    if code == 500:
        assert r.text == "internal server error"
    assert get(srv, **bars_req(limit=1)).status_code == 200


def test_429_fault(srv):
    srv.inject("429")
    r = get(srv, **bars_req(limit=1))
    assert r.status_code == 429 and r.headers["X-RateLimit-Remaining"] == "0"
    assert r.json() == {"message": "rate limit exceeded"}


def test_drop_fault(srv):
    srv.inject("drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        get(srv, **bars_req(limit=1))
    assert srv.requests[-1].status == 0 and srv.requests[-1].fault == "drop"
    assert get(srv, **bars_req(limit=1)).status_code == 200


def test_partial_fault(srv):
    srv.inject("partial")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # IncompleteRead, not a ConnectionError
        get(srv, **bars_req(limit=100))
    assert get(srv, **bars_req(limit=1)).status_code == 200


def test_hang_fault_times_out_and_stop_is_prompt():
    s = FakeAlpaca(hang_s=30).start()
    s.inject("hang", count=2)
    with pytest.raises(requests.exceptions.Timeout):
        get(s, timeout=0.2, **bars_req(limit=1))
    errors = []

    def hung_client():
        try:
            get(s, timeout=10, **bars_req(limit=1))
        except requests.RequestException as e:
            errors.append(e)

    t = threading.Thread(target=hung_client)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 1.0
    t.join(5)
    assert not t.is_alive() and isinstance(errors[0], requests.exceptions.ConnectionError)


def test_fault_count_symbol_and_order(srv):
    srv.inject("503", count=2, symbol="MSFT")
    assert get(srv, **bars_req(limit=1)).status_code == 200
    assert get(srv, **bars_req(symbols="MSFT", limit=1)).status_code == 503
    assert get(srv, **bars_req(symbols="AAPL,MSFT", limit=1)).status_code == 503
    assert get(srv, **bars_req(symbols="MSFT", limit=1)).status_code == 200
    srv.inject("500")
    srv.inject("502")
    assert [get(srv, **bars_req(limit=1)).status_code for _ in range(3)] == [500, 502, 200]
    assert srv.pending_faults == []
    with pytest.raises(ValueError):
        srv.inject("418")


def test_latency_overlaps_across_clients():
    # four answers of 1.5 s each: together well under the 6 s one after another would take, with 3 s to spare
    # for a loaded machine (at 0.3 s each the bound left it 0.6 s)
    with FakeAlpaca(latency_s=1.5) as s:
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as ex:
            codes = list(ex.map(lambda _: get(s, **bars_req(limit=1)).status_code, range(4)))
        assert codes == [200] * 4 and time.monotonic() - t0 < 4.5


def test_slow_after_answers_the_first_requests_as_set_and_the_later_ones_slowly():
    with FakeAlpaca() as s:
        s.slow_after(2, 60)
        assert [get(s, **bars_req(limit=1)).status_code for _ in range(2)] == [200, 200] and s.slowed == 0
        with pytest.raises(requests.Timeout):  # the third is held (and dropped at stop())
            get(s, timeout=1, **bars_req(limit=1))
        assert s.slowed == 1 and len(s.requests) == 2  # under way, not yet logged


def test_free_plan_recent_sip_is_forbidden():
    now = datetime.now(UTC).replace(microsecond=0)
    recent = {"start": (now - timedelta(hours=2)).isoformat(), "end": (now - timedelta(minutes=1)).isoformat()}
    with FakeAlpaca(free_plan=True) as s:
        r = get(s, **bars_req(limit=1, **recent))
        assert r.status_code == 403
        assert r.json() == {"message": "subscription does not permit querying recent SIP data"}
        assert get(s, **bars_req(limit=1, **recent, feed="iex")).status_code == 200
        old = {"start": (now - timedelta(days=3)).isoformat(), "end": (now - timedelta(minutes=20)).isoformat()}
        assert get(s, **bars_req(limit=1, **old)).status_code == 200


def test_request_log(srv):
    get(srv, **bars_req(symbols="MSFT,AAPL", limit=3))
    (rec,) = srv.requests
    assert rec.path == "/v2/stocks/bars" and rec.status == 200 and rec.bars == 3
    assert rec.params["limit"] == "3" and rec.symbols == ("MSFT", "AAPL") and rec.next_page_token
    srv.reset_log()
    assert srv.requests == []


# ------------------------------------------------------------------------------------------------ data model


def test_daily_stamps_follow_new_york_midnight():
    ts = [b["t"] for b in synthetic_bars("AAPL", "1Day", utc(2024, 3, 7), utc(2024, 3, 13))]
    assert ts == ["2024-03-07T05:00:00Z", "2024-03-08T05:00:00Z", "2024-03-11T04:00:00Z", "2024-03-12T04:00:00Z"]


def test_holidays_absent():
    days = [b["t"][:10] for b in synthetic_bars("AAPL", "1Day", utc(2024, 7, 1), utc(2024, 7, 9))]
    assert days == ["2024-07-01", "2024-07-02", "2024-07-03", "2024-07-05", "2024-07-08"]
    assert synthetic_bars("AAPL", "1Min", utc(2024, 7, 3, 21), utc(2024, 7, 5, 7, 59)) == []


def test_early_close_has_780_minute_bars(srv):
    q = bars_req(start="2024-11-29T05:00:00Z", end="2024-11-30T04:59:59Z", limit=10000)
    bars = get(srv, **q).json()["bars"]["AAPL"]
    assert len(bars) == 780 and bars[0]["t"] == "2024-11-29T09:00:00Z" and bars[-1]["t"] == "2024-11-29T21:59:00Z"
    full = synthetic_bars("AAPL", "1Min", "2024-11-27T05:00:00Z", "2024-11-28T04:59:59Z")
    assert len(full) == 960 and full[-1]["t"] == "2024-11-28T00:59:00Z"


def test_week_month_hour_alignment():
    weeks = [b["t"] for b in synthetic_bars("AAPL", "1Week", utc(2024, 1, 8), utc(2024, 1, 22, 5))]
    assert weeks == ["2024-01-08T05:00:00Z", "2024-01-16T05:00:00Z", "2024-01-22T05:00:00Z"]  # MLK Monday
    months = [b["t"] for b in synthetic_bars("AAPL", "1Month", utc(2024, 1, 1), utc(2024, 9, 30))]
    assert months[0] == "2024-01-02T05:00:00Z" and months[-1] == "2024-09-03T04:00:00Z"  # Labor Day
    hours = [b["t"] for b in synthetic_bars("AAPL", "1Hour", utc(2024, 3, 5, 1), utc(2024, 3, 6, 4))]
    assert hours == [f"2024-03-05T{h:02d}:00:00Z" for h in range(9, 24)] + ["2024-03-06T00:00:00Z"]


def test_aggregates_are_consistent_with_minutes():
    minutes = synthetic_bars("AAPL", "1Min", "2024-03-05T14:30:00Z", "2024-03-05T14:34:00Z")
    (five,) = synthetic_bars("AAPL", "5Min", "2024-03-05T14:30:00Z", "2024-03-05T14:30:00Z")
    assert five["o"] == minutes[0]["o"] and five["c"] == minutes[-1]["c"]
    assert five["h"] == max(b["h"] for b in minutes) and five["l"] == min(b["l"] for b in minutes)
    assert five["v"] == sum(b["v"] for b in minutes) and five["n"] == sum(b["n"] for b in minutes)


def test_values_invariants_feed_and_adjustment():
    bars = synthetic_bars("XYZ", "1Min", utc(2024, 3, 4), utc(2024, 3, 9)) + synthetic_bars("AAPL", "1Day", utc(2020, 1, 1), utc(2024, 12, 31))
    for b in bars:
        assert 0 < b["l"] <= min(b["o"], b["c"]) <= max(b["o"], b["c"]) <= b["h"] and b["l"] <= b["vw"] <= b["h"]
        assert isinstance(b["v"], int) and isinstance(b["n"], int) and b["v"] >= 1 and b["n"] >= 1
    sip = synthetic_bars("AAPL", "1Day", utc(2024, 3, 4), utc(2024, 3, 8))
    iex = synthetic_bars("AAPL", "1Day", utc(2024, 3, 4), utc(2024, 3, 8), feed="iex")
    split = synthetic_bars("AAPL", "1Day", utc(2024, 3, 4), utc(2024, 3, 8), adjustment="split")
    assert [b["o"] for b in iex] == [b["o"] for b in sip] and all(i["v"] < s["v"] / 10 for i, s in zip(iex, sip))
    assert all(abs(a["c"] - s["c"] / 2) < 1e-3 for a, s in zip(split, sip))
    assert synthetic_bars("MSFT", "1Day", utc(2024, 3, 4), utc(2024, 3, 8)) != sip


def test_frame_matches_bars():
    import polars as pl

    start, end = utc(2024, 3, 5), utc(2024, 3, 6, 12)
    f = synthetic_frame("AAPL", "1Min", start, end)
    assert f.schema == pl.Schema(
        {
            "timestamp": pl.Datetime("us", "UTC"),
            "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
            "volume": pl.Int64, "trade_count": pl.Int64, "vwap": pl.Float64,
        }
    )
    bars = synthetic_bars("AAPL", "1Min", start, end)
    rows = [
        (datetime.fromisoformat(b["t"].replace("Z", "+00:00")), b["o"], b["h"], b["l"], b["c"], b["v"], b["n"], b["vw"])
        for b in bars
    ]
    assert f.rows() == rows


def test_thin_no_data_holes_listing(srv):
    day = ("2024-03-05T09:00:00Z", "2024-03-06T00:59:00Z")
    full = srv.synthetic_bars("AAPL", "1Min", *day)
    thin = srv.synthetic_bars("THIN", "1Min", *day)
    assert len(full) == 960 and 400 < len(thin) < 560
    assert {b["t"] for b in thin} < {b["t"] for b in full}
    assert len(srv.synthetic_bars("THIN", "1Day", utc(2024, 3, 4), utc(2024, 3, 9))) == 5
    assert srv.synthetic_bars("NODATA", "1Day", utc(2024, 3, 4), utc(2024, 3, 8)) == []
    days = lambda s: [b["t"][:10] for b in srv.synthetic_bars(s, "1Day", utc(2024, 3, 1), utc(2024, 3, 9))]  # noqa: E731
    assert days("HOLEY") == ["2024-03-01", "2024-03-04", "2024-03-05", "2024-03-07", "2024-03-08"]
    assert days("NEWCO") == ["2024-03-06", "2024-03-07"]
    assert srv.synthetic_bars("HOLEY", "1Min", "2024-03-06T09:00:00Z", "2024-03-07T00:59:00Z") == []
    # the server serves the same thing
    body = get(srv, **bars_req(symbols="HOLEY,NEWCO,NODATA,THIN", timeframe="1Day", start="2024-03-01", end="2024-03-09")).json()
    assert set(body["bars"]) == {"HOLEY", "NEWCO", "THIN"}
    assert body["bars"]["NEWCO"] == srv.synthetic_bars("NEWCO", "1Day", utc(2024, 3, 1), utc(2024, 3, 9))
    # the module-level ground truth without the universe does not know about the config
    assert len(synthetic_bars("NEWCO", "1Day", utc(2024, 3, 1), utc(2024, 3, 9))) == 6


def test_realistic_density_thins_extended_hours_more_than_regular_ones() -> None:
    from tests.alpaca_server import DENSITY_TIERS, FakeAlpaca, Universe, realistic_density

    symbols = [f"S{i:03d}" for i in range(200)]
    density = realistic_density(symbols)
    assert density == realistic_density(symbols) and set(density.values()) == {(r, e) for _, r, e in DENSITY_TIERS}
    fake = FakeAlpaca(universe=Universe(density=density))
    day = ("2024-03-05T09:00:00Z", "2024-03-06T00:59:00Z")  # one session, 04:00-20:00 New York
    bars = {s: fake.synthetic_bars(s, "1Min", *day) for s in symbols[:40]}
    full = FakeAlpaca().synthetic_bars("S000", "1Min", *day)
    for s, got in bars.items():
        regular, extended = density[s]
        inside = sum(1 for b in got if "14:30:00Z" <= b["t"][11:] < "21:00:00Z")  # 09:30-16:00 New York
        assert abs(inside - regular * 390) <= 40 and abs(len(got) - inside - extended * 570) <= 60
        assert {b["t"] for b in got} <= {b["t"] for b in full}  # only minutes left out, none moved
    mean = sum(len(b) for b in bars.values()) / len(bars)
    assert 450 < mean < 800  # a realistic mix: far fewer than 960 a session
