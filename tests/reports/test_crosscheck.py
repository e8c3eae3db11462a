"""``dataengine verify --against SOURCE``: Alpaca's stored bars checked against Massive's (and back) through the
two look-alike servers, which serve the same synthetic bars for a symbol, so a clean comparison passes and a
planted difference is named; the store is never changed."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from tests.alpaca_server import FakeAlpaca
from tests.helpers import run_cli, store_listing
from tests.massive_server import FakeMassive

UTC = timezone.utc
run = run_cli
RANGE = ("--start", "2024-01-02", "--end", "2024-02-29")


@pytest.fixture
def stored(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys) -> FakeMassive:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "MSFT", "-t", "day", *RANGE)[0] == 0
    return massive_env


def test_the_same_bars_pass_and_nothing_is_written(stored: FakeMassive, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = store_listing(tmp_path / "store")
    code, out, _ = run(capsys, "verify", "--against", "massive")
    assert code == 0 and "equities_1day (alpaca) against massive: 4 symbol-month(s), 4 request(s), 0 beyond" in out
    assert out.count(" ok") == 4 and store_listing(tmp_path / "store") == before
    assert len(stored.requests) == 4 and not stored.action_requests  # bars only, one request a symbol-month


def test_a_planted_difference_is_named_with_exit_1(stored: FakeMassive, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stored.alter("MSFT", datetime(2024, 1, 10, 5, tzinfo=UTC), close=999.0)
    stored.drop("AAPL", datetime(2024, 2, 5, 5, tzinfo=UTC))
    before = store_listing(tmp_path / "store")
    code, out, _ = run(capsys, "verify", "--against", "massive", "--json")
    assert code == 1 and store_listing(tmp_path / "store") == before
    (check,) = json.loads(out)["checks"]
    months = {(m["symbol"], m["month"]): m for m in check["months"]}
    assert [k for k, m in months.items() if m["flagged"]] == [("AAPL", "2024-02"), ("MSFT", "2024-01")]
    assert (months["AAPL", "2024-02"]["only_stored"], months["AAPL", "2024-02"]["other"]) == (1, 19)
    msft = months["MSFT", "2024-01"]
    assert (msft["price_differs"], msft["volume_differs"], msft["matched"]) == (1, 0, 21) and msft["max_price_diff"] > 0.5
    assert msft["examples"] == [f"2024-01-10T05:00:00+00:00: close {msft_close(tmp_path)} vs 999.0"]
    code, out, _ = run(capsys, "verify", "--against", "massive", "MSFT")
    assert code == 1 and "MSFT    2024-01" in out and "DIFFERS" in out and "AAPL" not in out


def msft_close(tmp_path) -> float:  # type: ignore[no-untyped-def]
    from dataengine import read_bars

    return float(read_bars("MSFT", "2024-01-10", "2024-01-10", "day", storage_dir=str(tmp_path / "store"))["close"][0])


def test_differences_within_the_tolerances_are_reported_not_flagged(stored: FakeMassive, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    close = msft_close(tmp_path)
    stored.alter("MSFT", datetime(2024, 1, 10, 5, tzinfo=UTC), close=close * 1.001)  # 0.1 %: tapes differ slightly
    code, out, _ = run(capsys, "verify", "--against", "massive", "MSFT", "--json")
    msft = json.loads(out)["checks"][0]["months"][0]
    assert code == 0 and msft["price_differs"] == 0 and 0.0009 < msft["max_price_diff"] < 0.0011
    assert run(capsys, "verify", "--against", "massive", "MSFT", "--price-tolerance", "0.0005")[0] == 1


def test_a_few_minute_bars_in_a_month_are_within_the_share(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "-t", "minute", "--start", "2024-01-02", "--end", "2024-01-12")[0] == 0
    massive_env.drop("AAPL", datetime(2024, 1, 3, 15, 0, tzinfo=UTC))
    code, out, _ = run(capsys, "verify", "--against", "massive", "-t", "minute", "--json")
    (month,) = json.loads(out)["checks"][0]["months"]
    assert code == 0 and (month["only_stored"], month["flagged"]) == (1, False)  # 1 of 8,640 bars
    assert run(capsys, "verify", "--against", "massive", "-t", "minute", "--max-share", "0")[0] == 1


def test_a_sample_draws_the_same_months_for_the_same_seed(stored: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    picks = [[(m["symbol"], m["month"]) for m in json.loads(run(capsys, "verify", "--against", "massive", "--sample",
                                                                 "2", "--seed", seed, "--json")[1])["checks"][0]["months"]]
             for seed in ("7", "7")]
    assert len(picks[0]) == 2 and picks[0] == picks[1]


def test_massives_bars_checked_against_alpacas(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *RANGE)[0] == 0
    code, out, _ = run(capsys, "verify", "--source", "massive", "--against", "alpaca")
    assert code == 0 and "massive_equities_1day (massive) against alpaca: 2 symbol-month(s)" in out
    assert {r.params["feed"] for r in alpaca.requests} == {"sip"}


@pytest.mark.parametrize(("args", "said"), [
    (("--against", "alpaca"), "the dataset is alpaca's own"),
    (("--against", "sample"), "sample bars are synthetic"),
    (("--against", "massive", "--repair"), "not with --repair"),
    (("--against", "massive", "-t", "minute"), "no raw minute dataset of alpaca"),
])
def test_a_meaningless_comparison_is_a_usage_error(stored: FakeMassive, capsys, args: tuple[str, ...], said: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "verify", *args)
    assert code == 2 and said in err and not stored.requests


def test_without_the_other_sources_key_nothing_is_asked(stored: FakeMassive, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MASSIVE_API_KEY")
    code, _, err = run(capsys, "verify", "--against", "massive")
    assert code == 2 and "Massive API key missing" in err and not stored.requests


def test_a_check_that_compares_nothing_is_exit_2_saying_why(stored: FakeMassive, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: on the free plan every stored month was skipped, every row said "stored 0",
    and the check passed (exit 0), even with a wrong key (no request is sent): a cron check that compares
    nothing passed silently."""
    monkeypatch.setenv("DATAENGINE_MASSIVE_PLAN", "free")  # about two years back from today: 2024 is out of it
    monkeypatch.setenv("MASSIVE_API_KEY", "wrong")
    code, out, err = run(capsys, "verify", "--against", "massive", "--json")
    report = json.loads(out)
    months = report["checks"][0]["months"]
    assert (code, report["exit_code"], report["ok"], report["checks"][0]["compared"]) == (2, 2, False, 0)
    assert all(m["skipped"] for m in months) and not stored.requests
    assert {(m["symbol"], m["month"], m["stored"]) for m in months} == {  # what the store holds, not 0
        ("AAPL", "2024-01", 21), ("AAPL", "2024-02", 20), ("MSFT", "2024-01", 21), ("MSFT", "2024-02", 20)}
    assert err.count("\n") == 1 and err.startswith(
        "Error: nothing compared against massive: every one of the 4 stored symbol-month(s) was skipped (before ")
    assert "the first day massive serves on your plan: Massive's free plan serves about 2 years" in err
    assert "set massive_plan = paid, or massive_history_years" in err
    code, out, err = run(capsys, "verify", "--against", "massive")
    assert code == 2 and "AAPL    2024-01  21      -" in out and "4 skipped" in out and err.startswith("Error: nothing compared")


