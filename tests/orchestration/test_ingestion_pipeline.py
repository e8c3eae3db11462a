"""The pipeline against the local Alpaca-compatible server: exact storage through faults and re-runs, on a local
store and on a store on S3 (``backend``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dataengine
from dataengine import IngestionPipeline, Settings
from dataengine.errors import AuthError, DatasetMismatchError, SourceUnreachableError, UsageError
from dataengine.storage.run_lock import RunLock
from tests.helpers import assert_store_equals, expected, read_store

pytestmark = pytest.mark.usefixtures("decoding")  # every test on the threads and in decode processes

SYMBOLS = ["AAPL", "MSFT", "BRK.B"]


def pipeline(workers: int = 4) -> IngestionPipeline:
    return IngestionPipeline(max_workers=workers)


def store_root() -> Path:
    return Settings.load().storage_dir


def test_multi_month_minute_range_stored_exactly(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    result = pipeline().ingest_symbols(SYMBOLS, "2024-01-01", "2024-03-31", "minute")
    assert result.ok and sorted(result.successful) == sorted(SYMBOLS)
    truth = expected(alpaca, SYMBOLS, "2024-01-01", "2024-03-31")
    assert_store_equals(read_store(store_root()), truth)
    assert result.rows_added == truth.height
    assert result.requests == len(alpaca.all_requests)
    assert result.requests <= -(-truth.height // 10_000) + 3  # close to ceil(bars / 10,000)


def test_overlapping_reruns_keep_each_bar_once(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    p.ingest_symbols(SYMBOLS, "2024-01-01", "2024-01-20", "minute")
    p.ingest_symbols(SYMBOLS, "2024-01-10", "2024-02-10", "minute")
    again = p.ingest_symbols(SYMBOLS, "2024-01-10", "2024-02-10", "minute", full_refresh=True)
    assert again.rows_added == 0 and again.rows_written > 0
    assert_store_equals(read_store(store_root()), expected(alpaca, SYMBOLS, "2024-01-01", "2024-02-10"))


@pytest.mark.parametrize("fault", ["500", "502", "503", "504", "429", "drop", "partial"])
def test_transient_faults_are_retried_without_loss(alpaca, backend, fault: str) -> None:  # type: ignore[no-untyped-def]
    alpaca.inject(fault, count=3)
    result = pipeline(2).ingest_symbols(SYMBOLS, "2024-02-01", "2024-02-29", "minute")
    assert result.ok, result.failed
    assert result.retries >= 3
    assert_store_equals(read_store(store_root()), expected(alpaca, SYMBOLS, "2024-02-01", "2024-02-29"))


def test_hung_request_times_out_and_is_retried(alpaca, backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "0.5")
    alpaca.inject("hang", count=1)
    result = pipeline(1).ingest_symbols(["AAPL"], "2024-02-01", "2024-02-05", "minute")
    assert result.ok and result.retries == 1
    assert_store_equals(read_store(store_root()), expected(alpaca, ["AAPL"], "2024-02-01", "2024-02-05"))


def test_retry_keeps_the_page_token(alpaca) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(1)
    alpaca.reset_log()
    p.ingest_symbols(["AAPL"], "2024-01-01", "2024-01-31", "minute")
    clean = [r.params.get("page_token") for r in alpaca.requests]
    alpaca.reset_log()
    alpaca.inject("503", count=1, symbol=None)
    p.ingest_symbols(["AAPL"], "2024-01-01", "2024-01-31", "minute", full_refresh=True)
    tokens = [r.params.get("page_token") for r in alpaca.requests]
    assert tokens[0] == tokens[1] is None  # the failed first request was retried as is, from the start
    assert [t for t in tokens[1:]] == clean  # and then the same pages, no restart


@pytest.mark.parametrize("fault", ["503", "drop", "partial"])
def test_a_failed_request_mid_range_is_retried_with_its_page_token(alpaca, backend, fault: str) -> None:  # type: ignore[no-untyped-def]
    """The fault hits a request that carries a page token (not the first one): the retry must carry the same
    token and cost exactly one request more than a clean run; restarting the range would cost the pages
    before it again (and the merge would hide the re-fetched rows, so only the request log can tell)."""
    p = pipeline(1)
    alpaca.reset_log()
    p.ingest_symbols(["AAPL"], "2024-01-01", "2024-01-31", "minute")
    clean = [r.page_token for r in alpaca.requests]
    assert len(clean) >= 3 and clean[0] is None and all(clean[1:])
    alpaca.reset_log()
    alpaca.inject(fault, count=1, with_token=True)
    p.ingest_symbols(["AAPL"], "2024-01-01", "2024-01-31", "minute", full_refresh=True)
    log = alpaca.requests
    failed = next(i for i, r in enumerate(log) if r.fault == fault)
    assert failed == 1 and log[failed].page_token == clean[1]
    assert log[failed + 1].page_token == log[failed].page_token  # retried as it was
    assert len(log) == len(clean) + 1
    assert [r.page_token for r in log if r.fault is None] == clean
    assert_store_equals(read_store(store_root()), expected(alpaca, ["AAPL"], "2024-01-01", "2024-01-31"))


def test_a_given_storage_carries_lock_ledger_coverage_and_index_with_it(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    elsewhere = tmp_path / "elsewhere"
    p = IngestionPipeline(max_workers=2, storage_dir=elsewhere)
    csv = tmp_path / "two.csv"
    csv.write_text("Symbol\nAAPL\nMSFT\n")
    p.ingest_from_csv(csv, "2024-01-02", "2024-01-05", "day", index_name="mine")
    meta = elsewhere / "metadata"
    assert (meta / "runs.jsonl").is_file() and (meta / "run.lock").is_file()
    assert (meta / "coverage" / "equities_1day.jsonl").is_file() and (meta / "indices" / "mine.csv").is_file()
    assert not store_root().exists()  # the settings' default store was never touched


def test_bad_symbol_fails_alone_and_neighbours_are_exact(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    alpaca.invalid_symbols = frozenset({"BADX"})
    result = pipeline().ingest_symbols(["AAPL", "BADX", "MSFT"], "2024-01-02", "2024-01-05", "day")
    assert result.failed.keys() == {"BADX"} and "invalid symbol" in result.failed["BADX"]
    assert sorted(result.successful) == ["AAPL", "MSFT"]
    assert result.exit_code == 1
    assert_store_equals(read_store(store_root(), "equities_1day"),
                        expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-01-05", "1Day"))


def test_symbol_without_bars_is_done_with_zero_rows(alpaca) -> None:  # type: ignore[no-untyped-def]
    alpaca.universe.no_data |= {"NODATA"}
    alpaca.universe._cfgs.clear()
    result = pipeline().ingest_symbols(["NODATA", "AAPL"], "2024-01-02", "2024-01-05", "day")
    assert result.ok and sorted(result.successful) == ["AAPL", "NODATA"]


def test_bad_keys_are_fatal_after_few_requests(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong")
    with pytest.raises(AuthError, match="rejected the API keys") as info:
        pipeline(4).ingest_symbols([f"S{i}" for i in range(200)], "2024-01-01", "2024-12-31", "minute")
    assert len(alpaca.requests) <= 4
    assert info.value.result.requests == len(alpaca.all_requests)  # type: ignore[attr-defined]


def test_exhausted_retries_fail_the_symbol_not_the_run(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "2")
    alpaca.inject("500", count=3, symbol="MSFT")
    result = pipeline(1).ingest_symbols(["MSFT"], "2024-01-02", "2024-01-03", "minute")
    assert "gave up after 2 retries" in result.failed["MSFT"]
    assert result.exit_code == 1


def test_dropped_connections_to_the_end_fail_the_symbol_not_the_run(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    alpaca.inject("drop", count=2, symbol="MSFT")
    result = pipeline(1).ingest_symbols(["MSFT"], "2024-01-02", "2024-01-03", "minute")
    assert result.failed["MSFT"].startswith("gave up after 1 retries: connection dropped")


def test_a_429_storm_slows_the_run_instead_of_failing_it(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    alpaca.inject("429", count=3)  # three in a row: more than max_retries, within the 429 budget
    result = pipeline(1).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "minute")
    assert result.ok and result.throttled == 3


def test_unreachable_endpoint_is_fatal(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_DATA_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    with pytest.raises(SourceUnreachableError, match="cannot reach"):
        pipeline(1).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "minute")


def test_a_run_refused_the_store_fetched_nothing_and_its_lock_error_has_no_result(alpaca) -> None:  # type: ignore[no-untyped-def]
    """What docs/ingesting.md says of a run refused the store: a LockError (exported from dataengine, exit 3)
    whose ``.result`` is None (nothing was fetched), the refusal in the ledger."""
    p = pipeline(1)
    with RunLock(p.root, command="dataengine ingest HELD"), pytest.raises(dataengine.LockError) as info:
        p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day")
    assert info.value.exit_code == 3 and info.value.result is None and alpaca.all_requests == []
    assert "dataengine ingest HELD" in str(info.value) and "(wait_for_lock=True from Python)" in str(info.value)
    (refused,) = p.ledger.all()
    assert refused.exit_code == 3 and refused.error == str(info.value)


def test_a_storage_dir_with_a_missing_parent_is_named_for_python_users_too(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    typo = tmp_path / "no-such" / "c"  # given as storage_dir=, so no message may speak of a --storage-dir flag
    with pytest.raises(UsageError, match=rf"^storage dir {re.escape(str(typo))}: its parent directory .* does not "
                                         r"exist \(a typo\?\)$"):
        pipeline_at = IngestionPipeline(1, storage_dir=typo)
        pipeline_at.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day")
    assert not typo.parent.exists() and alpaca.all_requests == []


def test_an_endpoint_that_never_answers_is_fatal_as_one_that_refuses(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A host that takes the connection and never answers (a hung proxy, a firewall that drops the packets):
    every try of the run's first request times out. That is exit 3, as a refused connection is, and promptly,
    not every symbol failed one by one (exit 1) as when the source answers and then one request hangs."""
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "0.3")
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "1")
    alpaca.inject("hang", count=10, endpoint="actions")
    with pytest.raises(SourceUnreachableError, match="cannot reach Alpaca: no request was answered") as info:
        pipeline(1).ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-03", "day")
    assert alpaca.requests == [] and info.value.result.failed.keys() == {"AAPL", "MSFT"}  # no bar was asked for
    alpaca.clear_faults()
    alpaca.inject("hang", count=10)  # the actions are answered: a hung bars request fails its symbols only
    result = pipeline(1).ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-03", "day")
    assert not result.ok and set(result.failed) == {"AAPL", "MSFT"} and result.exit_code == 1


