"""``dataengine query``: output formats, one-line errors with exit 2, and a store nothing can write to."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from dataengine import read_bars
from dataengine.cli import main
from dataengine.storage.parquet_storage import ParquetStorage
from tests.helpers import run_cli

COUNTS = "select symbol, count(*) as n from bars_1min group by symbol order by symbol"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    first = datetime(2024, 12, 2, 9, 0, tzinfo=timezone.utc)  # 04:00 New York
    stamps = pl.datetime_range(first, first + timedelta(minutes=959), "1m", eager=True)
    bars = pl.DataFrame({"symbol": ["AAPL", "MSFT"]}).join(pl.DataFrame({"timestamp": stamps}), how="cross")
    ParquetStorage(root).store(bars.with_columns(open=pl.lit(1.5), high=pl.lit(1.5), low=pl.lit(1.5), close=pl.lit(1.5), volume=pl.lit(100)), "minute")
    return root


def run(store: Path, *args: str) -> int:
    return main(["--storage-dir", str(store), "query", *args])


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_table_to_stdout(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(store, COUNTS) == 0
    lines = capsys.readouterr().out.splitlines()
    cells = [[cell.strip() for cell in re.split("[│┃]", line)] for line in lines]
    assert cells[0] == ["symbol", "n"] and set(lines[1]) <= set("━╇─┼ ")
    assert cells[2:] == [["AAPL", "960"], ["MSFT", "960"]]


def test_table_is_capped_with_a_note(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(store, "select * from bars_1min") == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 + 1000
    assert "showing the first 1,000 rows" in captured.err


def test_csv_and_json_to_stdout(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(store, COUNTS, "--format", "csv") == 0
    assert capsys.readouterr().out == "symbol,n\nAAPL,960\nMSFT,960\n"
    assert run(store, COUNTS, "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [{"symbol": "AAPL", "n": 960}, {"symbol": "MSFT", "n": 960}]


def test_csv_and_json_write_timestamps_alike(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One RFC 3339 form in both: csv used to write ``09:00:00.000000+0000`` (an offset Python 3.10's
    ``datetime.fromisoformat`` refuses) where json wrote ``09:00:00+00:00``, and naive times differently too."""
    sql = (
        "select timestamp as t, timestamp + interval 1 microsecond as frac, timestamp::timestamp as naive, "
        "timestamp::date as d from bars_1min where symbol = 'AAPL' order by t limit 1"
    )
    row = {"t": "2024-12-02T09:00:00+00:00", "frac": "2024-12-02T09:00:00.000001+00:00", "naive": "2024-12-02T09:00:00", "d": "2024-12-02"}
    assert run(store, sql, "-f", "csv") == 0
    assert capsys.readouterr().out == ",".join(row) + "\n" + ",".join(row.values()) + "\n"
    assert run(store, sql, "-f", "json") == 0
    assert json.loads(capsys.readouterr().out) == [row]
    for text in row.values():
        datetime.fromisoformat(text)  # what a Python reader (3.10 included) does with them


def table_cells(out: str) -> list[list[str]]:
    """The body of a printed table, cell by cell (the header and its rule left out)."""
    return [[cell.strip() for cell in line.split("│")] for line in out.splitlines()[2:]]


def test_table_shows_adjusted_prices_without_binary_noise(alpaca, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """A 10:1 split: the closes before it are raw x 0.1 (586.3677 x 0.1 is 58.636770000000006 as a double). The
    table shows each to 15 significant digits in its shortest form (58.63677); csv and json carry every bit, the
    floats read_bars returns."""
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=10, old_rate=1,
                    ex_date="2024-03-04", process_date="2024-03-04", record_date="2024-03-01", payable_date="2024-03-01")
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-02-01", "--end", "2024-03-08")[0] == 0
    closes = read_bars("AAPL", timeframe="day", adjustment="split")["close"].to_list()
    sql = "select close from raw_adjusted_split_1day where symbol = 'AAPL' order by timestamp"
    code, out, _ = run_cli(capsys, "query", sql)
    shown = [row[0] for row in table_cells(out)]
    assert code == 0 and len(shown) == len(closes) > 20
    assert [float(text) for text in shown] == [float(f"{close:.15g}") for close in closes]
    assert all(text == repr(float(text)) for text in shown)  # the shortest text of that value
    assert any(text != repr(close) for text, close in zip(shown, closes))  # the noise the table left out
    code, out, _ = run_cli(capsys, "query", sql, "-f", "csv")
    assert (code, [float(text) for text in out.split()[1:]]) == (0, closes)
    code, out, _ = run_cli(capsys, "query", sql, "-f", "json")
    assert (code, [row["close"] for row in json.loads(out)]) == (0, closes)


