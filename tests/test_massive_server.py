"""The Massive fake speaks Massive's wire protocol: bodies shaped as Massive's, paging by base aggregates,
inclusive ends, its auth and error answers. Tested with plain requests, not with dataengine's client."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.massive_server import FakeMassive

AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMassive]:
    with FakeMassive() as fake:
        yield fake
        assert not fake.errors


def get(server: FakeMassive, path: str, **params: Any) -> requests.Response:
    return requests.get(server.url + path, params=params, headers=AUTH, timeout=10)


def test_an_aggregates_body_is_shaped_as_massives(server: FakeMassive) -> None:
    body = get(server, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-03", adjusted="false").json()
    assert list(body) == ["ticker", "queryCount", "resultsCount", "adjusted", "results", "status", "request_id", "count"]
    assert (body["ticker"], body["queryCount"], body["resultsCount"], body["count"], body["adjusted"]) == ("AAPL", 2, 2, 2, False)
    bar = body["results"][0]
    assert list(bar) == ["v", "vw", "o", "c", "h", "l", "t", "n"]
    assert isinstance(bar["v"], float) and bar["v"].is_integer() and isinstance(bar["t"], int)
    assert bar["t"] == 1704171600000  # 2024-01-02 00:00 New York, in ms


def test_no_bars_means_no_results_key_and_no_next_url(server: FakeMassive) -> None:
    body = get(server, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-06/2024-01-07", adjusted="false").json()
    assert "results" not in body and "next_url" not in body and body["resultsCount"] == 0


def test_ms_and_date_bounds_are_both_inclusive(server: FakeMassive) -> None:
    first, last = 1704292200000, 1704294000000  # 2024-01-03 14:30 and 15:00 UTC: two minute bars' starts
    bars = get(server, f"/v2/aggs/ticker/AAPL/range/1/minute/{first}/{last}", adjusted="false").json()["results"]
    assert (bars[0]["t"], bars[-1]["t"], len(bars)) == (first, last, 31)
    day = get(server, "/v2/aggs/ticker/AAPL/range/1/minute/2024-01-03/2024-01-03", adjusted="false").json()
    assert day["resultsCount"] == 960 and day["results"][-1]["t"] == 1704329940000  # 19:59 New York, the last bar


def test_limit_counts_base_aggregates_and_next_url_continues_at_the_next_bar(server: FakeMassive) -> None:
    body = get(server, "/v2/aggs/ticker/AAPL/range/5/minute/2024-01-02/2024-01-03", adjusted="false", limit=600).json()
    assert (body["queryCount"], body["resultsCount"]) == (600, 120)  # 600 minutes make 120 five-minute bars
    path, _, query = body["next_url"][len(server.url):].partition("?cursor=")
    assert path.endswith(f"/range/5/minute/{body['results'][-1]['t'] + 300_000}/2024-01-03")
    assert base64.urlsafe_b64decode(query + "==").decode() == "adjusted=false&limit=600&sort=asc"
    rest = requests.get(body["next_url"], headers=AUTH, timeout=10).json()
    assert rest["results"][0]["t"] == body["results"][-1]["t"] + 300_000


def test_bars_are_split_adjusted_unless_asked_otherwise(server: FakeMassive) -> None:
    path = "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-02"
    default, raw = get(server, path).json(), get(server, path, adjusted="false").json()
    assert default["adjusted"] is True and default["results"][0]["c"] != raw["results"][0]["c"]


def test_keys_are_checked_and_refusals_carry_massives_bodies(server: FakeMassive) -> None:
    path = server.url + "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-02"
    missing = requests.get(path, timeout=10)
    wrong = requests.get(path, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert (missing.status_code, missing.json()["error"]) == (401, "API Key was not provided")
    assert (wrong.status_code, wrong.json()["status"], wrong.json()["error"]) == (401, "ERROR", "Unknown API Key")
    assert requests.get(path, params={"apiKey": "test-key"}, timeout=10).status_code == 200
    server.inject("429")
    throttled = get(server, "/v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-02")
    assert throttled.status_code == 429 and "maximum requests per minute" in throttled.json()["error"]
    assert not [h for h in throttled.headers if h.lower().startswith("x-ratelimit")]


def test_reference_endpoints_page_with_a_cursor(server: FakeMassive) -> None:
    server.announce_split("SHOP", "2022-06-29", 1, 10)
    server.announce_dividend("SHOP", "2023-03-01", 0.1)
    server.announce_dividend("SHOP", "2024-03-01", 0.2)
    splits = get(server, "/v3/reference/splits", ticker="SHOP").json()
    assert list(splits["results"][0]) == ["execution_date", "id", "split_from", "split_to", "ticker"]
    first = get(server, "/v3/reference/dividends", ticker="SHOP", limit=1, **{"ex_dividend_date.gte": "2023-01-01"}).json()
    second = requests.get(first["next_url"], headers=AUTH, timeout=10).json()
    assert [first["results"][0]["cash_amount"], second["results"][0]["cash_amount"]] == [0.1, 0.2]
    assert "next_url" not in second and second["results"][0]["id"].startswith("E")
