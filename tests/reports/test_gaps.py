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