def test_daily_bars_for_many_symbols_use_near_minimum_requests(alpaca) -> None:  # type: ignore[no-untyped-def]
    symbols = [f"S{i:03d}" for i in range(200)]
    result = pipeline().ingest_symbols(symbols, "2024-01-01", "2024-12-31", "day")
    stored = read_store(store_root(), "equities_1day")
    minimum = -(-stored.height // 10_000)
    assert result.ok and stored.height == 200 * 252
    assert result.requests <= 1.2 * minimum


def test_feed_mismatch_refused_before_any_request(alpaca) -> None:  # type: ignore[no-untyped-def]
    pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="iex")
    alpaca.reset_log()
    with pytest.raises(DatasetMismatchError, match="'iex'.*'sip'"):
        pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="sip")
    assert alpaca.requests == []


def test_a_run_that_stored_nothing_fixes_neither_feed_nor_asof(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A first run stopped by wrong keys stored no bar: the next run, with another feed or --asof, is not refused
    as if the dataset held the first run's bars (it named feed 'sip' bars that did not exist, for good)."""
    import json

    monkeypatch.setenv("APCA_API_SECRET_KEY", "wrong")
    with pytest.raises(AuthError):
        pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="sip", asof="2020-01-02")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "test-secret")
    assert pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="iex", asof="2024-06-03").ok
    record = json.loads((store_root() / "metadata" / "datasets" / "equities_1day.json").read_text())
    assert (record["feed"], record["asof"]) == ("iex", "2024-06-03")
    with pytest.raises(DatasetMismatchError, match="'iex'.*'sip'"):  # now it holds bars: the record binds
        pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="sip")


