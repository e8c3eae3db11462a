"""The small store the documentation's snippets and pictures run against: the Alpaca and Massive test servers
with a few real-looking corporate actions, and a store filled from the first. ``tests/test_docs.py`` runs every
snippet of the docs against it; ``scripts/gen_screens.py`` draws the pictures from it.

What it holds (the snippets count on it):

- daily bars of AAPL, MSFT and NVDA, 2024-01-02..2024-06-28 (NVDA splits 10-for-1 on 2024-06-10);
- minute bars of AAPL and MSFT, 2024-01-02..2024-01-31, in two runs, so that the minute dataset has
  versions 0 and 1;
- the corporate actions of those symbols: three cash dividends and the split;
- in the run ledger, one run that failed a symbol (``BADX``, which the server refuses as Alpaca refuses a
  symbol it does not know).

The Massive server knows the same actions and serves the same synthetic bars, except MSFT's close of
2024-01-10, planted at 999.0, which ``verify --against massive`` finds.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.alpaca_server import FakeAlpaca
from tests.massive_server import FakeMassive

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


# the dividends and the split, with the dates and amounts the companies declared (the prices are synthetic)
DIVIDENDS = (("AAPL", "037833100", 0.24, "2024-02-09", "2024-02-15"), ("MSFT", "594918104", 0.75, "2024-02-14", "2024-03-14"),
             ("NVDA", "67066G104", 0.04, "2024-03-05", "2024-03-27"))
SPLIT = ("NVDA", "2024-06-10", 1, 10)  # 10-for-1


def announce_actions(fake: FakeAlpaca) -> None:
    """The actions, as Alpaca sends them."""
    for symbol, cusip, rate, ex, pay in DIVIDENDS:
        fake.announce("cash_dividend", symbol=symbol, cusip=cusip, rate=rate, special=False, foreign=False,
                      ex_date=ex, process_date=pay, record_date=ex, payable_date=pay)
    symbol, ex, old, new = SPLIT
    fake.announce("forward_split", symbol=symbol, cusip="67066G104", new_rate=new, old_rate=old, ex_date=ex,
                  process_date=ex, record_date="2024-06-06", payable_date="2024-06-07")


def massive_server(**options: Any) -> FakeMassive:
    """The Massive test server with the same actions, and MSFT's close of 2024-01-10 planted (not started)."""
    fake = FakeMassive(**options)
    for symbol, _, rate, ex, pay in DIVIDENDS:
        fake.announce_dividend(symbol, ex, rate, pay_date=pay)
    symbol, ex, old, new = SPLIT
    fake.announce_split(symbol, ex, old, new)
    fake.alter("MSFT", datetime(2024, 1, 10, 5, tzinfo=timezone.utc), close=999.0)
    return fake


def environment(fake: FakeAlpaca, store: Path | str, massive: FakeMassive | None = None) -> dict[str, str]:
    """The variables that point dataengine at the servers and the store (fast retries, no pacing; Massive's
    paid plan, so its history and pace are not limited)."""
    env = {
        "APCA_API_KEY_ID": "test-key",
        "APCA_API_SECRET_KEY": "test-secret",
        "APCA_API_DATA_URL": fake.url,
        "DATAENGINE_STORAGE_DIR": str(store),
        "DATAENGINE_RETRY_BACKOFF": "0.01",
        "DATAENGINE_REQUESTS_PER_MINUTE": "60000",
    }
    if massive is not None:
        env.update(MASSIVE_API_KEY=massive.api_key, MASSIVE_API_URL=massive.url, DATAENGINE_MASSIVE_PLAN="paid",
                   DATAENGINE_MASSIVE_REQUESTS_PER_MINUTE="60000")
    return env


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
