"""A run's corporate-actions step on the run's workers: Massive answers one ticker per request (its splits, then
its dividends), so a user's trial of 10 symbols at 0.5 s a request spent 10 s on actions before 0.5 s of bars.
The batches now run on up to ``workers`` threads, each with a client of its own sharing the run's pacer. Held
structurally (the look-alike server's most requests answered at once), never by the clock: the same actions,
failures isolated per symbol, every request counted, and a Ctrl-C during the step stops it."""

from __future__ import annotations

import _thread
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from dataengine import IngestionPipeline
from dataengine.actions.store import ActionStore
from dataengine.storage.store import open_store
from tests.massive_server import FakeMassive

SYMBOLS = ["AAPL", "AMZN", "META", "MSFT", "NFLX", "NVDA"]
JAN = ("2024-01-02", "2024-01-05")


def announce(server: FakeMassive) -> None:
    """Actions for half the symbols, so the stored table has something to compare."""
    server.announce_split("NVDA", "2024-01-03", 1, 4)
    server.announce_dividend("AAPL", "2024-01-04", 0.24)
    server.announce_dividend("MSFT", "2024-01-03", 0.75)


def stored_actions(root: Path) -> pl.DataFrame:
    return ActionStore(open_store(str(root))).load().sort("symbol", "type", "ex_date")


def test_the_actions_step_asks_for_several_symbols_at_once_within_the_workers(massive_env: FakeMassive, tmp_path: Path) -> None:
    announce(massive_env)
    massive_env.latency_s = 0.2  # each answer takes a while, as across the internet: overlapping ones show
    result = IngestionPipeline(max_workers=3, storage_dir=tmp_path / "three").ingest_symbols(SYMBOLS, *JAN, "day", source="massive")
    assert result.ok and len(massive_env.action_requests) == 2 * len(SYMBOLS)
    assert 1 < massive_env.peak_in_flight["reference"] <= 3  # in parallel, never more than the run's workers
    # every request counted, the step's and the bars'
    assert result.requests == len(massive_env.action_requests) + len(massive_env.requests)


def test_the_same_actions_are_stored_on_one_thread_or_several(massive_env: FakeMassive, tmp_path: Path) -> None:
    announce(massive_env)
    for workers in (1, 4):
        result = IngestionPipeline(max_workers=workers, storage_dir=tmp_path / str(workers)).ingest_symbols(
            SYMBOLS, *JAN, "day", source="massive")
        assert result.ok and result.actions_new == 3
    assert stored_actions(tmp_path / "1").equals(stored_actions(tmp_path / "4"))
    assert stored_actions(tmp_path / "4")["symbol"].to_list() == ["AAPL", "MSFT", "NVDA"]


def test_a_symbol_whose_actions_fail_fails_alone(massive_env: FakeMassive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    announce(massive_env)
    massive_env.inject(503, count=100, ticker="MSFT", endpoint="reference")
    result = IngestionPipeline(max_workers=3, storage_dir=tmp_path / "store").ingest_symbols(SYMBOLS, *JAN, "day", source="massive")
    assert list(result.failed) == ["MSFT"] and result.failed["MSFT"].startswith("corporate actions not fetched")
    assert result.successful == [s for s in SYMBOLS if s != "MSFT"]
    assert stored_actions(tmp_path / "store")["symbol"].to_list() == ["AAPL", "NVDA"]  # the others' kept
    assert result.requests == len(massive_env.action_requests) + len(massive_env.requests)


def test_a_stop_during_the_actions_step_ends_it_and_counts_every_request_sent(massive_env: FakeMassive, tmp_path: Path) -> None:
    """Ctrl-C while the step's threads wait on the server: the main thread stops them, waits for the requests
    under way (so the result counts what the server saw) and the run ends interrupted, before any bar."""
    massive_env.latency_s = 0.3
    # 80 requests at 0.3 s on three workers: the step runs ~8 s, so it is still under way when the interrupt comes
    # however late a loaded machine lets the thread send it (with 12 symbols, 2.4 s, one sent 2 s late found
    # the step done); stopped, the run takes no longer for it
    symbols = [f"S{i:02d}" for i in range(40)]

    def ctrl_c_once_requests_are_answered() -> None:
        deadline = time.monotonic() + 30
        while len(massive_env.action_requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()  # as a SIGINT to the process: KeyboardInterrupt in the main thread

    threading.Thread(target=ctrl_c_once_requests_are_answered, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as stopped:
        IngestionPipeline(max_workers=3, storage_dir=tmp_path / "store").ingest_symbols(symbols, *JAN, "day", source="massive")
    result = stopped.value.result  # type: ignore[attr-defined]
    assert result.interrupted and result.successful == [] and not massive_env.requests  # no bar asked for
    assert 3 <= len(massive_env.action_requests) < 2 * len(symbols)  # stopped early, not run to the end
    assert result.requests == len(massive_env.action_requests)  # the ones under way were waited for, and counted


def test_actions_update_asks_on_the_workers_too(massive_env: FakeMassive, tmp_path: Path) -> None:
    announce(massive_env)
    massive_env.latency_s = 0.2
    pipeline = IngestionPipeline(max_workers=2, storage_dir=tmp_path / "store")
    result = pipeline.update_corporate_actions(SYMBOLS, "2024-01-02", source="massive")
    assert result.successful == SYMBOLS and result.actions_new == 3 and len(massive_env.action_requests) == 12
    assert massive_env.peak_in_flight["reference"] == 2  # both workers at once, never more
    assert result.requests == 12 + len(massive_env.requests)  # and the daily closes before the two dividends


def test_a_wait_for_the_rate_limit_during_the_actions_step_is_said(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """A user's trial: Massive's free plan (5 requests a minute) held the corporate-actions step for 60 s with no
    line at all, before the bars' progress lines start; a cron user would think it hung. Each wait of the pacer
    of a second or more is now one line."""
    from tests.helpers import run_cli

    alpaca.rate_window_s = 3.0  # Alpaca's 429 says when the quota comes back: in about 3 s
    alpaca.inject("429", endpoint="actions")
    code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day")
    assert code == 0, err
    assert "symbol(s): fetching corporate actions" in err and "corporate actions: waiting " in err
