"""A second vendor end to end: Massive through the CLI and the Python API against its local look-alike, on a
local store and on S3; requests within ceil(bars / 50,000) per symbol; faults; datasets that never mix vendors;
each source's corporate actions applied once; the plan's limits; ``ingest-csv`` with a symbol one vendor lacks."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from dataengine import read_bars
from dataengine.storage.store import open_store
from tests.alpaca_server import FakeAlpaca
from tests.helpers import read_store, run_cli
from tests.massive_server import FakeMassive

UTC = timezone.utc
run = run_cli
JAN = ("--start", "2024-01-02", "--end", "2024-01-31")


def truth(server: FakeMassive, symbol: str, start: datetime, end: datetime, span: str = "day") -> pl.DataFrame:
    return server.synthetic_frame(symbol, 1, span, start, end).insert_column(0, pl.lit(symbol).alias("symbol"))


def test_massive_end_to_end_on_both_stores(backend: str, massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "ingest", "AAPL", "MSFT", "--source", "massive", "-t", "day",
                       "--start", "2024-01-02", "--end", "2024-03-28", "--json")
    report = json.loads(out)
    assert code == 0 and report["source"] == "massive" and report["successful"] == ["AAPL", "MSFT"]
    span = (datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 3, 29, 4, tzinfo=UTC))
    served = pl.concat([truth(massive_env, s, *span) for s in ("AAPL", "MSFT")])
    assert read_store(backend, "massive_equities_1day").select(served.columns).equals(served)
    assert read_store(backend, "equities_1day").is_empty()  # Alpaca's dataset untouched
    # one bar request per symbol (61 daily bars < 50,000) plus its splits and dividends
    assert report["requests"] == len(massive_env.requests) + len(massive_env.action_requests) == 2 + 2 * 2
    record = json.loads(open_store(backend).at("metadata/datasets/massive_equities_1day.json").read_text())
    assert (record["source"], record["feed"], record["asof"]) == ("massive", "sip", "-")
    code, out, _ = run(capsys, "status", "--json")
    assert [(d["name"], d["source"], d["rows"]) for d in json.loads(out)["datasets"]] == [("massive_equities_1day", "massive", 122)]
    assert json.loads(out)["runs"][0]["source"] == "massive"
    got = read_bars(["AAPL"], "2024-01-02", "2024-01-31", "day", storage_dir=backend, source="massive")
    assert got.drop("symbol").equals(truth(massive_env, "AAPL", span[0], datetime(2024, 2, 1, 4, tzinfo=UTC)).drop("symbol"))


def test_massive_requests_are_ceil_bars_per_50000_per_symbol_plus_actions(massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    # 57 sessions x 960 minutes = 54,720 minute bars a symbol: two pages each, whatever the workers
    code, out, _ = run(capsys, "ingest", "AAPL", "MSFT", "NVDA", "--source", "massive", "-t", "minute",
                       "--start", "2024-01-02", "--end", "2024-03-22", "--workers", "8", "--json")
    report = json.loads(out)
    per_symbol = {s: math.ceil(n / 50_000) for s, n in read_store(Path(report["storage_dir"]), "massive_equities_1min")
                  .group_by("symbol").len().iter_rows()}
    assert code == 0 and per_symbol == {"AAPL": 2, "MSFT": 2, "NVDA": 2}
    assert len(massive_env.requests) == sum(per_symbol.values()) == 6
    assert report["requests"] == 6 + len(massive_env.action_requests) == 6 + 2 * 3
    assert all(r.params.get("limit", "50000") == "50000" for r in massive_env.requests if "cursor" not in r.params)
    code, out, _ = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "minute", "--start", "2023-01-03",
                       "--end", "2024-03-22", "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["source"] == "massive" and plan["units"] == 1  # one symbol, never cut in time
    assert plan["est_requests_max"] == math.ceil(plan["est_bars_max"] / 50_000)
    # its splits and its dividends: two more at least, said beside the bars' (a user's trial on the free plan,
    # where each request is 12 s, was told ~3 and saw 9)
    assert plan["est_action_requests_min"] == 2
    code, out, _ = run(capsys, "ingest", "AAPL", "MSFT", "--source", "massive", "-t", "day", "--start", "2024-01-02",
                       "--end", "2024-01-31", "--dry-run")
    assert code == 0 and "requests and ~" in out and "(and at least 4 for corporate actions)" in out


@pytest.mark.parametrize("fault", ["429", "500", "503", "drop"])
def test_transient_faults_through_the_cli_lose_nothing(massive_env: FakeMassive, capsys, fault: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    massive_env.inject(fault, count=2, ticker="MSFT")
    code, out, _ = run(capsys, "ingest", "AAPL", "MSFT", "--source", "massive", "-t", "minute", *JAN, "--json")
    report = json.loads(out)
    assert code == 0 and report["retries"] == 2 and report["throttled"] == (2 if fault == "429" else 0)
    stored = read_store(tmp_path / "store", "massive_equities_1min")
    assert stored.group_by("symbol").len().sort("symbol")["len"].to_list() == [21 * 960, 21 * 960]  # 21 sessions


def test_a_next_url_that_loops_fails_that_symbol_alone(massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    massive_env.loop_symbol = "MSFT"  # its second page names itself as the next
    code, out, _ = run(capsys, "ingest", "AAPL", "MSFT", "--source", "massive", "-t", "minute",
                       "--start", "2024-01-02", "--end", "2024-03-22", "--json")
    report = json.loads(out)
    assert code == 1 and report["successful"] == ["AAPL"] and "repeated a next_url" in report["failed"]["MSFT"]


def test_a_wrong_key_stops_the_run_with_one_line(massive_env: FakeMassive, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MASSIVE_API_KEY", "wrong-key")
    code, _, err = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN)
    assert code == 3 and "Massive rejected the API key (HTTP 401: Unknown API Key); check MASSIVE_API_KEY" in err
    assert "wrong-key" not in err and len(massive_env.action_requests) + len(massive_env.requests) == 1


def test_a_missing_key_is_a_usage_error_before_anything(capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("DATAENGINE_MASSIVE_PLAN", "paid")
    monkeypatch.setenv("POLYGON_API_KEY", "old-name")
    code, _, err = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN)
    assert code == 2 and "Massive API key missing: set MASSIVE_API_KEY" in err and "found POLYGON_API_KEY" in err
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("option", "said"), [
    (("--feed", "iex"), "--feed iex: Massive serves sip only"),
    (("--adjustment", "split"), "--adjustment split: Massive's bars are fetched raw"),
    (("--asof", "2024-01-01"), "--asof 2024-01-01: Massive does not map renamed tickers"),
    (("--source", "polygon"), "--source: unknown source 'polygon'; choose one of: alpaca, massive, sample"),
])
def test_what_a_source_cannot_serve_is_refused_with_exit_2(massive_env: FakeMassive, capsys, option: tuple[str, str], said: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN, *option)
    assert code == 2 and said in err and not massive_env.requests


def test_a_run_into_a_dataset_of_another_source_is_refused(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN)[0] == 0
    root = tmp_path / "store"
    # the Massive dataset renamed by hand into Alpaca's place: its record still says whose bars it holds
    (root / "massive_equities_1day").rename(root / "equities_1day")
    (root / "metadata/datasets/massive_equities_1day.json").rename(root / "metadata/datasets/equities_1day.json")
    before = sorted(p.name for p in (root / "equities_1day").rglob("*"))
    code, _, err = run(capsys, "ingest", "AAPL", "-t", "day", *JAN)
    assert code == 2 and "holds massive bars (its record says so); refusing to add alpaca bars" in err and not alpaca.requests
    assert sorted(p.name for p in (root / "equities_1day").rglob("*")) == before
    # a new dataset of either source is no refusal: both vendors' minute bars side by side in one store
    assert run(capsys, "ingest", "AAPL", "-t", "minute", *JAN)[0] == 0
    assert run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "minute", *JAN)[0] == 0
    assert read_store(root, "equities_1min").height == read_store(root, "massive_equities_1min").height == 21 * 960


def test_a_split_known_from_both_sources_is_applied_once(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca.announce("forward_split", symbol="NVDA", ex_date="2024-01-10", process_date="2024-01-10", old_rate=1, new_rate=4)
    massive_env.announce_split("NVDA", "2024-01-10", 1, 4)
    for source in ("alpaca", "massive"):
        assert run(capsys, "ingest", "NVDA", "--source", source, "-t", "day", *JAN)[0] == 0
    code, out, _ = run(capsys, "actions", "NVDA", "--json")
    assert [a["source"] for a in json.loads(out)["actions"]] == ["alpaca", "massive"]  # one table, both tagged
    store = str(tmp_path / "store")
    for source in ("alpaca", "massive"):
        raw = read_bars("NVDA", "2024-01-02", "2024-01-31", "day", storage_dir=store, source=source)
        adjusted = read_bars("NVDA", "2024-01-02", "2024-01-31", "day", storage_dir=store, source=source, adjustment="split")
        before = raw["timestamp"] < datetime(2024, 1, 10, 5, tzinfo=UTC)
        assert (adjusted["close"] / raw["close"]).filter(before).round(9).unique().to_list() == [0.25]  # not 1/16
        assert (adjusted["close"] / raw["close"]).filter(~before).round(9).unique().to_list() == [1.0]
    from dataengine import connect

    con = connect(store)
    views = [con.sql(f"select close from {v} order by timestamp").pl()["close"] for v in
             ("raw_adjusted_split_1day", "massive_raw_adjusted_split_1day")]
    assert views[0].equals(views[1])  # the fakes serve the same bars, each adjusted by its own split once
    assert con.sql("select source, count(*) from corporate_actions group by source order by source").fetchall() == [
        ("alpaca", 1), ("massive", 1)]


def test_adjusting_needs_the_sources_own_actions(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "-t", "day", *JAN)[0] == 0  # Alpaca's actions of AAPL asked for
    store = tmp_path / "store"
    from dataengine.storage.parquet_storage import ParquetStorage

    frame = read_bars("AAPL", "2024-01-02", "2024-01-31", "day", storage_dir=str(store))
    ParquetStorage(str(store)).store(frame, "day", source="massive")  # Massive's bars, its actions never asked
    with pytest.raises(Exception, match=r"never fetched.*actions --update --source massive AAPL"):
        read_bars("AAPL", None, None, "day", storage_dir=str(store), source="massive", adjustment="split")


def test_ingest_csv_with_a_symbol_one_vendor_does_not_know(massive_env: FakeMassive, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    massive_env.universe.no_data = frozenset({"ZZZZ"})  # Alpaca has it (every symbol of its fake does)
    (tmp_path / "list.txt").write_text("AAPL\nZZZZ\nMSFT\n")
    code, out, err = run(capsys, "ingest-csv", str(tmp_path / "list.txt"), "--source", "massive", "-t", "day", *JAN, "--json")
    report = json.loads(out)
    assert code == 0 and report["failed"] == {} and report["no_data"] == ["ZZZZ"]
    assert "1 symbol(s) with no data at all" in err and "ZZZZ" in err


def test_the_python_api_takes_the_source(massive_env: FakeMassive, tmp_path: Path) -> None:
    from dataengine import IngestionPipeline
    from dataengine.storage.run_ledger import RunLedger

    pipeline = IngestionPipeline(storage_dir=tmp_path / "api", progress=False)
    result = pipeline.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day", source="massive")
    assert result.ok and result.source == "massive" and result.rows_added == 4 and result.requests == 1 + 2
    assert RunLedger(tmp_path / "api").last(1)[0].source == "massive"
    from dataengine.read import current_version

    assert current_version("day", storage_dir=tmp_path / "api", source="massive") == 0
    assert "source: massive" in str(result)


def test_the_free_plan_starts_within_its_years_and_ends_before_today(massive_env: FakeMassive, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATAENGINE_MASSIVE_PLAN", "free")
    code, out, _ = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", "--dry-run", "--json")
    first = date.fromisoformat(json.loads(out)["todo"]["AAPL"][0][0][:10])
    assert code == 0 and abs((date.today() - first).days - 730) <= 2  # about two years, not from 2016
    code, _, err = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", "--start", "2016-01-04", "--dry-run")
    assert code == 0 and "start moved to" in err and "massive_history_years" in err
    code, _, err = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", "--days", "1")
    assert code == 2 and "free plan serves a day's bars once the day is over" in err and not massive_env.requests
    monkeypatch.setenv("DATAENGINE_MASSIVE_HISTORY_YEARS", "0")  # a plan with all of it
    code, out, _ = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", "--dry-run", "--json")
    assert json.loads(out)["todo"]["AAPL"][0][0].startswith("2016-01-01")


def test_a_plan_refusing_a_range_stops_the_run_with_its_words(massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    massive_env.history_from = date(2024, 1, 15)  # the plan the server knows is shorter than the setting says
    code, _, err = run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN)
    assert code == 3 and "Massive refused the request for this plan (HTTP 403)" in err


def test_gaps_versions_and_show_read_the_named_sources_dataset(alpaca: FakeAlpaca, massive_env: FakeMassive, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN)[0] == 0
    code, out, _ = run(capsys, "gaps", "AAPL", "-t", "day", "--source", "massive", "--start", "2024-01-02", "--end", "2024-01-31", "--json")
    assert json.loads(out)["dataset"] == "massive_equities_1day" and json.loads(out)["missing_sessions"] == 0
    code, out, _ = run(capsys, "versions", "-t", "day", "--source", "massive", "--json")
    assert code == 0 and json.loads(out)["versions"][0]["source"] == "massive"
    code, out, _ = run(capsys, "show", "AAPL", "--json")  # Alpaca holds none of it: the source that does
    assert code == 0 and (json.loads(out)["dataset"], json.loads(out)["source"]) == ("massive_equities_1day", "massive")
    code, _, err = run(capsys, "show", "AAPL", "--source", "alpaca")
    assert code == 2 and "datasets holding it: massive_equities_1day" in err


def test_a_damaged_partition_of_another_sources_dataset_is_named_by_every_reader(massive_env: FakeMassive, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.helpers import damage

    assert run(capsys, "ingest", "AAPL", "--source", "massive", "-t", "day", *JAN)[0] == 0
    relpath = "massive_equities_1day/symbol=AAPL/year=2024/month=01/data.parquet"
    damage(tmp_path / "store", relpath, b"not parquet")
    code, _, err = run(capsys, "query", "select count(*) from massive_bars_1day")
    assert code == 1 and relpath in err and "verify --repair" in err
    code, out, _ = run(capsys, "verify", "--source", "massive", "--json")
    assert code == 1 and json.loads(out)["damage"][0]["dataset"] == "massive_equities_1day"
    code, _, _ = run(capsys, "verify", "--repair", "--source", "massive")  # fetched again from Massive
    assert code == 0 and len(massive_env.requests) == 2


def test_after_the_daily_sample_tour_a_command_on_another_dataset_names_the_ones_stored(alpaca: FakeAlpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: after the README's tour (daily sample bars), `gaps --source sample`,
    `versions` and `tag` looked at minute bars (or Alpaca's) and said only 'no bars stored' / 'no versions'. A
    later trial: those exited 0 where show exits 2 for a dataset the store lacks; now 2 as well."""
    assert run_cli(capsys, "ingest", "AAPL", "--source", "sample", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-31")[0] == 0
    hint = "(this store holds sample_equities_1day: name one with -t/--timeframe and --source)"
    code, _, err = run_cli(capsys, "gaps", "--source", "sample")
    assert code == 2 and err.startswith("Error: no dataset sample_equities_1min in ") and err.endswith(f" {hint}\n")
    code, _, err = run_cli(capsys, "versions")
    assert code == 2 and err.startswith("Error: no dataset equities_1min in ") and err.endswith(f" {hint}\n")
    code, _, err = run_cli(capsys, "tag", "mine")
    assert code == 2 and err.strip() == f"Error: equities_1min has no versions to tag yet {hint}"
    code, out, _ = run_cli(capsys, "versions", "--source", "sample", "-t", "day")  # the right one: no hint
    assert code == 0 and "sample_equities_1day: current version 0" in out and "this store holds" not in out
