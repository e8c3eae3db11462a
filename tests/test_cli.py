"""The installed command: exit codes, one-line errors, nothing fetched or written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataengine.cli import app
from tests.conftest import REPO
from tests.helpers import assert_store_equals, expected, read_store, run_cli


run = run_cli


def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_ingest_json_reports_the_run(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "ingest", "AAPL", "msft", "--start", "2024-01-02", "--end", "2024-01-31",
                       "--timeframe", "minute", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["successful"] == ["AAPL", "MSFT"] and report["failed"] == {}
    assert report["rows_written"] == read_store(store(tmp_path)).height > 0
    assert report["requests"] == len(alpaca.all_requests)
    assert {"elapsed_s", "rows_added", "retries", "throttled"} <= report.keys()


def test_partial_failure_exits_1_with_reason(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.invalid_symbols = frozenset({"BADX"})
    code, out, err = run(capsys, "ingest", "AAPL", "BADX", "--start", "2024-01-02", "--end", "2024-01-05",
                         "-t", "day", "--json")
    assert code == 1
    assert json.loads(out)["failed"] == {"BADX": "HTTP 400: invalid symbol: BADX"}
    assert "FAILED BADX" in err


def test_ingest_csv_bundled_list_and_index(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "ingest-csv", "sp500-2025.csv", "--index-name", "s_and_p_500",
                       "--start", "2024-01-02", "--end", "2024-01-03", "-t", "day", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert len(report["successful"]) >= 495 and "BRK.B" in report["successful"]
    assert (store(tmp_path) / "metadata" / "indices" / "s_and_p_500.csv").exists()
    assert len(alpaca.requests) == 1  # ~1,000 daily bars of 500 symbols fit in one page
    assert report["requests"] == len(alpaca.all_requests)  # with the corporate actions of 500 symbols


def test_human_summary_on_stdout(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02", "-t", "hour")
    assert code == 0 and out.startswith("1 symbol(s) done, 0 failed")


def test_bad_keys_exit_3(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_KEY_ID", "nope")
    code, _, err = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03")
    assert code == 3
    assert err.strip().splitlines()[-1] == ("Error: Alpaca rejected the API keys (HTTP 401: unauthorized); "
                           "check APCA_API_KEY_ID and APCA_API_SECRET_KEY")


def test_feed_mismatch_exit_2_names_both(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03", "--feed", "iex")[0] == 0
    code, _, err = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03", "--feed", "sip")
    assert code == 2 and "'iex'" in err and "'sip'" in err


BAD_INPUTS = [
    (["ingest", "AAPL", "--start", "2024-13-01"], "start '2024-13-01' is not a valid date"),
    (["ingest", "AAPL", "--start", "2024-02-01", "--end", "2024-01-01"], "is after end"),
    (["ingest", "AAPL", "--timeframe", "2day"], "Alpaca has no 2Day bars"),
    (["ingest", "AAPL", "--timeframe", "5m"], "unknown timeframe '5m'"),
    (["ingest", "AAPL", "--asof", "2024-13-01"], "--asof '2024-13-01' is not a date"),
    (["ingest", "AAPL", "--feed", "nasdaq"], "unknown feed 'nasdaq'"),
    (["ingest", "AAPL", "--adjustment", "splits"], "unknown adjustment 'splits'"),
    (["ingest", "AAPL", "--workers", "0"], "--workers must be at least 1"),
    (["ingest"], "Missing argument"),
    (["ingest", ""], "no symbols"),
    (["ingest-csv", "missing.csv"], "symbol file missing.csv not found"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUTS)
def test_bad_input_exit_2_one_line_nothing_sent(alpaca, capsys, tmp_path: Path, argv: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and out == ""
    assert alpaca.requests == [] and not store(tmp_path).exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\x89PNG\x00\x00binary", "binary file"), (b"Name,Sector\nApple,IT\n", "no Symbol column")],
)
def test_bad_csv_exit_2(alpaca, capsys, tmp_path: Path, content: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "list.csv"
    path.write_bytes(content)
    code, _, err = run(capsys, "ingest-csv", str(path))
    assert code == 2 and message in err and alpaca.requests == []


def test_missing_keys_exit_2(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("APCA_API_KEY_ID")
    code, _, err = run(capsys, "ingest", "AAPL")
    assert code == 2 and "APCA_API_KEY_ID and APCA_API_SECRET_KEY" in err and alpaca.requests == []


def test_malformed_settings_exit_2(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ini = tmp_path / "settings.ini"
    ini.write_text("[linux]\napi_threads = lots\n")
    code, _, err = run(capsys, "--config", str(ini), "ingest", "AAPL")
    assert code == 2 and str(ini) in err and "api_threads" in err and alpaca.requests == []


def test_bad_index_name_exit_2(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "l.txt"
    path.write_text("AAPL\n")
    code, _, err = run(capsys, "ingest-csv", str(path), "--index-name", "../evil")
    assert code == 2 and "invalid index name" in err and alpaca.requests == []


def test_every_command_has_help() -> None:
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        assert command.help, f"command {name} has no help text"


def test_installed_entry_point_runs_as_module(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [sys.executable, "-m", "dataengine", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05",
         "-t", "day", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["successful"] == ["AAPL"]
    assert_store_equals(read_store(store(tmp_path), "equities_1day"),
                        expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-05", "1Day"))


def test_json_even_when_the_run_cannot_start(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    code, out, _ = run(capsys, "ingest", "AAPL", "--json")
    report = json.loads(out)
    assert code == 2 and report["exit_code"] == 2 and "APCA_API_SECRET_KEY" in report["error"]


def test_json_of_a_fatal_run_carries_the_partial_result(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_KEY_ID", "nope")
    code, out, _ = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-03", "--json")
    report = json.loads(out)
    assert code == 3 and report["exit_code"] == 3 and report["requests"] == 1 and "rejected" in report["error"]


def test_dry_run_prints_the_plan(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-01-31", "--dry-run")
    assert code == 0 and out.startswith("dry run: 2 of 2 symbol(s) to fetch") and alpaca.requests == []
