"""The BarSource contract, checked the same way over every source (Alpaca and Massive against their local
look-alike servers, the sample with no server at all): pages sorted by symbol then time, the stored schema
exactly, both ends inclusive, requests and bars counted, no more requests than the source's declared page size
allows, corporate actions in the one table."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from dataengine.actions.schema import ACTION_SCHEMA
from dataengine.sources.alpaca_client import AlpacaClient
from dataengine.sources.http import RetryPolicy
from dataengine.sources.massive_client import TIMESPANS, MassiveClient
from dataengine.sources.source import SOURCES, BarSource, SourceInfo
from dataengine.storage.layout import BAR_SCHEMA
from dataengine.timeframes import parse_timeframe

UTC = timezone.utc
NY = ZoneInfo("America/New_York")
RETRY = RetryPolicy(max_retries=3, base_s=0.01)


@dataclass
class Source:
    """One source and its server, behind the few verbs a contract check needs."""

    client: BarSource
    info: SourceInfo
    truth: Callable[[str, str, datetime, datetime], pl.DataFrame]  # symbol, timeframe, start, end
    inject_503: Callable[[], None] | None  # None: no network to fail
    announce_split: Callable[[str, str, int, int], Any] | None  # symbol, ex-date, shares before, shares after
    server_requests: Callable[[], int]


def _alpaca() -> Iterator[Source]:
    from tests.alpaca_server import FakeAlpaca

    with FakeAlpaca() as server:
        client = AlpacaClient("test-key", "test-secret", base_url=server.url, retry=RETRY, timeout=2)
        yield Source(
            client, SOURCES["alpaca"],
            lambda s, tf, a, b: server.synthetic_frame(s, parse_timeframe(tf).wire, a, b),
            lambda: server.inject("503"),
            lambda s, ex, old, new: server.announce(
                "forward_split" if new > old else "reverse_split", symbol=s, ex_date=ex, process_date=ex,
                old_rate=old, new_rate=new),
            lambda: len(server.all_requests),
        )
        client.close()
        assert not server.errors


def _massive() -> Iterator[Source]:
    from tests.massive_server import FakeMassive

    def truth(symbol: str, name: str, start: datetime, end: datetime) -> pl.DataFrame:
        tf = parse_timeframe(name)
        return server.synthetic_frame(symbol, tf.amount, TIMESPANS[tf.unit], start, end)

    with FakeMassive() as server:
        client = MassiveClient(server.api_key, base_url=server.url, retry=RETRY, timeout=2)
        yield Source(
            client, SOURCES["massive"], truth, lambda: server.inject("503"), server.announce_split,
            lambda: len(server.requests) + len(server.action_requests),
        )
        client.close()
        assert not server.errors


def _sample() -> Iterator[Source]:
    from dataengine.sources.sample import SampleSource

    client = SampleSource()

    def truth(symbol: str, name: str, start: datetime, end: datetime) -> pl.DataFrame:
        """The sample's minute bars, aggregated here: its longer bars must be exactly these."""
        tf = parse_timeframe(name)
        day0 = start.astimezone(NY).replace(hour=0, minute=0, second=0, microsecond=0)
        minutes = pl.concat([p.bars for p in SampleSource().iter_pages([symbol], "minute", day0, end + timedelta(days=1))])
        key = (pl.col("timestamp").dt.truncate(f"{tf.minutes}m") if tf.intraday else
               pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.truncate("1d").dt.convert_time_zone("UTC"))
        out = minutes.group_by(key.alias("t"), maintain_order=True).agg(
            pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
            pl.col("volume").sum(), pl.col("trade_count").sum(),
            ((pl.col("vwap") * pl.col("volume")).sum() / pl.col("volume").sum()).round(4).alias("vwap"))
        return out.rename({"t": "timestamp"}).filter(pl.col("timestamp").is_between(start, end))

    yield Source(client, SOURCES["sample"], truth, None, None, lambda: client.stats.requests)


@pytest.fixture(params=["alpaca", "massive", "sample"])
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    yield from {"alpaca": _alpaca, "massive": _massive, "sample": _sample}[request.param]()


