"""``dataengine show`` (the latest bars of a symbol, no SQL) and ``dataengine lists`` (the bundled lists)."""

from __future__ import annotations

import json
from pathlib import Path

import dataengine
from tests.helpers import run_cli

JAN_FEB = ("--start", "2024-01-01", "--end", "2024-02-29")


def test_show_prints_the_latest_daily_bars_in_new_york_dates(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", *JAN_FEB)[0] == 0
    code, out, err = run_cli(capsys, "show", "aapl")
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0] == "AAPL · equities_1day · the last 10 bar(s)"
    assert lines[1].split()[:5] == ["date", "┃", "open", "┃", "high"]
    assert lines[-1].split()[0] == "2024-02-29" and len(lines) == 3 + 10  # title, header, rule, ten bars
    stored = dataengine.read_bars("AAPL", timeframe="day", storage_dir=tmp_path / "store").tail(10)
    code, out, _ = run_cli(capsys, "show", "AAPL", "--last", "25", "--json")  # 25 bars: two months' files
    report = json.loads(out)
    assert code == 0 and report["count"] == 25 and report["dataset"] == "equities_1day"
    assert [b["close"] for b in report["bars"][-10:]] == stored["close"].to_list()
    assert report["bars"][-1]["timestamp"] == "2024-02-29T05:00:00+00:00"


def test_show_opens_only_the_newest_files(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """January's file is unreadable: the last five bars of February never need it."""
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", *JAN_FEB)[0] == 0
    january = tmp_path / "store" / "equities_1day" / "symbol=AAPL" / "year=2024" / "month=01" / "data.parquet"
    january.write_bytes(b"not parquet")
    code, out, _ = run_cli(capsys, "show", "AAPL", "-n", "5", "--json")
    assert code == 0 and json.loads(out)["count"] == 5
    code, _, err = run_cli(capsys, "show", "AAPL", "-n", "30")  # now it is needed: named, with the repair hint
    assert code == 1 and "verify --repair" in err and str(january) in err


def test_show_minute_bars_in_new_york_time_and_the_default_dataset(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "ingest", "MSFT", "--start", "2024-01-31", "--end", "2024-02-01")[0] == 0
    code, out, _ = run_cli(capsys, "show", "MSFT", "--last", "2")  # no daily bars stored: the minute dataset
    lines = out.splitlines()
    assert code == 0 and lines[0] == "MSFT · equities_1min · the last 2 bar(s)"
    assert [line.split("│")[0].strip() for line in lines[3:]] == ["2024-02-01 19:58", "2024-02-01 19:59"]


def test_show_adjusted_bars_are_computed_from_the_raw_ones(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", *JAN_FEB)[0] == 0
    code, out, _ = run_cli(capsys, "show", "AAPL", "--adjustment", "all", "-n", "3")
    assert code == 0 and out.splitlines()[0] == "AAPL · equities_1day_all (from the raw bars) · the last 3 bar(s)"


def test_show_prints_adjusted_prices_to_their_meaningful_digits(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Prices x 1/3 before a 3:1 split: 419.26519999999994 (a double's noise) shows as 419.2652, as query's table does."""
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=3, old_rate=1,
                    ex_date="2024-02-26", process_date="2024-02-26", record_date="2024-02-23", payable_date="2024-02-23")
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", *JAN_FEB)[0] == 0
    code, out, _ = run_cli(capsys, "show", "AAPL", "--adjustment", "split", "-n", "20")
    stored = dataengine.read_bars("AAPL", timeframe="day", adjustment="split").tail(20)
    shown = [[cell.strip() for cell in line.split("│")[1:5]] for line in out.splitlines()[3:]]
    prices = [list(row) for row in stored.select("open", "high", "low", "close").iter_rows()]
    assert code == 0 and [[float(text) for text in row] for row in shown] == [[float(f"{p:.15g}") for p in row] for row in prices]
    assert all(text == repr(float(text)) for row in shown for text in row)
    assert any(text != repr(p) for row, values in zip(shown, prices) for text, p in zip(row, values))


def test_show_names_what_is_missing(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", *JAN_FEB)[0] == 0
    code, _, err = run_cli(capsys, "show", "ZZZZ")
    assert code == 2 and "no 1day bars of ZZZZ" in err and "datasets holding it: none" in err
    code, _, err = run_cli(capsys, "show", "AAPL", "-t", "hour")
    assert code == 2 and "no 1hour bars of AAPL" in err and "datasets holding it: equities_1day" in err
    code, _, err = run_cli(capsys, "show", "AAPL", "--last", "0")
    assert code == 2 and "--last" in err


def test_lists_names_the_bundled_lists_with_their_sizes(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli(capsys, "lists")
    assert code == 0 and out.split()[:3] == ["sp500-2025.csv", "503", "symbols"]
    code, out, _ = run_cli(capsys, "lists", "--json")
    (entry,) = json.loads(out)["lists"]
    assert code == 0 and (entry["name"], entry["symbols"]) == ("sp500-2025.csv", 503)


def test_show_reads_the_latest_version_while_a_newer_month_is_being_written(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: while a run wrote a new month (and after a run killed mid-way, until the next),
    show chose its first month from the directory, which held that uncommitted month, then read the latest
    version, which had no bar of it: an IndexError traceback. It now takes the months the latest version names."""
    import polars as pl

    from dataengine import AlpacaClient, ParquetStorage
    from dataengine.datasets import DatasetKey

    assert run_cli(capsys, "-q", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31", "-t", "day")[0] == 0
    february = AlpacaClient().fetch_bars("AAPL", "2024-02-01", "2024-02-29", "day")
    ParquetStorage().write(february.with_columns(symbol=pl.lit("AAPL")), DatasetKey.of("day"))  # as a run writes
    assert (tmp_path / "store/equities_1day/symbol=AAPL/year=2024/month=02/data.parquet").is_file()
    code, out, err = run_cli(capsys, "show", "AAPL", "-t", "day", "--last", "1")
    assert code == 0, err
    assert "AAPL · equities_1day · the last 1 bar(s)" in out and "2024-01-31" in out
