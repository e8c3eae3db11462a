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
    (["ingest", "AAPL", "--start", "2024-02-01", "--end", "2024-01-01"], "start 2024-02-01 is after end 2024-01-01"),
    (["ingest", "AAPL", "--start", "2024-01-31T10:00", "--end", "2024-01-31T09:00"],
     "start 2024-01-31T10:00 is after end 2024-01-31T09:00"),
    (["ingest", "AAPL", "--start", "2099-01-02"], "start 2099-01-02 is in the future (now: "),
    (["ingest", "AAPL", "--start", "2099-01-02", "--end", "2099-02-01"], "start 2099-01-02 is in the future"),
    (["gaps", "AAPL", "--start", "2024-02-01", "--end", "2024-01-01"], "start 2024-02-01 is after end 2024-01-01"),
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


def test_a_semicolon_csv_is_ingested_by_its_symbol_column(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "list.csv"
    path.write_text("Symbol;Name\nAAPL;Apple\nMSFT;Microsoft\n")  # as a spreadsheet in a comma-decimal locale saves it
    code, out, err = run(capsys, "ingest-csv", str(path), "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05", "--json")
    assert code == 0, err
    assert json.loads(out)["successful"] == ["AAPL", "MSFT"]
    assert {s for r in alpaca.requests for s in r.symbols} == {"AAPL", "MSFT"}


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
    assert "  AAPL: 2024-01-02..2024-01-31\n" in out  # New York days, not the UTC instants they became


def test_a_dry_run_needs_no_keys_and_says_the_run_will(alpaca, capsys, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A new user sizing a job before signing up: the plan, and a note; the run itself is still exit 2."""
    monkeypatch.delenv("APCA_API_KEY_ID")
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    symbols = tmp_path / "list.csv"
    symbols.write_text("symbol\nAAPL\nMSFT\n")
    for argv in (["ingest", "AAPL", "MSFT"], ["ingest-csv", str(symbols)]):
        code, out, err = run(capsys, *argv, "--start", "2024-01-02", "--end", "2024-01-31", "--dry-run")
        assert code == 0 and out.startswith("dry run: 2 of 2 symbol(s) to fetch"), err
        assert "note: the run itself needs keys: Alpaca credentials missing" in err
    code, _, err = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31")
    assert code == 2 and "Alpaca credentials missing" in err and alpaca.all_requests == []


# -- options where people put them (issue 21 item 7) -----------------------------------------------------------


def test_global_options_after_the_command_work_on_every_command(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = str(tmp_path / "other")
    code, out, err = run(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05",
                         "--storage-dir", other, "-q")
    assert code == 0 and err == "" and f"store: {other}" in out  # -q after the command: nothing on stderr
    assert not store(tmp_path).exists()
    code, out, _ = run(capsys, "status", "--storage-dir", other, "--json")
    assert code == 0 and json.loads(out)["datasets"][0]["rows"] == 4
    code, out, _ = run(capsys, "index", "list", f"--storage-dir={other}", "--json")
    assert code == 0 and json.loads(out) == {"indices": []}
    code, out, _ = run(capsys, "query", "select count(*) as n from bars_1day", "--storage-dir", other, "-f", "csv")
    assert code == 0 and out == "n\n4\n"
    code, out, err = run(capsys, "gaps", "AAPL", "-t", "day", "--storage-dir", other, "-v")
    assert code == 1 and "never fetched: 2016-01-04..2023-12-29" in out and "Error" not in err


def test_verbose_and_log_file_after_the_command(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "run.log"
    code, _, err = run(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05", "-vv",
                       "--log-file", str(log))
    assert code == 0 and " DEBUG " in err and " DEBUG " in log.read_text()


def test_a_log_file_path_through_a_regular_file_says_so(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "plain").write_text("")
    for log in (tmp_path / "plain" / "x.log", tmp_path / "plain" / "sub" / "x.log"):
        code, out, err = run(capsys, "--log-file", str(log), "status")
        assert (code, out) == (2, "")
        assert err == f"Error: --log-file {log}: {tmp_path / 'plain'} is a file, not a directory\n"
    code, _, err = run(capsys, "--log-file", str(tmp_path), "status")
    assert code == 2 and err == f"Error: --log-file {tmp_path}: that is a directory; give a file name in it (e.g. dataengine.log)\n"


def test_a_commands_own_option_keeps_its_value_and_dash_dash_ends_the_search() -> None:
    import typer.main

    from dataengine.commands.global_options import hoist

    group = typer.main.get_command(app)
    assert hoist(group, None, ["ingest", "AAPL", "--storage-dir", "x", "-vq"]) == ["--storage-dir", "x", "-vq", "ingest", "AAPL"]
    assert hoist(group, None, ["-q", "ingest", "AAPL", "--start", "-v"]) == ["-q", "ingest", "AAPL", "--start", "-v"]
    assert hoist(group, None, ["query", "--", "-v"]) == ["query", "--", "-v"]
    assert hoist(group, None, ["index", "show", "x", "--config", "c.ini"]) == ["--config", "c.ini", "index", "show", "x"]
    assert hoist(group, None, ["--json", "-q", "ingest", "AAPL"]) == ["-q", "ingest", "--json", "AAPL"]


def test_json_before_the_command_is_the_command_s_json(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """``dataengine --json ingest ...`` reads as "this call in JSON": it is, not a usage error hinting --version."""
    code, out, _ = run(capsys, "--json", "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")
    assert code == 0 and json.loads(out)["successful"] == ["AAPL"]


def test_command_help_names_the_global_options(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "ingest", "-h")
    assert code == 0 and "Global options, before or after the command: --storage-dir PATH" in " ".join(out.split())


def test_since_is_start_and_days_counts_back_from_the_end(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # --days 1 is today: in the first 16 minutes of a New York day it lies wholly in the SIP delay (nothing to
    # fetch yet, next test), so this test asks as a plan with real-time SIP does
    monkeypatch.setenv("DATAENGINE_SIP_DELAY_MINUTES", "0")
    code, out, _ = run(capsys, "ingest", "AAPL", "-t", "day", "--since", "2024-01-03", "--end", "2024-01-05", "--json")
    assert code == 0 and json.loads(out)["start"] == "2024-01-03T05:00:00+00:00"
    code, out, _ = run(capsys, "ingest", "AAPL", "-t", "day", "--days", "5", "--end", "2024-01-12", "--json")
    assert code == 0 and json.loads(out)["start"] == "2024-01-08T05:00:00+00:00"  # Jan 8..12: five days
    code, out, _ = run(capsys, "ingest", "AAPL", "-t", "day", "--days", "1", "--dry-run", "--json")
    from datetime import datetime

    from dataengine.timerange import NEW_YORK, ny_midnight

    (first, _), = json.loads(out)["todo"]["AAPL"]
    assert code == 0 and first == ny_midnight(datetime.now(NEW_YORK).date()).isoformat()  # today only
    assert json.loads(out)["exit_code"] == 0  # as every --json object has


def test_days_1_inside_the_sip_delay_fetches_nothing_yet_and_exits_0(alpaca, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A cron line's --days 1 in the first 16 minutes of a New York day lies wholly in the SIP delay. It used to
    be exit 2 ("start is after the end of the range") while the same line minutes later succeeded. A delay
    longer than a day puts today inside it at any hour, without a clock."""
    monkeypatch.setenv("DATAENGINE_SIP_DELAY_MINUTES", "3000")
    code, out, err = run(capsys, "ingest", "AAPL", "ZZZZ", "-t", "minute", "--days", "1", "--json")
    result = json.loads(out)
    assert code == 0 and result["successful"] == ["AAPL", "ZZZZ"] and result["no_data"] == [], err
    assert result["rows_added"] == 0
    assert any(n.startswith("nothing to fetch yet: the range starts at") for n in result["notes"]), result["notes"]
    assert not any("already up to date" in n for n in result["notes"]) and "Traceback" not in err
    assert alpaca.requests == []
    # nothing was recorded as covered: once the delay has passed, the same line fetches today
    monkeypatch.setenv("DATAENGINE_SIP_DELAY_MINUTES", "0")
    code, out, _ = run(capsys, "ingest", "AAPL", "-t", "minute", "--days", "1", "--dry-run", "--json")
    from datetime import datetime

    from dataengine.timerange import NEW_YORK, ny_midnight

    (first, _), = json.loads(out)["todo"]["AAPL"]
    assert code == 0 and first == ny_midnight(datetime.now(NEW_YORK).date()).isoformat()


def test_days_reaching_before_the_calendar_starts_there_as_a_start_does(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: --days 100000 planned AAPL from 1753. A start before 2000-01-01, given as
    --start or as --days, is moved to the calendar's first day with the same note; nothing is fetched."""
    note = "note: start moved to 2000-01-01 New York: dataengine's NYSE calendar begins there"
    for bound in (["--days", "100000"], ["--start", "1999-01-01"]):
        code, out, err = run(capsys, "ingest", "AAPL", "-t", "day", *bound, "--dry-run", "--json")
        (first, _), = json.loads(out)["todo"]["AAPL"]
        assert code == 0 and first == "2000-01-01T05:00:00+00:00" and note in err, (bound, err)
    assert alpaca.requests == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2024-01-02", "--since", "2024-01-03"], "--start and --since both say where the range starts"),
        (["--days", "5", "--start", "2024-01-02"], "--start and --days both say where the range starts"),
        (["--days", "0"], "'--days'"),
    ],
)
def test_since_days_and_start_together_are_exit_2(alpaca, capsys, tmp_path: Path, argv: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    for command in (["ingest", "AAPL"], ["ingest-csv", "sp500-2025.csv"]):
        code, _, err = run(capsys, *command, *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not alpaca.all_requests and not store(tmp_path).exists()


# -- one rule for reading commands (issue 21 item 9) ------------------------------------------------------------

READERS = [["status"], ["status", "AAPL"], ["query", "select 1"], ["gaps"], ["gaps", "AAPL", "--repair"], ["verify"],
           ["actions"], ["index", "list"], ["index", "show", "sp500"], ["show", "AAPL"]]


@pytest.mark.parametrize("argv", READERS, ids=" ".join)
def test_every_reading_command_on_a_missing_store_is_exit_2_no_store(alpaca, capsys, tmp_path: Path, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nowhere"
    code, out, err = run(capsys, "--storage-dir", str(missing), *argv)
    assert (code, out) == (2, "")
    assert err == f"Error: no store at {missing} (nothing ingested yet? set --storage-dir, storage_dir= from Python, or DATAENGINE_STORAGE_DIR)\n"
    assert not missing.exists() and not alpaca.all_requests


# -- shell completion of option values (issue 21 item 9) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("dataengine ing", ["ingest", "ingest-csv"]),
        ("dataengine ingest AAPL --feed ", ["sip", "iex", "otc", "boats", "delayed_sip"]),
        ("dataengine ingest AAPL --timeframe m", ["minute", "month"]),
        ("dataengine ingest AAPL -t 10", ["10min", "10hour"]),
        ("dataengine ingest AAPL --adjustment s", ["split", "spin-off"]),
        ("dataengine gaps --adjustment split,", ["split,dividend", "split,spin-off"]),
        ("dataengine ingest-csv sp", ["sp500-2025.csv"]),
        ("dataengine ingest-csv mine/", ["mine/nasdaq.txt", "mine/picks.csv"]),
        ("dataengine verify -t d", ["day"]),
        ("dataengine actions --type sp", ["split", "spin_off"]),
        ("dataengine ingest AAPL --storage-dir x -t we", ["week"]),  # after a global option moved to the front
    ],
)
def test_tab_completes_option_values_and_bundled_lists(capsys, monkeypatch, tmp_path: Path, line: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    """As bash asks (the script --install-completion installs): COMP_WORDS and COMP_CWORD in the environment."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    for name in ("picks.csv", "nasdaq.txt", "notes.md"):
        (tmp_path / "mine" / name).write_text("AAPL\n")
    words = line.split()
    monkeypatch.setenv("_DATAENGINE_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(len(words) if line.endswith(" ") else len(words) - 1))
    from dataengine.cli import main

    with pytest.raises(SystemExit):
        main(words[1:] or ["--help"])
    assert sorted(capsys.readouterr().out.split()) == sorted(expected)


def test_a_command_imports_no_pydantic(tmp_path: Path) -> None:
    """typer 0.29 validates every option through a pydantic TypeAdapter: ~60 ms more for each command a user or
    cron runs (pyproject pins typer below it). In a fresh process, a whole run of the sample source and status."""
    code = ("import sys; from dataengine.cli import main; "
            "a = main(['--storage-dir', sys.argv[1], 'ingest', 'AAPL', '--source', 'sample', '-t', 'day', '--days', '5']); "
            "b = main(['--storage-dir', sys.argv[1], 'status']); "
            "print(a, b, sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'pydantic_core'}), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, str(store(tmp_path))], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().splitlines()[-1] == "0 0 []", out.stderr[-2000:]
