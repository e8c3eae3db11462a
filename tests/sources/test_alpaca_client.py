"""AlpacaClient's one-call API, fetch_bars, against the local Alpaca-compatible server: the symbol it is given
goes out as ingest and read_bars spell it, and anything but one symbol is refused before a request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dataengine.errors import UsageError
from dataengine.sources.alpaca_client import AlpacaClient


@pytest.fixture
def client(alpaca) -> Iterator[AlpacaClient]:  # type: ignore[no-untyped-def]
    made = AlpacaClient()  # keys and URL from the environment the alpaca fixture sets
    yield made
    made.close()


@pytest.mark.parametrize(("given", "sent"), [("aapl", "AAPL"), (" msft ", "MSFT"), ("brk-b", "BRK.B")])
def test_the_symbol_is_spelled_as_ingest_spells_it(alpaca, client: AlpacaClient, given: str, sent: str) -> None:  # type: ignore[no-untyped-def]
    # "aapl" went out as it was and Alpaca answered 400 "invalid symbol: aapl"
    bars = client.fetch_bars(given, "2024-01-02", "2024-01-03", "day")
    assert [r.symbols for r in alpaca.requests] == [(sent,)]
    assert bars["symbol"].unique().to_list() == [sent] and bars.height == 2


@pytest.mark.parametrize(("given", "message"), [
    (["AAPL", "MSFT"], r"^fetch_bars takes one symbol, not a list \['AAPL', 'MSFT'\]: .*ingest_symbols"),
    (("AAPL",), r"^fetch_bars takes one symbol, not a tuple \('AAPL',\)"),
    ("AAPL,MSFT", r"^symbol: invalid symbol\(s\) 'AAPL,MSFT' \(one symbol a value: give several as separate arguments"),
    ("../x", r"^symbol: invalid symbol\(s\) '\.\./x' \(a share class is one '\.', '-' or '/' between letters or digits"),
])
def test_anything_but_one_symbol_is_refused_before_a_request(alpaca, client: AlpacaClient, given: object, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=message):
        client.fetch_bars(given, "2024-01-02", "2024-01-03", "day")  # type: ignore[arg-type]
    assert alpaca.requests == []
