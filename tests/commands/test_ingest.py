"""What ``ingest`` says on stderr when a fatal error ends the run: its ``Error:`` line (exit 3), and never a
``finished:`` line above it claiming a run that completed (a user's trial: rejected keys printed ``finished:
100% | 0/2 symbols done, 2 failed`` first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

DAYS = ("-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")
REJECTED = ("Error: Alpaca rejected the API keys (HTTP 401: unauthorized); "
            "check APCA_API_KEY_ID and APCA_API_SECRET_KEY")


def said(err: str) -> list[str]:
    """The lines of stderr without their time stamps and run ids."""
    return [line.split("] ", 1)[-1].split(" (run ")[0].split(" | run ")[0] for line in err.splitlines()]


@pytest.mark.parametrize("command", ["ingest", "ingest-csv"])
def test_rejected_keys_say_the_error_and_nothing_finished(alpaca, capsys, monkeypatch, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          command: str) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("Symbol\nAAPL\nMSFT\n")
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    code, out, err = run_cli(capsys, command, *(["AAPL", "MSFT"] if command == "ingest" else [str(listing)]), *DAYS)
    assert (code, out) == (3, "")
    assert said(err) == ["2 symbol(s): checking the store and planning", "2 symbol(s): fetching corporate actions",
                         REJECTED]


def test_keys_rejected_at_the_bars_say_the_error_and_nothing_finished(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Corporate actions fetched, the bars refused (and AAPL up to date): the run stopped, it did not finish."""
    assert run_cli(capsys, "ingest", "AAPL", *DAYS)[0] == 0
    alpaca.reject_all = (401, {"message": "unauthorized"})
    code, out, err = run_cli(capsys, "ingest", "AAPL", "MSFT", "--lag", "0", *DAYS)
    assert (code, out) == (3, "")
    assert said(err)[-2:] == ["planned 2 symbol(s) in 1 unit(s), ~4 bars at most, 1 already up to date", REJECTED]


def test_a_run_that_ends_well_still_says_finished(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAYS)
    assert code == 0 and [line for line in said(err) if line.startswith(("finished:", "stopped:"))] == [
        "finished: 100% | 1/1 symbols done, 0 failed | 4 bars | 2 requests, 0 retries, 0 throttled | elapsed 0:00:00"]
