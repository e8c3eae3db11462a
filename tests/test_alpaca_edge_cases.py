"""The whole of Alpaca's bars API and its edge cases, met through the CLI as a user would (issue 11)."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import assert_store_equals, expected, read_store, run_cli

pytestmark = pytest.mark.usefixtures("decoding")  # every test on the threads and in decode processes

UTC = timezone.utc


run = run_cli


def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def dataset_record(tmp_path: Path, name: str) -> dict[str, str]:
    return json.loads((store(tmp_path) / "metadata" / "datasets" / f"{name}.json").read_text())


# -- 1, 7: delayed_sip on a free plan; real-time plans skip the pull-back ----------------------------------


def test_delayed_sip_works_on_a_free_plan_and_is_the_sip_dataset(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.free_plan = True
    from dataengine.calendar import extended_hours_between

    start = (datetime.now(UTC) - timedelta(days=4)).date().isoformat()
    before = datetime.now(UTC)
    code, out, err = run(capsys, "ingest", "AAPL", "--start", start, "-t", "hour", "--feed", "delayed_sip", "--json")
    after = datetime.now(UTC)
    assert code == 0, err
    assert {r.status for r in alpaca.requests} == {200} and {r.params["feed"] for r in alpaca.requests} == {"sip"}
    newest_end = max(datetime.fromisoformat(r.params["end"].replace("Z", "+00:00")) for r in alpaca.requests)
    assert newest_end <= datetime.now(UTC) - timedelta(minutes=15)
    assert json.loads(out)["feed"] == "sip"
    # the note is said when the pulled-back minutes could hold bars (never on a Sunday: tests/test_timerange.py)
    assert ("end pulled back" in err) in {extended_hours_between(t - timedelta(minutes=16), t) for t in (before, after)}
    assert dataset_record(tmp_path, "equities_1hour")["feed"] == "sip"
    code, _, err = run(capsys, "ingest", "AAPL", "--start", start, "-t", "hour", "--feed", "sip")
    assert code == 0, err  # the same dataset: no feed mismatch


def test_sip_delay_0_asks_for_bars_up_to_now(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_SIP_DELAY_MINUTES", "0")
    # a week back always holds sessions (two days back from a Monday morning in UTC held none: exit 1, no data)
    start = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    before = datetime.now(UTC)
    code, _, err = run(capsys, "ingest", "AAPL", "--start", start, "-t", "hour")
    assert code == 0 and "pulled back" not in err
    newest_end = max(datetime.fromisoformat(r.params["end"].replace("Z", "+00:00")) for r in alpaca.requests)
    assert newest_end >= before - timedelta(seconds=5)


def test_sip_delay_setting_is_validated(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_SIP_DELAY_MINUTES", "-1")
    code, _, err = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03")
    assert code == 2 and "sip delay minutes must be at least 0" in err and not alpaca.requests


# -- 2: a repeated page token -------------------------------------------------------------------------------


def test_a_repeated_page_token_fails_only_that_symbol(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.loop_symbol = "LOOP"
    code, out, err = run(capsys, "ingest", "AAPL", "LOOP", "MSFT", "--start", "2024-02-01", "--end", "2024-02-29",
                         "--workers", "1", "--json")
    report = json.loads(out)
    assert code == 1 and set(report["failed"]) == {"LOOP"} and "repeated page token" in report["failed"]["LOOP"]
    assert sorted(report["successful"]) == ["AAPL", "MSFT"]
    assert_store_equals(read_store(store(tmp_path)).filter(pl.col("symbol") != "LOOP"),
                        expected(alpaca, ["AAPL", "MSFT"], "2024-02-01", "2024-02-29"))
    assert len(alpaca.requests) < 200  # it ended, far from a cron job that never does


# -- 3: a 4xx about the whole request -----------------------------------------------------------------------


def test_a_request_wide_4xx_stops_the_run_at_once(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    alpaca.reject_all = (422, {"code": 42210000, "message": "invalid timeframe"})
    symbols = [f"S{i:02d}" for i in range(40)]
    code, _, err = run(capsys, "ingest", *symbols, "--start", "2024-01-02", "--end", "2024-01-31", "-t", "day",
                       "--workers", "4")
    assert code == 3
    assert err.strip().splitlines()[-1] == "Error: Alpaca rejected the request (HTTP 422): invalid timeframe"
    assert len(alpaca.requests) <= 4  # at most one per worker, not 2N-1 halvings


# -- 4: stopping does not stall -----------------------------------------------------------------------------


def test_a_fatal_error_with_queued_units_stops_without_the_grace_period(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dataengine.orchestration.run as run_module

    monkeypatch.setattr(run_module, "SHUTDOWN_GRACE_S", 60.0)  # a stall would now be unmistakable
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    started = time.monotonic()
    code, _, _ = run(capsys, "ingest", *[f"S{i}" for i in range(6)], "--start", "2016-01-01", "--end", "2024-12-31",
                     "--workers", "2")
    assert code == 3 and time.monotonic() - started < 30


# -- 5, 6: every bar size, boats, spin-off and combinations --------------------------------------------------


@pytest.mark.parametrize(("size", "label", "wire"), [("10min", "10min", "10Min"), ("2H", "2hour", "2Hour"),
                                                     ("3month", "3month", "3Month")])
def test_every_bar_size_is_stored_and_read_back(alpaca, capsys, tmp_path: Path, size: str, label: str, wire: str) -> None:  # type: ignore[no-untyped-def]
    from dataengine.read import read_bars

    code, _, err = run(capsys, "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-06-28", "-t", size)
    assert code == 0, err
    assert {r.params["timeframe"] for r in alpaca.requests} == {wire}
    truth = expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-06-28", wire)
    assert_store_equals(read_store(store(tmp_path), f"equities_{label}"), truth)
    back = read_bars(["AAPL", "MSFT"], "2024-01-02", "2024-06-28", timeframe=size, storage_dir=store(tmp_path))
    assert back.height == truth.height
    code, out, _ = run(capsys, "status", "--json")
    assert any(d["name"] == f"equities_{label}" and d["rows"] == truth.height for d in json.loads(out)["datasets"])


def test_gaps_understand_n_minute_bars(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-03-04")
    assert run(capsys, "ingest", "AAPL", "--start", "2024-03-04", "--end", "2024-03-08", "-t", "10min")[0] == 0
    code, out, err = run(capsys, "gaps", "AAPL", "-t", "10min", "--end", "2024-03-08", "--json")
    assert code == 0, err
    report = json.loads(out)["symbols"][0]
    assert report["sessions_expected"] == 5 and report["missing_sessions"] == [] and report["quiet_bars"] == 0


def test_boats_feed_and_spin_off_combinations(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day",
                       "--feed", "boats", "--adjustment", "spin-off,split")
    assert code == 0, err
    assert {(r.params["feed"], r.params["adjustment"]) for r in alpaca.requests} == {("boats", "split,spin-off")}
    truth = expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-05", "1Day", feed="boats", adjustment="split,spin-off")
    assert_store_equals(read_store(store(tmp_path), "equities_1day_split_spinoff"), truth)
    assert dataset_record(tmp_path, "equities_1day_split_spinoff")["adjustment"] == "split,spin-off"


# -- 8: asof -------------------------------------------------------------------------------------------------


def test_asof_is_sent_explicitly_and_kept_per_dataset(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day")[0] == 0
    recorded = dataset_record(tmp_path, "equities_1day")["asof"]
    assert date.fromisoformat(recorded) and {r.params["asof"] for r in alpaca.requests} == {recorded}
    alpaca.reset_log()
    assert run(capsys, "ingest", "MSFT", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day")[0] == 0
    assert {r.params["asof"] for r in alpaca.requests} == {recorded}  # the same mapping on any later day
    code, _, err = run(capsys, "ingest", "MSFT", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day",
                       "--asof", "2020-01-02")
    assert code == 2 and f"as of {recorded}" in err


def test_asof_dash_turns_the_rename_mapping_off(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.renames = {"META": date(2022, 6, 9)}
    assert run(capsys, "ingest", "META", "--start", "2022-06-01", "--end", "2022-06-15", "-t", "day")[0] == 0
    mapped = read_store(store(tmp_path), "equities_1day")
    assert mapped["timestamp"].min().date() == date(2022, 6, 1)  # FB's history, as META
    other = tmp_path / "unmapped"
    code, _, err = run(capsys, "--storage-dir", str(other), "ingest", "META", "--start", "2022-06-01",
                       "--end", "2022-06-15", "-t", "day", "--asof", "-")
    assert code == 0, err
    assert {r.params["asof"] for r in alpaca.requests[-1:]} == {"-"}
    assert read_store(other, "equities_1day")["timestamp"].min().date() == date(2022, 6, 9)


# -- 9: symbols with no data ------------------------------------------------------------------------------------


def test_symbols_with_no_data_are_named(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.universe.no_data = frozenset({"APPL", "XYZQ"})
    alpaca.universe._cfgs.clear()
    code, out, err = run(capsys, "ingest", "AAPL", "APPL", "XYZQ", "--start", "2024-01-02", "--end", "2024-01-05",
                         "-t", "day", "--json")
    report = json.loads(out)
    assert code == 0 and report["no_data"] == ["APPL", "XYZQ"]
    assert "warning: 2 symbol(s) with no data at all (none returned, none stored): APPL, XYZQ" in err
    ledger = [json.loads(line) for line in (store(tmp_path) / "metadata" / "runs.jsonl").read_text().splitlines()]
    assert ledger[-1]["no_data"] == ["APPL", "XYZQ"]
    code, out, _ = run(capsys, "status", "APPL", "--json")
    assert json.loads(out)["datasets"] == []
    code, _, err = run(capsys, "ingest", "APPL", "--start", "2024-02-01", "--end", "2024-02-05", "-t", "day")
    assert code == 1 and "APPL" in err  # every symbol came back empty: cron hears about it


def test_a_no_data_symbol_is_named_on_every_run_until_it_has_a_bar(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """The second run finds APPL up to date (its empty range is covered) and fetches nothing for it: it is
    still named, until a bar of it is stored."""
    alpaca.universe.no_data = frozenset({"APPL"})
    alpaca.universe._cfgs.clear()
    command = ("ingest", "AAPL", "APPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day", "--json")
    for _ in range(2):
        alpaca.reset_log()
        code, out, err = run(capsys, *command)
        assert code == 0 and json.loads(out)["no_data"] == ["APPL"] and "no data at all" in err and "APPL" in err
    assert alpaca.requests == []  # the second run asked for no bar: APPL is named all the same
    code, _, err = run(capsys, "ingest", "APPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day")
    assert code == 1 and "no data at all" in err  # alone, still nothing: cron hears about it every time
    alpaca.universe.no_data = frozenset()
    alpaca.universe._cfgs.clear()
    code, out, err = run(capsys, "ingest", "AAPL", "APPL", "--start", "2024-01-02", "--end", "2024-01-09", "-t", "day",
                         "--json")
    assert code == 0 and json.loads(out)["no_data"] == [] and "no data" not in err  # it got bars: the mark is gone
    code, out, err = run(capsys, *command)
    assert code == 0 and json.loads(out)["no_data"] == []


def test_a_symbol_with_bars_outside_the_range_is_not_no_data(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day")[0] == 0
    code, out, _ = run(capsys, "ingest", "AAPL", "--start", "2024-01-06", "--end", "2024-01-07", "-t", "day", "--json")
    assert code == 0 and json.loads(out)["no_data"] == []  # a weekend: nothing traded, nothing wrong


# -- 10: fractional volume --------------------------------------------------------------------------------------


def test_a_fractional_volume_fails_that_symbol_instead_of_truncating(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.canned = [b'{"bars":{"AAPL":[{"t":"2024-01-02T05:00:00Z","o":1,"h":1,"l":1,"c":1,"v":100,"n":1,"vw":1}],'
                     b'"FRAC":[{"t":"2024-01-02T05:00:00Z","o":1,"h":1,"l":1,"c":1,"v":10.5,"n":1,"vw":1}]},'
                     b'"next_page_token":null}']
    code, out, _ = run(capsys, "ingest", "AAPL", "FRAC", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day",
                       "--json")
    report = json.loads(out)
    assert code == 1 and "fractional volume 10.5" in report["failed"]["FRAC"]
    assert_store_equals(read_store(store(tmp_path), "equities_1day"),
                        expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-05", "1Day"))


@pytest.mark.parametrize("timeframe", ["day", "minute"])
def test_a_range_with_no_trading_session_blames_no_symbol(alpaca, capsys, timeframe: str) -> None:  # type: ignore[no-untyped-def]
    """A weekend (a cron line with --days 1 on a Saturday, a new user trying it on a Sunday) or a holiday has no
    bars: the run says so and exits 0, instead of naming AAPL as a typo and exiting 1."""
    for start, end, said in (("2024-01-06", "2024-01-07", "2024-01-06..2024-01-07"), ("2024-12-25", "2024-12-25", "2024-12-25")):
        code, out, err = run(capsys, "ingest", "AAPL", "--start", start, "--end", end, "-t", timeframe, "--json")
        result = json.loads(out)
        assert code == 0 and result["no_data"] == [] and "no data at all" not in err, err
        assert f"{said} holds no trading session (a weekend or a market holiday): no bars to expect" in result["notes"]
    # a range with a session still names a symbol that has no bar at all
    alpaca.universe.no_data = frozenset({"APPL"})
    alpaca.universe._cfgs.clear()
    code, out, _ = run(capsys, "ingest", "APPL", "--start", "2024-01-05", "--end", "2024-01-07", "-t", timeframe, "--json")
    assert code == 1 and json.loads(out)["no_data"] == ["APPL"]
