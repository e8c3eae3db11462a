"""The query parameters of a bar request are exactly alpaca-py's: ``StockBarsRequest(...).to_request_fields()``
for the same request, with the timeframe and adjustment as Alpaca spells them (alpaca-py's enums lack some).
AlpacaClient builds them without importing alpaca-py; this test is what keeps the two the same."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import StockBarsRequest

from dataengine.datasets import parse_adjustment, parse_feed, wire_feed
from dataengine.sources.alpaca_client import AlpacaClient
from dataengine.sources.source import PAGE_BARS
from dataengine.timeframes import parse_timeframe

UTC = timezone.utc
NEW_YORK = timezone(timedelta(hours=-5))


def alpaca_py_params(symbols, timeframe, start, end, *, feed="sip", adjustment="raw", asof=None):  # type: ignore[no-untyped-def]
    tf = parse_timeframe(timeframe)
    request = StockBarsRequest(
        symbol_or_symbols=list(symbols), timeframe=tf.to_alpaca(), start=start, end=end, limit=PAGE_BARS,
        feed=DataFeed(wire_feed(parse_feed(feed))), adjustment=Adjustment.RAW, asof=asof,
    )
    params = {k: str(getattr(v, "value", v)) for k, v in request.to_request_fields().items()}
    params["timeframe"], params["adjustment"] = tf.wire, parse_adjustment(adjustment)
    return params


@pytest.mark.parametrize("symbols,timeframe,start,end,options", [
    (["AAPL"], "minute", datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 1, 3, 4, 59, 59, 999999, tzinfo=UTC), {}),
    (["AAPL", "BRK.B", "MSFT"], "day", datetime(2016, 1, 1, 5, tzinfo=UTC), datetime(2024, 12, 31, 5, tzinfo=UTC),
     {"feed": "iex", "adjustment": "all", "asof": "2024-06-10"}),
    (["META"], "10min", datetime(2022, 6, 1, 4, tzinfo=UTC), datetime(2022, 6, 30, tzinfo=UTC), {"asof": "-"}),
    (["GE"], "4month", datetime(2020, 1, 1), datetime(2024, 1, 1), {"adjustment": "split,spin-off", "feed": "boats"}),
    (["X"], "2hour", datetime(2024, 3, 10, 1, tzinfo=NEW_YORK), datetime(2024, 3, 11, tzinfo=NEW_YORK), {"feed": "delayed_sip"}),
])
def test_the_query_is_exactly_what_alpaca_py_would_send(symbols, timeframe, start, end, options) -> None:  # type: ignore[no-untyped-def]
    assert AlpacaClient.build_params(symbols, timeframe, start, end, **options) == alpaca_py_params(
        symbols, timeframe, start, end, **options
    )


def test_a_run_never_imports_alpaca_py(alpaca) -> None:  # type: ignore[no-untyped-def]
    """In a fresh process: the whole run (corporate actions, bars, writes) without alpaca-py or pandas."""
    import subprocess
    import sys

    code = (
        "import sys; from dataengine import IngestionPipeline; "
        "r = IngestionPipeline(max_workers=4).ingest_symbols(['AAPL', 'MSFT'], '2024-01-02', '2024-{}', 'minute'); "
        "assert r.ok, r.failed; "
        "print(sorted({{m.split('.')[0] for m in sys.modules}} & {{'alpaca', 'pandas', 'pydantic'}}))"
    )
    # the first run on a machine too: the XNYS sessions ship in the package (no exchange_calendars, no pandas)
    for end in ("01-31", "02-29"):
        out = subprocess.run([sys.executable, "-c", code.format(end)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[]"
