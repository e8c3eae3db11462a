"""The small store the documentation's snippets and pictures run against: the test server with a few real-looking
corporate actions, and a store filled from it. ``tests/test_docs.py`` runs every snippet of the docs against it;
``scripts/gen_screens.py`` draws the pictures from it.

What it holds (the snippets count on it):

- daily bars of AAPL, MSFT and NVDA, 2024-01-02..2024-06-28 (NVDA splits 10-for-1 on 2024-06-10);
- minute bars of AAPL and MSFT, 2024-01-02..2024-01-31, in two runs, so that the minute dataset has
  versions 0 and 1;
- the corporate actions of those symbols: three cash dividends and the split;
- in the run ledger, one run that failed a symbol (``BADX``, which the server refuses as Alpaca refuses a
  symbol it does not know).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.alpaca_server import FakeAlpaca

DAY_SYMBOLS = ["AAPL", "MSFT", "NVDA"]
DAY_RANGE = ("2024-01-02", "2024-06-28")
MINUTE_SYMBOLS = ["AAPL", "MSFT"]
MINUTE_RUNS = (("2024-01-02", "2024-01-15"), ("2024-01-16", "2024-01-31"))
INVALID = frozenset({"BADX"})


def server(**options: Any) -> FakeAlpaca:
    """The test server with the docs' corporate actions announced (not started: use it as a context manager)."""
    fake = FakeAlpaca(invalid_symbols=INVALID, **options)
    announce_actions(fake)
    return fake


def announce_actions(fake: FakeAlpaca) -> None:
    """Dividends and a split with the dates and amounts the companies declared (the prices are synthetic)."""
    for symbol, cusip, rate, ex, pay in (("AAPL", "037833100", 0.24, "2024-02-09", "2024-02-15"),
                                         ("MSFT", "594918104", 0.75, "2024-02-14", "2024-03-14"),
                                         ("NVDA", "67066G104", 0.04, "2024-03-05", "2024-03-27")):
        fake.announce("cash_dividend", symbol=symbol, cusip=cusip, rate=rate, special=False, foreign=False,
                      ex_date=ex, process_date=pay, record_date=ex, payable_date=pay)
    fake.announce("forward_split", symbol="NVDA", cusip="67066G104", new_rate=10, old_rate=1, ex_date="2024-06-10",
                  process_date="2024-06-10", record_date="2024-06-06", payable_date="2024-06-07")


def environment(fake: FakeAlpaca, store: Path | str) -> dict[str, str]:
    """The variables that point dataengine at the server and the store (fast retries, no pacing)."""
    return {
        "APCA_API_KEY_ID": "test-key",
        "APCA_API_SECRET_KEY": "test-secret",
        "APCA_API_DATA_URL": fake.url,
        "DATAENGINE_STORAGE_DIR": str(store),
        "DATAENGINE_RETRY_BACKOFF": "0.01",
        "DATAENGINE_REQUESTS_PER_MINUTE": "60000",
    }


def fill(store: Path | str) -> None:
    """Fill the store (with the environment already pointing at the server): the runs listed above."""
    from dataengine import IngestionPipeline

    runs = [(DAY_SYMBOLS, *DAY_RANGE, "day")] + [(MINUTE_SYMBOLS, a, b, "minute") for a, b in MINUTE_RUNS]
    runs.append((["AAPL", "BADX"], "2024-06-24", "2024-06-28", "day"))
    for symbols, start, end, timeframe in runs:
        command = ["dataengine", "ingest", *symbols, "--start", start, "--end", end, "-t", timeframe]
        pipeline = IngestionPipeline(max_workers=4, storage_dir=str(store), progress=False, command=command)
        result = pipeline.ingest_symbols(symbols, start, end, timeframe)
        assert list(result.failed) == [s for s in symbols if s in INVALID], f"filling the docs store: {result.failed}"
