"""``verify --repair`` puts nothing back from a version while a killed run's marker is pending: the killed run
wrote its partitions after the latest version, so that version's copy of a month may be older than what the
store last held. A month deleted then is fetched again (and the killed run's other writes taken in), as before
versions were restored from (restore.restorable's guard)."""

from __future__ import annotations

import io
import json

import polars as pl

from dataengine.storage.run_ledger import new_run_id
from dataengine.storage.store import open_store
from dataengine.storage.versions import Provenance, VersionTable, begin_run
from dataengine.storage.versions.commit import pending_runs
from tests.alpaca_server import Universe
from tests.helpers import expected, run_cli

DAY = "equities_1day"
JANUARY = f"{DAY}/symbol=AAPL/year=2024/month=01/data.parquet"


def test_a_month_deleted_after_a_killed_run_wrote_it_is_fetched_not_put_back_from_the_older_version(  # type: ignore[no-untyped-def]
        alpaca, capsys, backend: str) -> None:
    code, _, err = run_cli(capsys, "-q", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-02-29", "-t", "day")
    assert code == 0, err
    store = open_store(backend).store
    versioned = pl.read_parquet(io.BytesIO(store.read(JANUARY)))  # what the latest version's copy holds
    # a run killed after writing January (other closes: newer than the version) and before its commit
    table = VersionTable.of(open_store(backend), DAY)
    begin_run(table, Provenance(new_run_id(), command="dataengine ingest AAPL"))
    newer = io.BytesIO()
    versioned.with_columns(pl.col("close") + 1.0).write_parquet(newer)
    store.put(JANUARY, newer.getvalue())
    assert pending_runs(table)
    store.delete(JANUARY)
    alpaca.universe = Universe(holes={"AAPL": ["2024-01-10"]})  # the vendor serves other bars than the version holds
    alpaca.reset_log()
    code, out, err = run_cli(capsys, "verify", "--repair", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"], err
    assert report["restored"] == 0 and report["repaired"] == 1  # fetched, not put back
    assert any("/bars" in r.path for r in alpaca.requests)
    stored = pl.read_parquet(io.BytesIO(store.read(JANUARY)))
    truth = expected(alpaca, ["AAPL"], "2024-01-02", "2024-01-31", "1Day")
    assert stored.select("timestamp", "close").equals(truth.select("timestamp", "close"))
    assert (stored.height, versioned.height) == (20, 21)  # not the version's older copy
    assert not pending_runs(table)  # the repair's commit took the killed run in
