"""What a SQL user sees of a store: its views, and none of the helper relations they are built from (a user's
trial found ``show tables`` listing ``_adjustment_factors_0``, and on S3 ``_index_members``...)."""

from __future__ import annotations

from dataengine import IngestionPipeline, read_bars
from dataengine.read.sql import connect, query
from tests.helpers import run_cli

VIEWS = ["adjustment_factors", "bars_1day", "corporate_actions", "dividend_closes", "index_members",
         "raw_adjusted_all_1day", "raw_adjusted_dividend_1day", "raw_adjusted_split_1day"]
ADJUSTED = "select timestamp, close, volume from raw_adjusted_split_1day where symbol = 'AAPL' order by timestamp"


def _store(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    """Two versions of AAPL's day bars, the first tagged before a split was known, the second with it; and an
    index list (index_members reads its CSV)."""
    p = IngestionPipeline(max_workers=1, progress=False)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    assert run_cli_ok("tag", "before", "-t", "day")
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=4, old_rate=1,
                    ex_date="2024-03-04", process_date="2024-03-04", record_date="2024-03-01", payable_date="2024-03-01")
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-03-28", "day").ok
    p.metadata.store("mine", ["AAPL"])


def run_cli_ok(*args: str) -> bool:
    from dataengine.cli import main

    return main(list(args)) == 0


def test_show_tables_lists_the_stores_views_only_and_our_tables_are_in_a_catalog_apart(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    _store(alpaca, backend)
    capsys.readouterr()
    for pinned in ((), ("--tag", "before")):
        code, out, err = run_cli(capsys, "query", "show tables", "-f", "csv", *pinned)
        assert (code, err, out.split()) == (0, "", ["name", *VIEWS])
        code, out, _ = run_cli(capsys, "query", "select table_name from information_schema.tables where "
                               "table_catalog <> '_dataengine' order by 1", "-f", "csv", *pinned)
        assert (code, out.split()) == (0, ["table_name", *VIEWS])
    with connect(read_only=True) as con:  # the Python connection's catalog too; ours apart, in _dataengine
        assert sorted(r[0] for r in con.sql("select table_name from duckdb_tables() where database_name <> '_dataengine' "
                                            "union all select view_name from duckdb_views() where not internal").fetchall()) == VIEWS
        assert con.sql("select count(*) from duckdb_tables() where database_name = '_dataengine'").fetchall()[0][0] > 0


def test_the_views_built_on_hidden_helpers_still_read_as_read_bars_does(alpaca, backend: str) -> None:  # type: ignore[no-untyped-def]
    _store(alpaca, backend)
    cols = ["timestamp", "close", "volume"]
    for pin in ({}, {"tag": "before"}):
        expected = read_bars("AAPL", timeframe="day", adjustment="split", **pin).select(cols)  # type: ignore[arg-type]
        assert query(ADJUSTED, **pin).equals(expected)  # type: ignore[arg-type]
    latest, before = query(ADJUSTED), query(ADJUSTED, tag="before")
    assert not latest.equals(before)  # each read adjusts with the actions its version was made with
    assert query("select count(*) from adjustment_factors where symbol = 'AAPL'").item() == 1
    assert query("select count(*) from adjustment_factors", tag="before").item() == 0
    assert query("select index_name, symbol from index_members").rows() == [("mine", "AAPL")]
    assert query("select count(*) from corporate_actions where symbol = 'AAPL'").item() == 1
