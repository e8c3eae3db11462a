"""Corporate actions in the store and prices adjusted from raw bars, against the local Alpaca-compatible server.

The server knows a forward split, a reverse split, cash dividends (one special), a split and a dividend on
one symbol, and a rename; its raw bars jump at each split's ex-date and its ``adjustment=`` bars are computed
from the actions it knows at request time, so a test can announce a new action between two runs.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from dataengine import IngestionPipeline, Settings
from dataengine.actions.store import ActionStore
from dataengine.actions.wire import decode_actions
from dataengine.errors import TransientSourceError
from dataengine.read import connect, read_bars
from dataengine.storage.store import StorePath, open_store
from tests.alpaca_server import FakeAlpaca, raw_close_before
from tests.helpers import run_cli

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "alpaca_samples"
NY = "America/New_York"


def announce_all(server: FakeAlpaca) -> None:
    """The actions every test here starts from (fields as Alpaca sends them; ids made by the server)."""
    server.announce("forward_split", symbol="NVDA", cusip="67066G104", new_rate=4, old_rate=1,
                    ex_date="2024-02-12", process_date="2024-02-12", record_date="2024-02-07", payable_date="2024-02-09")
    server.announce("reverse_split", symbol="GE", old_cusip="369604103", new_cusip="369604301", new_rate=1, old_rate=8,
                    ex_date="2024-02-20", process_date="2024-02-20", record_date="2024-02-20", payable_date="2024-02-20")
    for ex, pay, rate, special in (("2024-02-08", "2024-02-15", 0.24, False), ("2024-03-01", "2024-03-08", 2.5, True)):
        server.announce("cash_dividend", symbol="MSFT", cusip="594918104", rate=rate, special=special, foreign=False,
                        ex_date=ex, process_date=pay, record_date=ex, payable_date=pay)
    server.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=2, old_rate=1,
                    ex_date="2024-02-14", process_date="2024-02-14", record_date="2024-02-12", payable_date="2024-02-13")
    server.announce("cash_dividend", symbol="AAPL", cusip="037833100", rate=0.5, special=False, foreign=False,
                    ex_date="2024-02-26", process_date="2024-03-05", record_date="2024-02-27", payable_date="2024-03-05")
    server.announce("name_change", old_symbol="FB", new_symbol="META", old_cusip="30303M102", new_cusip="30303M102",
                    process_date="2022-06-09")


SYMBOLS = ["AAPL", "GE", "MSFT", "NVDA"]


def root() -> StorePath:
    return open_store(Settings.load().storage_dir)


def expected_adjusted(server: FakeAlpaca, raw: pl.DataFrame, symbol: str, kind: str) -> pl.DataFrame:
    """``raw`` (one symbol, stored raw bars) times the factors docs/corporate-actions.md gives, bar by bar, computed here
    independently of dataengine: splits old/new (volume new/old), dividends 1 - D / C with C the server's raw
    close of the session before the ex-date; each bar takes every action with an ex-date after its NY day."""
    cfg = server.universe.config(symbol)
    day = raw["timestamp"].dt.convert_time_zone(NY).dt.date()
    price = pl.Series([1.0] * raw.height)
    volume = pl.Series([1.0] * raw.height)
    for a in server.universe.actions:
        if a.get("symbol") != symbol or not a.get("ex_date"):
            continue
        ex = date.fromisoformat(a["ex_date"])
        before = day < ex
        if a["type"] in ("forward_split", "reverse_split") and kind in ("split", "all"):
            price = pl.select(pl.when(before).then(price * a["old_rate"] / a["new_rate"]).otherwise(price)).to_series()
            volume = pl.select(pl.when(before).then(volume * a["new_rate"] / a["old_rate"]).otherwise(volume)).to_series()
        if a["type"] == "cash_dividend" and kind in ("dividend", "all"):
            factor = 1 - a["rate"] / raw_close_before(symbol, cfg, ex.toordinal())
            price = pl.select(pl.when(before).then(price * factor).otherwise(price)).to_series()
    return raw.with_columns(
        *[(pl.col(c) * price).alias(c) for c in ("open", "high", "low", "close", "vwap")],
        (pl.col("volume") * volume).round(0).cast(pl.Int64).alias("volume"),
    )


# -- the wire ---------------------------------------------------------------------------------------------------


def test_alpaca_py_recorded_bodies_decode_every_type_and_page_token() -> None:
    first, token = decode_actions((SAMPLES / "py_corporate_actions_page1.json").read_bytes())
    second, end = decode_actions((SAMPLES / "py_corporate_actions_page2.json").read_bytes())
    assert token and token.startswith("MDA3") and end is None
    assert first.height == 13 and second.height == 1  # one record of each of Alpaca's 13 types, none lost
    by_type = {row["type"]: row for row in first.iter_rows(named=True)}
    assert by_type["forward_split"]["symbol"] == "SRE" and by_type["forward_split"]["new_rate"] == 2
    assert by_type["reverse_split"]["old_rate"] == 50
    assert by_type["name_change"]["symbol"] == "BSAQ" and by_type["name_change"]["new_symbol"] == "VFS"
    assert by_type["unit_split"]["ex_date"] == date(2023, 3, 1)  # effective_date where there is no ex_date
    assert by_type["cash_merger"]["symbol"] == "GLOP"
    dividend = second.row(0, named=True)
    assert dividend["rate"] == 0.086928 and dividend["special"] is False and dividend["payable_date"] == date(2024, 8, 26)
    assert json.loads(dividend["raw"])["foreign"] is True  # what we do not model is kept whole
    assert first["id"].n_unique() == 13  # records without an id get a stable one from their content


def test_an_unknown_type_is_kept_and_a_malformed_page_is_a_transient_error() -> None:
    frame, _ = decode_actions(b'{"corporate_actions": {"bond_conversions": [{"symbol": "X", "process_date": "2024-01-02", "id": "a"}]}, "next_page_token": null}')
    assert frame.row(0, named=True)["type"] == "bond_conversion" and frame.row(0, named=True)["symbol"] == "X"
    with pytest.raises(TransientSourceError, match="malformed"):
        decode_actions(b'{"corporate_actions": [1, 2')


def test_the_test_server_speaks_alpaca_py_and_our_client_follows_its_pages(alpaca, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from alpaca.data.historical.corporate_actions import CorporateActionsClient
    from alpaca.data.requests import CorporateActionsRequest

    import dataengine.actions.wire as ca
    from dataengine.sources.alpaca_client import AlpacaClient

    announce_all(alpaca)
    client = CorporateActionsClient("test-key", "test-secret", url_override=alpaca.url)
    got = client.get_corporate_actions(CorporateActionsRequest(
        symbols=[*SYMBOLS, "FB"], start=date(2020, 1, 1), end=date(2024, 12, 31)))
    assert sum(len(v) for v in got.data.values()) == 7
    assert {type(x).__name__ for v in got.data.values() for x in v} == {"ForwardSplit", "ReverseSplit", "CashDividend", "NameChange"}
    alpaca.reset_log()
    monkeypatch.setattr(ca, "ACTION_PAGE_LIMIT", 2)
    ours = AlpacaClient.from_settings(Settings.load()).fetch_actions([*SYMBOLS, "FB"], date(2020, 1, 1), date(2024, 12, 31))
    assert ours.height == 7 and ours["id"].is_unique().all() and len(alpaca.action_requests) == 4  # 2 a page
    assert {r.params["start"] for r in alpaca.action_requests} == {"2020-01-01"}  # both dates always sent


# -- in the store -------------------------------------------------------------------------------------------


def test_actions_are_stored_once_across_reruns_and_a_correction_replaces_the_record(alpaca, backend) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)
    p = IngestionPipeline(max_workers=2)
    first = p.ingest_symbols([*SYMBOLS, "FB"], "2022-01-03", "2024-03-15", "day")
    assert first.ok and first.actions_new == 7  # FB's rename too: processed inside the range
    again = p.ingest_symbols([*SYMBOLS, "FB"], "2022-01-03", "2024-03-20", "day")
    assert again.ok and again.actions_new == 0
    stored = ActionStore(root()).load()
    assert stored.height == 7 and stored["id"].is_unique().all()
    special = next(a for a in alpaca.universe.actions if a.get("special"))
    alpaca.announce("cash_dividend", **{**{k: v for k, v in special.items() if k != "type"}, "rate": 2.75})
    fixed = p.ingest_symbols(["MSFT"], "2024-01-02", "2024-03-20", "day")
    stored = ActionStore(root()).load()
    assert fixed.actions_new == 1 and stored.height == 7
    assert stored.filter(pl.col("id") == special["id"])["rate"].to_list() == [2.75]
    # DuckDB and Polars read the stored file directly
    assert pl.read_parquet(f"{root()}/corporate_actions/actions.parquet").height == 7
    assert connect().sql("select count(*) from corporate_actions").fetchall() == [(7,)]


def test_a_run_that_cannot_fetch_actions_fails_those_symbols_and_loses_nothing(alpaca) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-01-31", "day").ok
    before = ActionStore(root()).load()
    alpaca.inject("503", count=50, endpoint="actions")
    result = p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day")
    assert set(result.failed) == {"AAPL", "MSFT"} and all("corporate actions" in r for r in result.failed.values())
    assert result.exit_code == 1
    assert ActionStore(root()).load().equals(before)  # nothing stored is lost
    bars = read_bars(["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "day")
    assert bars.height == 2 * len(alpaca.synthetic_bars("AAPL", "1Day", "2024-01-02", "2024-03-01"))


# -- adjusted at read time ------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeframe,wire", [("minute", "1Min"), ("day", "1Day")])
def test_local_adjustment_is_raw_times_the_factors_bar_for_bar_offline(alpaca, backend, timeframe: str, wire: str) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)
    assert IngestionPipeline(max_workers=4).ingest_symbols(SYMBOLS, "2024-02-01", "2024-03-08", timeframe).ok
    truth = {s: alpaca.synthetic_frame(s, wire, "2024-02-01T05:00:00Z", "2024-03-09T05:00:00Z") for s in SYMBOLS}
    alpaca.stop()  # no network from here on
    for kind in ("split", "dividend", "all"):
        got = read_bars(SYMBOLS, "2024-02-01", "2024-03-08", timeframe, adjustment=kind)
        for symbol in SYMBOLS:
            mine = got.filter(pl.col("symbol") == symbol).drop("symbol")
            raw = truth[symbol].filter(pl.col("timestamp") <= mine["timestamp"].max())
            want = expected_adjusted(alpaca, raw, symbol, kind)
            assert mine.height == want.height, (kind, symbol)
            for col in ("open", "high", "low", "close", "vwap"):
                assert (mine[col] - want[col]).abs().max() < 1e-9, (kind, symbol, col)  # type: ignore[operator]
            assert mine["volume"].to_list() == want["volume"].to_list(), (kind, symbol)
            assert mine["trade_count"].to_list() == raw["trade_count"].to_list()
    nvda = read_bars("NVDA", "2024-02-09", "2024-02-12", timeframe, adjustment="split")
    raw = read_bars("NVDA", "2024-02-09", "2024-02-12", timeframe)
    # the split-adjusted series has no 4x jump where the raw one does
    jump = raw["close"].tail(1)[0] / raw.filter(pl.col("timestamp").dt.convert_time_zone(NY).dt.day() == 9)["close"][-1]
    smooth = nvda["close"].tail(1)[0] / nvda.filter(pl.col("timestamp").dt.convert_time_zone(NY).dt.day() == 9)["close"][-1]
    assert jump < 0.3 and 0.8 < smooth < 1.25


def test_sql_views_give_the_same_adjusted_bars(alpaca) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "MSFT"], "2024-02-01", "2024-03-08", "day").ok
    con = connect()
    sql = con.sql("select symbol, timestamp, close, volume from raw_adjusted_all_1day order by symbol, timestamp").pl()
    local = read_bars(["AAPL", "MSFT"], "2024-02-01", "2024-03-08", "day", adjustment="all")
    assert sql.height == local.height
    assert (sql["close"] - local["close"]).abs().max() < 1e-9 and sql["volume"].to_list() == local["volume"].to_list()  # type: ignore[operator]
    factors = con.sql("select * from adjustment_factors where symbol = 'AAPL' order by ex_date").pl()
    assert factors["ex_date"].to_list() == [date(2024, 2, 14), date(2024, 2, 26)]
    assert factors["split_price_factor"].to_list() == [0.5, 1.0]


# -- datasets stored with Alpaca's adjustment stay true -------------------------------------------------------


def test_a_new_split_refetches_an_adjusted_dataset_and_never_the_raw_one(alpaca, backend, capsys) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)
    p = IngestionPipeline(max_workers=2)
    for adjustment in ("split", "raw"):
        assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-03-08", "day", adjustment=adjustment).ok
    alpaca.announce("forward_split", symbol="MSFT", cusip="594918104", new_rate=3, old_rate=1,
                    ex_date="2024-03-11", process_date="2024-03-11", record_date="2024-03-07", payable_date="2024-03-08")
    alpaca.reset_log()
    code, out, err = run_cli(capsys, "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-03-15",
                             "-t", "day", "--adjustment", "split", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["refetched"]) == ["MSFT"] and "MSFT forward_split 2024-03-11 3:1" in report["refetched"]["MSFT"]
    assert "re-fetched MSFT" in err
    adjusted = read_bars(["AAPL", "MSFT"], "2024-01-02", "2024-03-15", "day", adjustment="split", columns=["close"])
    # the stored dataset equals the server's adjusted bars now, bar for bar: MSFT's old bars on the new basis
    stored = pl.read_parquet(f"{root()}/equities_1day_split/**/*.parquet", hive_partitioning=True)
    for symbol in ("AAPL", "MSFT"):
        want = alpaca.synthetic_frame(symbol, "1Day", "2024-01-02T00:00:00Z", "2024-03-16T00:00:00Z", adjustment="split")
        mine = stored.filter(pl.col("symbol") == symbol).sort("timestamp")
        assert mine["close"].to_list() == want["close"].to_list() and mine["volume"].to_list() == want["volume"].to_list()
    assert adjusted.height > 0
    msft_starts = sorted(r.params["start"] for r in alpaca.requests if "MSFT" in r.symbols)
    assert msft_starts[0].startswith("2024-01-0")  # MSFT's whole stored range again
    from dataengine.storage.run_ledger import RunLedger

    assert list(RunLedger(root()).last(1)[-1].refetched) == ["MSFT"]
    # the raw dataset is never re-fetched for this: its next run asks only for what is new
    alpaca.reset_log()
    raw = p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-03-15", "day")
    assert raw.ok and not raw.refetched
    assert all(r.params["start"] >= "2024-03-07" for r in alpaca.requests)


# -- the CLI ----------------------------------------------------------------------------------------------------


def test_actions_command_lists_filters_updates_and_status_names_a_rename(alpaca, backend, capsys) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "FB"], "2022-06-01", "2022-06-30", "day").ok
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").ok
    code, out, err = run_cli(capsys, "actions", "AAPL")
    assert code == 0, err
    assert out.splitlines() == ["AAPL forward_split 2024-02-14 2:1", "AAPL cash_dividend 2024-02-26 $0.5 per share"]
    code, out, _ = run_cli(capsys, "actions", "--type", "split", "--json")
    assert code == 0 and [a["symbol"] for a in json.loads(out)["actions"]] == ["AAPL"]
    alpaca.reset_log()
    code, out, _ = run_cli(capsys, "actions", "MSFT", "NVDA", "GE", "--update", "--json")  # without fetching bars
    report = json.loads(out)
    assert code == 0 and report["update"]["actions_new"] == 4 and report["count"] == 4
    # no bars are stored; the only bars asked for are MSFT's daily closes before its dividends (the C of 1 - D/C)
    assert {(r.params["timeframe"], r.symbols) for r in alpaca.requests} == {("1Day", ("MSFT",))}
    assert not (root() / "equities_1day" / "symbol=MSFT").exists()
    code, out, _ = run_cli(capsys, "status", "FB")
    assert code == 0 and "renamed META on 2022-06-09" in out
    code, out, _ = run_cli(capsys, "status", "AAPL")
    assert "corporate actions: 2 stored, latest AAPL cash_dividend 2024-02-26" in out
    # none known: "never asked" and "asked, none" get different advice (a new user was told to --update again)
    code, _, err = run_cli(capsys, "actions", "ZZZ")
    assert code == 0 and err.strip() == "no corporate actions stored for these symbols (fetch them with --update)"
    code, _, err = run_cli(capsys, "actions", "ZZZ", "--update")  # right after an update: what it found, no advice to run it
    assert code == 0 and err.splitlines()[-1] == ("no corporate actions stored for these symbols: the update found none "
                                                  "(alpaca has none for them since 2016-01-01)")
    code, _, err = run_cli(capsys, "actions", "ZZZ")
    assert code == 0 and err.strip() == "no corporate actions stored for these symbols (alpaca was asked and knows none)"
    code, _, err = run_cli(capsys, "actions", "AAPL", "--type", "spin_off")  # AAPL has some, of other types
    assert code == 0 and err.strip() == "no corporate actions stored for these symbols that match --type/--start/--end"


def test_update_corporate_actions_takes_a_string_as_one_symbol(alpaca) -> None:  # type: ignore[no-untyped-def]
    announce_all(alpaca)  # "aapl" asked for A, P and L: list() of the string
    assert IngestionPipeline(max_workers=1).update_corporate_actions("aapl", "2024-01-01").ok
    assert [r.symbols for r in alpaca.action_requests] == [("AAPL",)]


def test_actions_update_that_finds_none_says_so_not_to_update(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "actions", "--update")
    assert code == 0 and err.splitlines()[-1] == ("no corporate actions stored (the store holds no symbols to fetch them "
                                                  "for: name some, e.g. dataengine actions AAPL --update)")
    assert run_cli(capsys, "ingest", "AAPL", "MSFT", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")[0] == 0
    code, _, err = run_cli(capsys, "actions", "--update")  # the user's case: the store's symbols, none announced
    assert code == 0 and err.splitlines()[-1] == ("no corporate actions stored: the update found none (alpaca has none "
                                                  "for the store's 2 symbol(s) since 2016-01-01)")


@pytest.mark.parametrize("args,message", [
    (["--type", "stock_split"], "unknown corporate action type 'stock_split'"),
    (["--start", "2024-13-01"], "--start: '2024-13-01' is not a date"),
    (["--start", "2024-03-01", "--end", "2024-02-01"], "--start 2024-03-01 is after --end 2024-02-01"),
])
def test_actions_bad_input_is_one_line_and_exit_2(alpaca, capsys, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "actions", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_read_bars_offline_needs_no_server_even_for_dividends(alpaca) -> None:  # type: ignore[no-untyped-def]
    """The close before each dividend is stored by the run: reading later needs no daily dataset."""
    announce_all(alpaca)
    assert IngestionPipeline(max_workers=2).ingest_symbols(["MSFT"], "2024-02-01", "2024-02-29", "minute").ok
    closes = pl.read_parquet((root() / "corporate_actions" / "closes.parquet").local)
    cfg = alpaca.universe.config("MSFT")
    assert dict(zip(closes["ex_date"].to_list(), closes["close"].to_list(), strict=True)) == {
        d: raw_close_before("MSFT", cfg, d.toordinal()) for d in (date(2024, 2, 8), date(2024, 3, 1))
    }
    alpaca.stop()
    assert read_bars("MSFT", "2024-02-01", "2024-02-29", "minute", adjustment="dividend").height > 0


def test_a_declared_dividend_is_found_between_its_ex_date_and_its_payment(alpaca) -> None:  # type: ignore[no-untyped-def]
    """Its process date is its payable date, weeks ahead: a run looks 90 days ahead (and, if a server refuses
    a future end, asks up to today instead of failing)."""
    from datetime import datetime, timedelta

    from dataengine.timerange import NEW_YORK

    today = datetime.now(NEW_YORK).date()  # the run's today is New York's: the machine's differs after 19:00 there
    alpaca.announce("cash_dividend", symbol="AAPL", cusip="037833100", rate=0.25, special=False, foreign=False,
                    ex_date=(today - timedelta(days=3)).isoformat(), process_date=(today + timedelta(days=20)).isoformat())
    p = IngestionPipeline(max_workers=2)
    start = (today - timedelta(days=30)).isoformat()
    assert p.ingest_symbols(["AAPL"], start, None, "day").actions_new == 1
    assert {r.params["end"] for r in alpaca.action_requests} == {(today + timedelta(days=90)).isoformat()}
    alpaca.actions_no_future = True
    alpaca.reset_log()
    again = p.ingest_symbols(["AAPL"], start, None, "day")
    assert again.ok and [r.status for r in alpaca.action_requests] == [422, 200]


# -- Massive's records ----------------------------------------------------------------------------------------

def test_massive_splits_decode_as_ratios_with_tagged_ids() -> None:
    from dataengine.actions.schema import action_source
    from dataengine.actions.wire import decode_massive_splits

    body = (b'{"results":[{"execution_date":"2020-08-31","id":"E3641","split_from":1,"split_to":4,"ticker":"AAPL"},'
            b'{"execution_date":"2022-05-20","split_from":2,"split_to":1,"ticker":"BRW"}],'
            b'"status":"OK","next_url":"https://api.massive.com/v3/reference/splits?cursor=YXA9"}')
    frame, next_url = decode_massive_splits(body)
    assert next_url == "https://api.massive.com/v3/reference/splits?cursor=YXA9"
    assert frame.select("type", "symbol", "ex_date", "old_rate", "new_rate").rows() == [
        ("forward_split", "AAPL", date(2020, 8, 31), 1.0, 4.0), ("reverse_split", "BRW", date(2022, 5, 20), 2.0, 1.0)]
    assert frame["id"][0] == "massive:E3641" and frame["id"][1].startswith("massive:sha1:")  # no id: the record's hash
    assert frame.select(action_source())["source"].to_list() == ["massive", "massive"]


def test_massive_dividends_decode_with_their_kind_and_only_usd_amounts() -> None:
    from dataengine.actions.wire import decode_massive_dividends

    body = (b'{"results":[{"cash_amount":0.22,"currency":"USD","dividend_type":"CD","ex_dividend_date":"2021-11-05",'
            b'"id":"E8e3c","pay_date":"2021-11-11","ticker":"AAPL"},{"cash_amount":1.5,"dividend_type":"SC",'
            b'"ex_dividend_date":"2023-11-10","ticker":"AAPL"},{"cash_amount":3.1,"currency":"CAD",'
            b'"dividend_type":"CD","ex_dividend_date":"2024-01-02","ticker":"SHOP"}],"status":"OK"}')
    frame, next_url = decode_massive_dividends(body)
    assert next_url is None and set(frame["type"]) == {"cash_dividend"}
    assert frame.select("rate", "special", "payable_date").rows() == [
        (0.22, False, date(2021, 11, 11)), (1.5, True, None), (None, False, None)]


@pytest.mark.parametrize("body", [b"{", b'{"status":"ERROR","error":"Unknown API Key"}', b'{"results":{"a":1}}'])
def test_a_massive_body_that_is_no_page_is_refused(body: bytes) -> None:
    from dataengine.actions.wire import decode_massive_splits

    with pytest.raises((ValueError, TypeError)):
        decode_massive_splits(body)


def test_a_range_inside_the_sip_delay_refetches_a_stale_symbol_up_to_it_and_nothing_else(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """A split found by a run whose range lies in the SIP delay (nothing to fetch yet): the split symbol's stored
    history is fetched again, ending before the range (the last minutes are not asked for), and the other symbol
    gets no request and no coverage at the range's instant (it asked Alpaca for [start, start] and recorded it)."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from dataengine.storage.coverage import CoverageLedger
    from tests.helpers import run_cli

    announce_all(alpaca)
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-03-08", "day",
                                                           adjustment="split").ok
    today = datetime.now(ZoneInfo("America/New_York")).date().isoformat()
    alpaca.announce("forward_split", symbol="MSFT", cusip="594918104", new_rate=3, old_rate=1,
                    ex_date=today, process_date=today, record_date=today, payable_date=today)
    alpaca.reset_log()
    now = datetime.now(timezone.utc)
    start, end = ((now - timedelta(minutes=m)).replace(second=0, microsecond=0) for m in (10, 5))
    code, out, err = run_cli(capsys, "ingest", "AAPL", "MSFT", "--start", start.isoformat(), "--end", end.isoformat(),
                             "-t", "day", "--adjustment", "split", "--json")
    assert code == 0, err
    assert {s for r in alpaca.requests for s in r.symbols} == {"MSFT"}  # AAPL: nothing to fetch yet
    assert all(datetime.fromisoformat(r.params["end"].replace("Z", "+00:00")) < start for r in alpaca.requests)
    pieces = CoverageLedger(root() / "metadata" / "coverage" / "equities_1day_split.jsonl").pieces()
    assert not [p for p in pieces["AAPL"] if p.end >= start]


def test_actions_update_waits_for_the_store_with_wait(alpaca, backend, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: actions --update beside a running ingest said "pass --wait to wait for it", and
    had no --wait (a cron job updating actions next to the nightly run could not wait). It has one now."""
    import threading

    from dataengine.cli import main
    from dataengine.storage.run_lock import RunLock
    from dataengine.storage.store import open_store

    holder = RunLock(open_store(backend), command="a run holding the store").acquire()
    assert main(["actions", "AAPL", "--update"]) == 3
    assert "pass --wait" in capsys.readouterr().err
    threading.Timer(1.0, holder.release).start()
    assert main(["actions", "AAPL", "--update", "--wait"]) == 0