def fetch(source: Source, symbols: list[str], timeframe: str, start: datetime, end: datetime) -> pl.DataFrame:
    pages = list(source.client.iter_pages(symbols, parse_timeframe(timeframe), start, end))
    assert pages and all(dict(p.bars.schema) == BAR_SCHEMA for p in pages)
    return pl.concat([p.bars for p in pages])


DAY = (datetime(2024, 1, 3, 5, tzinfo=UTC), datetime(2024, 1, 4, 5, tzinfo=UTC) - timedelta(microseconds=1))


def test_pages_are_sorted_by_symbol_then_time_and_equal_the_servers(source: Source) -> None:
    bars = fetch(source, ["MSFT", "AAPL", "NVDA"], "minute", *DAY)
    assert bars.equals(bars.sort("symbol", "timestamp")) and bars.select("symbol", "timestamp").is_unique().all()
    if source.info.synthetic:  # its own minute bars are the truth: every regular minute, a third of the others
        assert all(390 <= n < 960 for n in bars.group_by("symbol").len()["len"])
        return
    truth = pl.concat([source.truth(s, "minute", *DAY).insert_column(0, pl.lit(s).alias("symbol")) for s in ("AAPL", "MSFT", "NVDA")])
    assert bars.equals(truth) and bars.height == 3 * 960


def test_requests_and_bars_are_counted_within_the_declared_page_size(source: Source) -> None:
    bars = fetch(source, ["MSFT", "AAPL", "NVDA"], "minute", *DAY)
    per_page = source.info.bars_per_page(parse_timeframe("minute"))
    counts = bars.group_by("symbol").len()["len"].to_list()
    bound = (sum(math.ceil(n / per_page) for n in counts) if source.info.symbols_per_request == 1
             else math.ceil(sum(counts) / per_page))
    stats = source.client.stats
    assert stats.requests == source.server_requests() <= bound and stats.bars == bars.height
    assert (stats.retries, stats.throttled) == (0, 0)


def test_both_ends_are_inclusive(source: Source) -> None:
    first, last = datetime(2024, 1, 3, 14, 30, tzinfo=UTC), datetime(2024, 1, 3, 15, 0, tzinfo=UTC)
    bars = fetch(source, ["AAPL"], "minute", first, last)
    assert (bars["timestamp"][0], bars["timestamp"][-1], bars.height) == (first, last, 31)


@pytest.mark.parametrize("timeframe", ["15min", "hour", "day"])
def test_declared_sizes_are_served_exactly(source: Source, timeframe: str) -> None:
    assert source.info.serves(parse_timeframe(timeframe))
    start, end = datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 1, 10, 5, tzinfo=UTC)
    bars = fetch(source, ["AAPL"], timeframe, start, end)
    assert bars.height and bars.drop("symbol").equals(source.truth("AAPL", timeframe, start, end))


def test_a_transient_fault_is_retried_and_counted(source: Source) -> None:
    if source.inject_503 is None:
        pytest.skip(f"{source.info.name} has no network to fail")
    source.inject_503()
    bars = fetch(source, ["AAPL"], "day", datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 1, 31, 5, tzinfo=UTC))
    assert bars.height == 21 and (source.client.stats.requests, source.client.stats.retries) == (2, 1)


def test_corporate_actions_land_in_the_one_table(source: Source) -> None:
    assert source.info.corporate_actions
    if source.announce_split is None:  # asked and answered: the sample has none
        actions = source.client.fetch_actions(["NVDA"], date(2024, 1, 1), date(2024, 12, 31))
        assert dict(actions.schema) == ACTION_SCHEMA and actions.is_empty()
        return
    source.announce_split("NVDA", "2024-06-10", 1, 10)
    actions = source.client.fetch_actions(["NVDA"], date(2024, 1, 1), date(2024, 12, 31))
    assert dict(actions.schema) == ACTION_SCHEMA
    split = actions.row(0, named=True)
    assert (actions.height, split["type"], split["symbol"], split["ex_date"]) == (1, "forward_split", "NVDA", date(2024, 6, 10))
    assert (split["old_rate"], split["new_rate"]) == (1.0, 10.0)
    assert source.client.stats.requests == source.server_requests() >= 1
