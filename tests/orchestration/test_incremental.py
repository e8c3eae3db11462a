"""Incremental runs: only what is missing is fetched; the lag re-fetches the last session of a fetch. Each test
runs on a local store and on a store on S3 (``backend``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from dataengine import IngestionPipeline, ParquetStorage, Settings
from dataengine.storage.store import open_store
from dataengine.timerange import NEW_YORK
from tests.helpers import assert_store_equals, expected, read_store, store_listing

SYMBOLS = ["AAPL", "MSFT"]


def root():  # type: ignore[no-untyped-def]
    return open_store(Settings.load().storage_dir)


def test_rerun_without_start_fetches_only_new_bars(alpaca, backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-01-02")  # history starts here (2016 by default)
    p = IngestionPipeline(max_workers=2)
    p.ingest_symbols(SYMBOLS, None, "2024-01-31", "minute")
    alpaca.reset_log()
    result = p.ingest_symbols(SYMBOLS, None, "2024-02-09", "minute")
    new = expected(alpaca, SYMBOLS, "2024-02-01", "2024-02-09")
    assert result.rows_added == new.height == result.rows_written  # nothing old fetched again
    assert len(alpaca.requests) == -(-new.height // 10_000)  # the minimum: ceil(new bars / 10,000)
    assert result.requests == len(alpaca.all_requests)  # and one for the corporate actions
    assert all(r.params["start"] >= "2024-02-01" for r in alpaca.requests)
    assert_store_equals(read_store(root()), expected(alpaca, SYMBOLS, "2024-01-02", "2024-02-09"))


def test_same_range_again_fetches_nothing_unless_full_refresh(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    p.ingest_symbols(SYMBOLS, "2024-03-01", "2024-03-08", "minute")
    alpaca.reset_log()
    again = p.ingest_symbols(SYMBOLS, "2024-03-01", "2024-03-08", "minute")
    assert not alpaca.requests and again.ok and sorted(again.successful) == SYMBOLS
    assert again.requests == len(alpaca.action_requests) == 1  # only the corporate actions are asked for
    assert any("already up to date" in n for n in again.notes)
    forced = p.ingest_symbols(SYMBOLS, "2024-03-01", "2024-03-08", "minute", full_refresh=True)
    assert forced.requests > 0 and forced.rows_added == 0


def test_new_symbol_starts_at_the_requested_start_others_resume(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day")
    alpaca.reset_log()
    p.ingest_symbols(["AAPL", "NVDA"], "2024-01-02", "2024-02-29", "day")
    requested = {(r.params["symbols"], r.params["start"][:10]) for r in alpaca.requests}
    assert ("AAPL", "2024-02-01") in requested and ("NVDA", "2024-01-02") in requested
    assert_store_equals(read_store(root(), "equities_1day"),
                        pl.concat([expected(alpaca, ["AAPL"], "2024-01-02", "2024-02-29", "1Day"),
                                   expected(alpaca, ["NVDA"], "2024-01-02", "2024-02-29", "1Day")]).sort("symbol", "timestamp"))


def test_last_session_of_a_fetch_is_fetched_again(alpaca, backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A run up to now leaves today's (or the last) session untrusted: the next run fetches it again."""
    start = (datetime.now(timezone.utc) - timedelta(days=10)).astimezone(NEW_YORK).date().isoformat()
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", start)  # the history starts where the first run did
    p = IngestionPipeline(max_workers=1)
    p.ingest_symbols(["AAPL"], start, None, "day", feed="iex")
    alpaca.reset_log()
    again = p.ingest_symbols(["AAPL"], None, None, "day", feed="iex")
    assert len(alpaca.requests) == 1 and again.ok
    first_start = datetime.fromisoformat(alpaca.requests[0].params["start"])
    assert timedelta(0) <= datetime.now(timezone.utc) - first_start <= timedelta(days=4)
    alpaca.reset_log()
    p.ingest_symbols(["AAPL"], None, None, "day", feed="iex", lag=0)  # only the seconds since the last run
    since = datetime.now(timezone.utc) - datetime.fromisoformat(alpaca.requests[0].params["start"])
    assert timedelta(0) <= since <= timedelta(minutes=1)


def test_bars_stored_without_coverage_are_adopted(alpaca, backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-01-01")
    truth = expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-31", "1Day")
    ParquetStorage(root()).store(truth, "day")
    alpaca.reset_log()
    IngestionPipeline(max_workers=1).ingest_symbols(["AAPL"], None, "2024-02-29", "day")
    # resumes just after the last stored bar (Jan 31's daily bar, stamped at midnight New York = 05:00Z)
    assert [r.params["start"] for r in alpaca.requests] == ["2024-01-31T05:00:00.000001+00:00"]


def test_dry_run_sends_nothing_and_writes_nothing(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day")
    before = store_listing(backend)
    alpaca.reset_log()
    plan = p.dry_run(p.prepare(["AAPL", "MSFT"], "2024-01-02", "2024-01-31", "day"))
    assert plan["symbols_up_to_date"] == 1 and plan["symbols_to_fetch"] == 1
    assert plan["todo"]["AAPL"] == [] and len(plan["todo"]["MSFT"]) == 1
    assert plan["est_requests_max"] >= 1
    assert alpaca.requests == [] and store_listing(backend) == before


def test_the_default_run_after_a_sample_run_fetches_the_missing_past_and_the_new_bars(alpaca, backend, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A sample run (--start 2024-01-10) followed by the default run: the default history before the sample
    is fetched, not skipped, and `gaps` names the hole before it is filled."""
    from dataengine.cli import main

    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-01-02")
    assert main(["ingest", "AAPL", "--start", "2024-01-10", "--end", "2024-01-12", "-t", "day"]) == 0
    code = main(["gaps", "AAPL", "-t", "day", "--json"])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    import json

    report = json.loads(out)["symbols"][0]
    assert code == 1 and report["missing_history"] == ["2024-01-02", "2024-01-09"]
    alpaca.reset_log()
    assert main(["ingest", "AAPL", "--end", "2024-01-19", "-t", "day"]) == 0
    fetched = sorted((r.params["start"][:10], r.params["end"][:10]) for r in alpaca.requests)
    assert fetched[0][0] == "2024-01-02" and all(not ("2024-01-10" <= a <= "2024-01-11") for a, _ in fetched)
    assert_store_equals(read_store(root(), "equities_1day"), expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-19", "1Day"))
    capsys.readouterr()
    assert main(["gaps", "AAPL", "-t", "day", "--end", "2024-01-19", "--json"]) == 0
    assert main(["gaps", "AAPL", "-t", "day", "--json"]) == 1  # what came after 2024-01-19 was never fetched
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["symbols"][0]
    assert report["missing_history"] == [] and report["never_fetched"][0][0] == "2024-01-22"
