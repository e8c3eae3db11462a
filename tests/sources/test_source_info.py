"""What each source declares it can do: the facts a planner sizes requests by."""

from __future__ import annotations

from datetime import date

import pytest

from dataengine.errors import UsageError
from dataengine.sources.source import ALPACA, MASSIVE, PAGE_BARS, SAMPLE, SOURCES, source_info
from dataengine.timeframes import TIMEFRAMES, parse_timeframe


def test_every_source_is_registered_by_name_and_an_unknown_one_is_a_usage_error() -> None:
    assert SOURCES == {"alpaca": ALPACA, "massive": MASSIVE, "sample": SAMPLE}
    assert source_info(" Massive ") is MASSIVE
    with pytest.raises(UsageError, match="unknown source 'polygon'; choose one of: alpaca, massive, sample"):
        source_info("polygon")


def test_alpaca_pages_count_bars_across_symbols() -> None:
    assert (ALPACA.page_bars, ALPACA.page_unit, ALPACA.symbols_per_request) == (PAGE_BARS, "bars", None)
    assert {ALPACA.bars_per_page(tf) for tf in TIMEFRAMES.values()} == {10_000}
    assert ALPACA.rate_limit_headers and ALPACA.requests_per_minute == 200


def test_massive_pages_count_base_aggregates_of_one_ticker() -> None:
    assert (MASSIVE.page_bars, MASSIVE.page_unit, MASSIVE.symbols_per_request) == (50_000, "base", 1)
    assert MASSIVE.bars_per_page(parse_timeframe("minute")) == 50_000
    assert MASSIVE.bars_per_page(parse_timeframe("5min")) == 10_000  # 50,000 minutes make 10,000 bars of 5
    assert MASSIVE.bars_per_page(parse_timeframe("day")) == 50_000
    assert MASSIVE.bars_per_page(parse_timeframe("week")) == 10_000
    assert not MASSIVE.rate_limit_headers and MASSIVE.requests_per_minute == 5


@pytest.mark.parametrize("name", ["minute", "7min", "hour", "4hour", "day", "week", "month", "3month", "12month"])
def test_both_serve_every_size_dataengine_names(name: str) -> None:
    assert ALPACA.serves(parse_timeframe(name)) and MASSIVE.serves(parse_timeframe(name))


def test_adjustments_feeds_and_history() -> None:
    assert ALPACA.serves_adjustment("split,spin-off") and ALPACA.serves_adjustment("all")
    assert MASSIVE.serves_adjustment("raw") and not MASSIVE.serves_adjustment("split")
    assert MASSIVE.feeds == ("sip",) and not MASSIVE.maps_renamed_symbols and MASSIVE.corporate_actions
    assert ALPACA.earliest(date(2026, 3, 1)) == date(2016, 1, 1)
    assert MASSIVE.earliest(date(2026, 3, 1)) == date(2024, 3, 1)  # the free plan's two years


def test_capabilities_cost_no_http_client_and_the_massive_source_no_alpaca_py() -> None:
    """In a fresh process: a planner reads SourceInfo without requests; the Massive client never needs alpaca-py."""
    import subprocess
    import sys

    code = (
        "import sys; from dataengine.sources.source import SOURCES; a = 'requests' in sys.modules; "
        "import dataengine.sources.massive_client; "
        "print(a, sorted({m.split('.')[0] for m in sys.modules} & {'alpaca', 'pandas', 'pydantic'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False []"


def test_the_sample_is_synthetic_keyless_and_unpaced_and_names_its_datasets_apart() -> None:
    assert SAMPLE.synthetic and not ALPACA.synthetic and not MASSIVE.synthetic
    assert (SAMPLE.key_variables, SAMPLE.requests_per_minute) == ((), None)
    assert (ALPACA.dataset_prefix, MASSIVE.dataset_prefix, SAMPLE.dataset_prefix) == ("", "massive_", "sample_")


def test_the_names_datasets_know_are_the_sources_registered() -> None:
    from dataengine.datasets import DEFAULT_SOURCE, SOURCE_NAMES

    assert tuple(SOURCES) == SOURCE_NAMES and ALPACA.name == DEFAULT_SOURCE