def test_week_bars_are_not_compared_across_vendors_and_say_why(stored: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: identical week bars were flagged on every month, because Massive stamps a week
    on its Sunday and Alpaca on its first session, so no bar met its twin. -t week is refused, saying so and
    naming the day bars to compare; without -t the day dataset is checked and the week one left out."""
    assert run(capsys, "ingest", "AAPL", "-t", "week", *RANGE)[0] == 0
    code, _, err = run(capsys, "verify", "--against", "massive", "-t", "week")
    assert code == 2 and "week bars cannot be compared across vendors" in err and "(-t day)" in err
    assert not stored.requests
    code, out, _ = run(capsys, "verify", "--against", "massive")
    assert code == 0 and "equities_1day (alpaca) against massive" in out and "equities_1week" not in out


def test_a_store_of_week_bars_only_says_why_they_are_not_compared(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "-t", "week", *RANGE)[0] == 0
    code, _, err = run(capsys, "verify", "--against", "massive")
    assert code == 2 and "week bars cannot be compared across vendors" in err and not massive_env.requests


def test_a_check_stopped_with_json_prints_one_object_naming_the_stop(stored: FakeMassive) -> None:
    """Found by a user's trial: Ctrl-C during verify --against --json gave exit 130 and an empty stdout, where
    --json promises exactly one object however the command ends."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    stored.latency_s = 3.0  # the check still runs when the signal comes, however late a loaded machine sends it
    check = subprocess.Popen([sys.executable, "-m", "dataengine", "verify", "--against", "massive", "--json"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not stored.requests:
        assert time.monotonic() < deadline and check.poll() is None, "no request came"
        time.sleep(0.02)
    check.send_signal(signal.SIGINT)
    out, err = check.communicate(timeout=60)
    result = json.loads(out)
    assert check.returncode == 130 and result["exit_code"] == 130 and result["interrupted"] and result["signal"] == "SIGINT"
    assert result["ok"] is False and "Interrupted." in err


def test_months_the_other_source_failed_are_counted_apart_from_differences(stored: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: with Massive answering 500 for MSFT, the header said "2 beyond the thresholds"
    though nothing of MSFT was compared. Failed months are counted as not compared (still exit 1)."""
    stored.inject(500, count=1000, ticker="MSFT")
    code, out, _ = run(capsys, "verify", "--against", "massive")
    assert code == 1 and ": 4 symbol-month(s), " in out
    assert "0 beyond the thresholds" in out and ", 2 not compared (massive failed: below)" in out
    assert out.count("error") >= 2 and "HTTP 500" in out


def test_an_example_names_the_source_each_bar_is_only_in(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    """A bar only the other source has was "only in the other source" beside "only in alpaca": both are named."""
    t = int(datetime(2024, 1, 10, 5, tzinfo=UTC).timestamp() * 1000)  # MSFT's 2024-01-10 day bar, midnight New York
    massive_env.dropped.add(("MSFT", t))  # stored from Massive without it; Alpaca has it
    assert run(capsys, "ingest", "MSFT", "--source", "massive", "-t", "day", *RANGE)[0] == 0
    code, out, _ = run(capsys, "verify", "--source", "massive", "--against", "alpaca", "--max-share", "0")
    assert code == 1 and "2024-01-10T05:00:00+00:00: only in alpaca" in out and "other source" not in out
