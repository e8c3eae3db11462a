"""`dataengine gaps`: true gaps (sessions with no bars) apart from quiet minutes; --repair fetches only them."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dataengine.cli import main
from tests.alpaca_server import Universe
from tests.helpers import assert_store_equals, expected, read_store

FEB = ("--start", "2024-02-01", "--end", "2024-02-29")


def gaps(capsys, *args: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    code = main(["gaps", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(autouse=True)
def history_from_february(monkeypatch: pytest.MonkeyPatch) -> None:
    """These stores hold February only: their history starts there (gaps judges missing history from it)."""
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", FEB[1])


def ingest_feb(alpaca, capsys, symbols: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert main(["-q", "ingest", *symbols, *FEB, "--json"]) == 0
    capsys.readouterr()


def test_true_gaps_quiet_minutes_and_listings(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    alpaca.universe = Universe(thin={"THIN"}, holes={"AAPL": ["2024-02-06", "2024-02-07"]},
                               listings={"NEWCO": ("2024-02-12", None)})
    ingest_feb(alpaca, capsys, ["AAPL", "THIN", "NEWCO", "MSFT"])
    code, report = gaps(capsys, *FEB)
    by = {r["symbol"]: r for r in report["symbols"]}
    assert code == 1 and report["missing_sessions"] == 2
    assert by["AAPL"]["missing_sessions"] == ["2024-02-06", "2024-02-07"] and by["AAPL"]["quiet_bars"] == 0
    assert by["THIN"]["missing_sessions"] == [] and by["THIN"]["quiet_bars"] > 1000  # no trade, no bar: normal
    assert by["MSFT"]["coverage_pct"] == 100.0 and by["MSFT"]["sessions_expected"] == 20  # Feb 19 is a holiday
    assert by["NEWCO"]["first_session"] == "2024-02-12" and by["NEWCO"]["missing_sessions"] == []


def test_punched_hole_is_found_and_repaired_alone(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_feb(alpaca, capsys, ["MSFT", "AAPL"])
    part = tmp_path / "store/equities_1min/symbol=MSFT/year=2024/month=02/data.parquet"
    kept = pl.read_parquet(part).filter(
        pl.col("timestamp").dt.convert_time_zone("America/New_York").dt.date().cast(pl.String) != "2024-02-14")
    kept.write_parquet(part)
    code, report = gaps(capsys, "MSFT", *FEB)
    assert code == 1 and report["symbols"][0]["missing_sessions"] == ["2024-02-14"]
    alpaca.reset_log()
    code, report = gaps(capsys, "MSFT", *FEB, "--repair")
    assert code == 0 and report["missing_sessions"] == 0
    assert {(r.params["symbols"], r.params["start"][:10]) for r in alpaca.requests} == {("MSFT", "2024-02-14")}
    assert_store_equals(read_store(tmp_path / "store"), expected(alpaca, ["AAPL", "MSFT"], *FEB[1::2]))


def test_daily_gaps_and_human_output(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    alpaca.universe = Universe(holes={"AAPL": ["2024-02-08"]})
    assert main(["-q", "ingest", "AAPL", *FEB, "-t", "day"]) == 0
    capsys.readouterr()
    code = main(["gaps", "-t", "day"])
    out = capsys.readouterr().out
    assert code == 1 and "AAPL" in out and "missing: 2024-02-08" in out and "sessions 19/20" in out


def test_gaps_refuses_weekly(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["gaps", "-t", "week"]) == 2
    assert "not week or month" in capsys.readouterr().err


def sessions_before_the_refetch_window(first: str) -> list[str]:
    """Sessions from ``first`` up to the re-fetch window of a run started now (the newest session is left out)."""
    from datetime import date, datetime, timedelta, timezone

    from dataengine import calendar
    from dataengine.timerange import NEW_YORK

    today = (datetime.now(timezone.utc) - timedelta(minutes=16)).astimezone(NEW_YORK).date()
    return [d.isoformat() for d in calendar.sessions(date.fromisoformat(first), today)[:-1]]


def test_a_store_filled_only_to_march_reports_the_never_fetched_tail(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["-q", "ingest", "AAPL", "MSFT", "--start", "2024-02-01", "--end", "2024-03-31", "-t", "day"]) == 0
    capsys.readouterr()
    tail = sessions_before_the_refetch_window("2024-04-01")
    code, report = gaps(capsys, "-t", "day")
    assert code == 1 and report["missing_sessions"] == 0 and report["never_fetched_symbols"] == 2
    for r in report["symbols"]:
        assert r["never_fetched"] == [[tail[0], tail[-1]]] and r["missing_history"] == []
    code = main(["gaps", "-t", "day"])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("equities_1day: 0 missing sessions in 2 symbols, history never fetched for 2 symbols")
    assert f"never fetched: 2024-04-01..{tail[-1]}" in out
    # the dry run of the default ingest fetches exactly from there (and the re-fetch window beyond)
    assert main(["ingest", "AAPL", "-t", "day", "--dry-run", "--json"]) == 0
    todo = json.loads(capsys.readouterr().out)["todo"]["AAPL"]
    assert len(todo) == 1 and todo[0][0].startswith("2024-04-01")
    # a range that ends before the tail has nothing missing
    assert gaps(capsys, "-t", "day", "--end", "2024-03-31")[0] == 0


def test_status_names_both_never_fetched_ends_as_gaps_does(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_DEFAULT_START", "2024-01-02")
    assert main(["-q", "ingest", "AAPL", "--start", "2024-02-01", "--end", "2024-03-31", "-t", "day"]) == 0
    capsys.readouterr()
    tail = sessions_before_the_refetch_window("2024-04-01")
    assert main(["status", "AAPL", "--json"]) == 0
    (dataset,) = json.loads(capsys.readouterr().out)["datasets"]
    assert dataset["never_fetched"] == [["2024-01-02", "2024-01-31"], [tail[0], tail[-1]]]
    assert gaps(capsys, "AAPL", "-t", "day")[1]["symbols"][0]["never_fetched"] == dataset["never_fetched"]
    assert main(["status", "AAPL"]) == 0
    assert f"never fetched 2024-01-02..2024-01-31, 2024-04-01..{tail[-1]}" in capsys.readouterr().out


def test_repair_fetches_the_never_fetched_tail(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["-q", "ingest", "AAPL", "--start", "2024-02-01", "--end", "2024-03-31", "-t", "day"]) == 0
    capsys.readouterr()
    code, report = gaps(capsys, "-t", "day", "--repair")
    assert code == 0 and report["symbols"][0]["never_fetched"] == [] and report["symbols"][0]["last_session"] > "2026"


def test_a_month_never_fetched_between_stored_ones_is_listed_once(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """January and March stored, February never asked for: its sessions are never fetched (a run fills them),
    not also missing sessions (a hole the source left), and the counts say the same."""
    for month in (("2024-01-02", "2024-01-31"), ("2024-03-01", "2024-03-28")):
        assert main(["-q", "ingest", "AAPL", "--start", month[0], "--end", month[1], "-t", "day"]) == 0
    capsys.readouterr()
    code, report = gaps(capsys, "-t", "day", "--start", "2024-01-02", "--end", "2024-03-28")
    (symbol,) = report["symbols"]
    assert code == 1 and symbol["never_fetched"] == [["2024-02-01", "2024-02-29"]]
    assert symbol["missing_sessions"] == [] and report["missing_sessions"] == 0
    assert main(["gaps", "-t", "day", "--start", "2024-01-02", "--end", "2024-03-28"]) == 1
    out = capsys.readouterr().out
    assert "never fetched: 2024-02-01..2024-02-29" in out and "missing:" not in out
    assert main(["status", "AAPL", "--json"]) == 0  # status: not a missing month as well
    (dataset,) = json.loads(capsys.readouterr().out)["datasets"]
    assert dataset["missing_months"] == [] and ["2024-02-01", "2024-02-29"] in dataset["never_fetched"]


def test_a_month_fetched_once_whose_file_is_gone_is_not_called_never_fetched(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by two users' trials: a partition deleted by hand was listed as "never fetched", though the ledger
    (and verify: "written once and is gone") says a run fetched it. It is listed as fetched once, files gone;
    a repair fetches it as it fetches the never fetched."""
    assert main(["-q", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-03-28", "-t", "day"]) == 0
    capsys.readouterr()
    (tmp_path / "store/equities_1day/symbol=AAPL/year=2024/month=02/data.parquet").unlink()
    code, report = gaps(capsys, "-t", "day", "--start", "2024-01-02", "--end", "2024-03-28")
    (symbol,) = report["symbols"]
    assert code == 1 and symbol["fetched_once"] == [["2024-02-01", "2024-02-29"]] and symbol["never_fetched"] == []
    assert report["fetched_once_symbols"] == 1 and report["never_fetched_symbols"] == 0 and symbol["missing_sessions"] == []
    assert main(["gaps", "-t", "day", "--start", "2024-01-02", "--end", "2024-03-28"]) == 1
    out = capsys.readouterr().out
    assert "fetched once, files gone: 2024-02-01..2024-02-29" in out and "never fetched" not in out
    code, report = gaps(capsys, "-t", "day", "--start", "2024-01-02", "--end", "2024-03-28", "--repair")
    assert code == 0 and report["symbols"][0]["fetched_once"] == [] and report["repair"]["rows_added"] == 20


def test_a_repair_refused_the_store_says_so_in_the_ledger(alpaca, capsys, backend: str) -> None:  # type: ignore[no-untyped-def]
    """A cron job's gaps --repair that found the store busy exits 3, and the ledger says why it did not run, as
    it does for a refused ingest (the runs under a repair's hold record themselves; the hold was refused first)."""
    from dataengine.storage.run_ledger import RunLedger
    from dataengine.storage.run_lock import RunLock
    from dataengine.storage.store import open_store

    ingest_feb(alpaca, capsys, ["AAPL"])
    before = len(RunLedger(backend).all())
    with RunLock(open_store(backend), command="a run holding the store"):
        code, _ = gaps(capsys, "AAPL", *FEB, "--repair")
    last = RunLedger(backend).all()
    assert code == 3 and len(last) == before + 1 and last[-1].exit_code == 3 and "gaps" in last[-1].command
    assert "in use by another dataengine run" in (last[-1].error or "")


def test_a_repair_that_waited_for_the_store_says_how_long_in_its_ledger_line(alpaca, capsys, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: gaps --repair --wait waited ~15 s for a run, and its ledger line said waited_s
    0.0 (the repair takes the lock before its run's record). The run under the hold now carries the hold's wait."""
    import logging
    import threading

    from dataengine.storage.run_ledger import RunLedger
    from dataengine.storage.run_lock import RunLock
    from dataengine.storage.store import open_store

    alpaca.universe = Universe(holes={"AAPL": ["2024-02-06"]})
    ingest_feb(alpaca, capsys, ["AAPL"])
    alpaca.universe = Universe()  # the source has the session now: the repair fetches it
    holder = RunLock(open_store(backend), command="a run holding the store").acquire()
    # held 1.2 s from when the command says it waits, not for a time from before it starts: its start-up went
    # out of a hold timed so (CI, loaded: 0.16 s of a 1 s hold once), and a slower one would leave less than 1 s
    said: list[threading.Timer] = []

    class ReleaseOnceWaiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for the store lock" in record.getMessage() and not said:
                said.append(threading.Timer(1.2, holder.release))
                said[0].start()

    lock_log = logging.getLogger("dataengine.storage.run_lock")
    handler = ReleaseOnceWaiting()
    lock_log.addHandler(handler)
    unstuck = threading.Timer(60, holder.release)  # bounds a failure: the command never said it waits
    unstuck.start()
    try:
        code, report = gaps(capsys, "AAPL", *FEB, "--repair", "--wait")
    finally:
        lock_log.removeHandler(handler)
        unstuck.cancel()
    assert said and code == 0 and report["repair"]["rows_added"] > 0
    assert RunLedger(backend).last(1)[0].waited_s >= 1.0


def ingest(capsys, *args: str) -> None:  # type: ignore[no-untyped-def]
    assert main(["-q", "ingest", *args, "-t", "minute"]) == 0
    capsys.readouterr()


def test_a_session_fetched_to_noon_is_judged_over_its_morning_only(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: the afternoon never fetched was counted as quiet bars (479) and as never fetched.
    Only minutes both fetched and past are judged: 04:00..12:00 of 03-05 (481 minutes, the end included)."""
    alpaca.universe = Universe(thin={"THIN"})
    ingest(capsys, "AAPL", "THIN", "--start", "2024-03-04", "--end", "2024-03-05T12:00:00-05:00")
    code, report = gaps(capsys)
    by = {r["symbol"]: r for r in report["symbols"]}
    assert by["AAPL"]["quiet_bars"] == 0 and by["AAPL"]["sessions_with_bars"] == by["AAPL"]["sessions_expected"] == 2
    assert by["AAPL"]["never_fetched"][1][0] == "2024-03-05"  # the afternoon is never fetched, only that
    assert 0 < by["THIN"]["quiet_bars"] == 960 + 481 - by["THIN"]["bars"]  # a thin symbol's morning is judged
    assert main(["gaps", "AAPL"]) == 1
    assert "sessions 2/2 (100.0%)  quiet bars 0  never fetched: 2024-02-01..2024-03-01, 2024-03-05.." in capsys.readouterr().out


def test_a_session_fetched_in_two_parts_is_judged_over_both(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """The fetch ended mid-session and a later one started after a hole: the hole is never fetched, not quiet."""
    ingest(capsys, "AAPL", "--start", "2024-03-04", "--end", "2024-03-05T12:00:00-05:00")
    ingest(capsys, "AAPL", "--start", "2024-03-05T15:00:00-05:00", "--end", "2024-03-06")
    code, report = gaps(capsys, "--start", "2024-03-04", "--end", "2024-03-06")
    (symbol,) = report["symbols"]
    assert code == 1 and symbol["never_fetched"] == [["2024-03-05", "2024-03-05"]] and symbol["missing_sessions"] == []
    assert symbol["quiet_bars"] == 0 and symbol["bars"] == 960 + 481 + 300 + 960  # 15:00..19:59 is 300 minutes


def test_a_range_that_starts_mid_session_is_judged_from_there(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """--start inside a session: the minutes before it are not in the report, so not quiet either."""
    ingest(capsys, "AAPL", "--start", "2024-03-04", "--end", "2024-03-05")
    code, report = gaps(capsys, "--start", "2024-03-05T12:00:00-05:00", "--end", "2024-03-05")
    assert report["symbols"][0]["quiet_bars"] == 0 and report["symbols"][0]["bars"] == 480


def test_minutes_still_to_come_are_not_judged(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Asked at noon (``now=``, as a store written by a clock ahead of this one would be): the afternoon has not
    happened yet, so its minutes are not quiet even where coverage says they were fetched."""
    from datetime import datetime

    from dataengine.datasets import DatasetKey
    from dataengine.reports.gaps import find_gaps
    from dataengine.storage.parquet_storage import ParquetStorage

    alpaca.universe = Universe(thin={"THIN"})
    ingest(capsys, "THIN", "--start", "2024-03-04", "--end", "2024-03-05")
    noon = datetime.fromisoformat("2024-03-05T12:00:00-05:00")
    (report,) = find_gaps(ParquetStorage(tmp_path / "store"), DatasetKey.of("minute"), now=noon)
    before_noon = read_store(tmp_path / "store").filter(pl.col("timestamp") < noon).height
    assert 0 < report.quiet_bars == 960 + 480 - before_noon  # 04:00..11:59 of 03-05: the 11:59 bar ended at noon


def test_todays_minutes_not_yet_fetched_or_still_to_come_are_not_quiet(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: a run during (or before) today's session, then gaps, said quiet bars 725 (today's
    minutes after the fetch ended). The fake serves every minute, so nothing fetched and past is quiet. (This one
    tells only while a New York session is under way; the cases above hold the rule on any day.)"""
    ingest(capsys, "AAPL", "--days", "5")
    report = gaps(capsys, "AAPL")[1]["symbols"][0]
    assert report["quiet_bars"] == 0 and report["bars"] > 0


def test_a_symbol_whose_recorded_months_are_all_gone_is_judged_as_the_planner_plans_it(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """THIN was fetched for February, then February's file was deleted, and March's bars were put in the store
    without a coverage record. The planner does not adopt March (THIN is in the ledger, so its bars outside the
    ledger are not taken as fetched): it fetches February and March. gaps must say the same: February fetched
    once and gone, March never fetched, and no quiet minute judged in bars no run recorded (it used to judge
    March as adopted, and count its thin minutes quiet)."""
    from dataengine.storage.parquet_storage import ParquetStorage

    alpaca.universe = Universe(thin={"THIN"})
    ingest_feb(alpaca, capsys, ["THIN"])
    (tmp_path / "store/equities_1min/symbol=THIN/year=2024/month=02/data.parquet").unlink()
    march = expected(alpaca, ["THIN"], "2024-03-01", "2024-03-28")
    ParquetStorage(tmp_path / "store").store(march, "minute")  # no coverage record
    code, report = gaps(capsys, "THIN", "--start", "2024-02-01", "--end", "2024-03-28")
    (symbol,) = report["symbols"]
    assert code == 1 and symbol["bars"] == march.height > 0
    assert symbol["fetched_once"] == [["2024-02-01", "2024-02-29"]]
    assert symbol["never_fetched"] == [["2024-03-01", "2024-03-28"]]
    assert symbol["quiet_bars"] == 0
    alpaca.reset_log()
    code, report = gaps(capsys, "THIN", "--start", "2024-02-01", "--end", "2024-03-28", "--repair")
    assert code == 0 and report["symbols"][0]["never_fetched"] == report["symbols"][0]["fetched_once"] == []
    assert min(r.params["start"][:10] for r in alpaca.requests) == "2024-02-01"  # both months asked for again
    assert_store_equals(read_store(tmp_path / "store"), expected(alpaca, ["THIN"], "2024-02-01", "2024-03-28"))


def test_on_massives_free_plan_repair_fetches_the_last_session_the_plan_serves(massive_env, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: on Massive's free plan (nothing of today until it is over) gaps --repair on a
    weekday stopped a session early: the re-fetch window was counted from the end the plan pulled back to
    (midnight), so the last session the plan serves was left out as well as today's. Asked (``now=``) at
    14:00 on a session S, the repair fetches through the session before S, as it would from Alpaca."""
    from datetime import datetime, time, timedelta

    from dataengine import IngestionPipeline, calendar
    from dataengine.datasets import DatasetKey
    from dataengine.reports.gaps import repair_gaps
    from dataengine.timerange import NEW_YORK

    monkeypatch.setenv("DATAENGINE_MASSIVE_PLAN", "free")  # the fake serves every day: the limits are the plan's
    days = calendar.sessions(datetime.now(NEW_YORK).date() - timedelta(days=45), datetime.now(NEW_YORK).date())
    stored, served, asked_on = days[-25:-20], days[-11], days[-10]  # asked on S = days[-10]; it serves days[-11]
    pipeline = IngestionPipeline(max_workers=2, progress=False)
    assert pipeline.ingest_symbols(["AAPL"], stored[0], stored[-1], "day", source="massive").ok
    now = datetime.combine(asked_on, time(14), NEW_YORK)
    reports, repaired = repair_gaps(pipeline, DatasetKey.of("day", "raw", "massive"), ["AAPL"],
                                    calendar.session_start(stored[0]), now=now)
    assert repaired is not None and repaired.ok
    assert (reports[0].last_session, reports[0].never_fetched, reports[0].missing_sessions) == (served.isoformat(), [], [])
    last = read_store(tmp_path / "store", "massive_equities_1day")["timestamp"].max()
    assert last == calendar.session_start(served)  # the bar of the last session served is stored