def test_a_dataset_that_has_versions_stays_bound_with_its_files_gone(alpaca) -> None:  # type: ignore[no-untyped-def]
    """Every partition set aside (a repair whose re-fetch then failed) and its coverage dropped: the dataset's
    versions still hold sip bars, so another feed is still refused."""
    import shutil

    assert pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="sip").ok
    shutil.rmtree(store_root() / "equities_1day" / "symbol=AAPL")
    (store_root() / "metadata" / "coverage" / "equities_1day.jsonl").unlink()
    with pytest.raises(DatasetMismatchError, match="'sip'.*'iex'"):
        pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-03", "day", feed="iex")


def test_adjusted_bars_go_to_their_own_dataset(alpaca) -> None:  # type: ignore[no-untyped-def]
    pipeline().ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day", adjustment="all")
    stored = read_store(store_root(), "equities_1day_all")
    assert_store_equals(stored, expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-05", "1Day", adjustment="all"))
    assert not (store_root() / "equities_1day").exists()


def test_recent_sip_end_is_pulled_back_for_free_plans(alpaca) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime, timedelta, timezone

    from dataengine.calendar import extended_hours_between

    alpaca.free_plan = True
    before = datetime.now(timezone.utc)
    result = pipeline().ingest_symbols(["AAPL"], "2026-01-05", None, "day")
    after = datetime.now(timezone.utc)
    assert result.ok  # the free plan's 403 on recent SIP data was never drawn
    cut = {extended_hours_between(moment - timedelta(minutes=16), moment) for moment in (before, after)}
    said = any("15 minutes" in n for n in result.notes)
    assert said in cut  # said when the pulled-back minutes held bars (not on a Sunday: tests/test_timerange.py)


def test_ingest_from_csv_records_the_index(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mine.csv"
    path.write_text("Symbol,Name\nAAPL,Apple\nBRK-B,Berkshire\n")
    result = pipeline().ingest_from_csv(path, "2024-01-02", "2024-01-03", "day", index_name="mine")
    assert sorted(result["successful"]) == ["AAPL", "BRK.B"]
    assert (store_root() / "metadata" / "indices" / "mine.csv").read_text().splitlines()[0] == "symbol,added,removed"


def test_server_rate_limit_is_followed_not_fought(alpaca) -> None:  # type: ignore[no-untyped-def]
    alpaca.rate_limit, alpaca.rate_window_s = 6, 1.0  # 6 requests per second, far below our own pacing
    alpaca.reset_rate_limit()
    result = pipeline(4).ingest_symbols(SYMBOLS, "2024-01-01", "2024-01-31", "minute")
    assert result.ok
    assert_store_equals(read_store(store_root()), expected(alpaca, SYMBOLS, "2024-01-01", "2024-01-31"))
    assert result.throttled <= 4  # at most the requests already in flight when the quota ran out


def test_an_unknown_keyword_names_the_method_and_its_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: ingest_symbols(..., start="2024-01-02") (read_bars' name for the first day)
    raised "IngestOptions.__init__() got an unexpected keyword argument 'start'", naming a class the user never
    met. The TypeError now names the method, its dates and options."""
    import pytest

    pipeline = IngestionPipeline(storage_dir=str(tmp_path / "store"))
    with pytest.raises(TypeError, match=r"ingest_symbols\(\) got an unexpected keyword argument 'start' "
                                        r"\(the dates are start_date=\); its options are feed, adjustment"):
        pipeline.ingest_symbols(["AAPL"], start="2024-01-02")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"ingest_from_csv\(\) got an unexpected keyword argument 'workers'; its"):
        pipeline.ingest_from_csv(tmp_path / "x.csv", workers=4)  # type: ignore[call-arg]