def test_table_shows_floats_to_their_meaningful_digits(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FLOAT to its own shortest digits, whole doubles with their ``.0``, no exponent on a small price, floats
    inside a list alike; integers and decimals as they are."""
    sql = ("select 586.3677::double * 0.1 as adjusted, 0.1::float as single, 100::double as whole, "
           "1500000 as volume, 0.00001234::double as small, 1e21::double as huge, [0.1::double + 0.2, null] as list, "
           "'nan'::double as nan, 1.10 as exact")
    assert run(store, sql) == 0
    assert table_cells(capsys.readouterr().out) == [
        ["58.63677", "0.1", "100.0", "1500000", "0.00001234", "1e+21", "[0.3, None]", "nan", "1.10"],
    ]


def test_output_file_format_from_suffix(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out.parquet"
    assert run(store, "select * from bars_1min where symbol = 'AAPL'", "--output", str(target)) == 0
    assert pl.read_parquet(target).height == 960
    assert "wrote 960 row(s)" in capsys.readouterr().err


def test_index_members_join(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dataengine.storage.metadata_store import MetadataStore

    MetadataStore(store).store("dow", ["MSFT"], as_of=date(2024, 1, 2))
    sql = "select b.symbol, count(*) n from bars_1min b join index_members m using (symbol) group by 1"
    assert run(store, sql, "-f", "csv") == 0
    assert capsys.readouterr().out == "symbol,n\nMSFT,960\n"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("selec * from bars_1min", 'Error: Parser Error: syntax error at or near "selec"'),
        ("select * from bars_5min", "Error: Catalog Error: Table with name bars_5min does not exist!"),
        ("select nope from bars_1min", 'Error: Binder Error: Referenced column "nope" not found'),
        ("", "Error: query takes exactly one SQL statement, got 0"),
    ],
)
def test_bad_sql_is_one_line_exit_2(store: Path, capsys: pytest.CaptureFixture[str], sql: str, message: str) -> None:
    assert run(store, sql) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message) and captured.err.count("\n") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "copy (select 1 as timestamp) to '{part}' (format parquet)",
        "copy bars_1min to '{root}/dump.csv'",
        "explain analyze copy (select 1) to '{root}/x.csv'",
        "/* c */ explain /* c */ analyze copy (select 1) to '{root}/x.csv'",
        "select 1; copy (select 1) to '{root}/x.csv'",
        "attach '{root}/db.duckdb' as db",
        "export database '{root}/export'",
        "create table t as select 1",
        "create view bars_1min as select 1",
        "drop view bars_1min",
        "insert into bars_1min values (1)",
        "set enable_external_access = true",
        "pragma enable_profiling",
        "install httpfs",
        "load httpfs",
        "call checkpoint()",
    ],
)
def test_nothing_can_write_to_the_store(store: Path, capsys: pytest.CaptureFixture[str], statement: str) -> None:
    part = next(store.rglob("data.parquet"))
    before = snapshot(store)
    assert run(store, statement.format(root=store, part=part)) == 2
    assert snapshot(store) == before
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1


def test_reads_outside_the_store_are_refused(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    assert run(store, f"select * from read_csv('{secret}')") == 2
    assert "Permission Error" in capsys.readouterr().err


def test_explain_analyze_of_a_select_shows_pruning(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "explain analyze select sum(close) from bars_1min where symbol = 'MSFT' and year = 2024 and month = 12"
    assert run(store, sql, "-f", "csv") == 0
    plan = capsys.readouterr().out
    # the filters pushed into the scan: DuckDB 2 quotes the names (doubled by CSV: ""symbol"" = 'MSFT'), 1.5 not
    filters = plan.replace('""', "").replace(" ", "")
    assert "ARROW_SCAN" in plan and all(f in filters for f in ("symbol='MSFT'", "year=2024", "month=12")), plan


def test_output_inside_the_store_is_refused(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(store)
    assert run(store, COUNTS, "--output", str(store / "equities_1min" / "x.csv")) == 2
    assert snapshot(store) == before
    assert "inside the store" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "parquet"], "--format parquet needs --output"),
        (["--format", "xml"], "unknown format 'xml'"),
        (["--output", "out.txt"], "cannot tell the format"),
        (["--format", "table", "--output", "out.csv"], "--output needs --format csv, json or parquet"),
    ],
)
def test_format_usage_errors(store: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert run(store, COUNTS, *args) == 2
    assert message in capsys.readouterr().err


def test_missing_store_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "nowhere", COUNTS) == 2
    assert "no store at" in capsys.readouterr().err


def test_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--help"]) == 0
    assert "read-only SQL" in capsys.readouterr().out


@pytest.mark.slow
def test_installed_entry_point(store: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dataengine", "--storage-dir", str(store), "query", COUNTS, "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "symbol,n\nAAPL,960\nMSFT,960\n")
