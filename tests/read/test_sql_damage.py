"""``dataengine query`` over a damaged partition names the file and points at ``verify --repair`` (exit 1), as
``status``, ``gaps`` and ``read_bars`` do, on a local store and on S3; a query that does not read it runs."""

from __future__ import annotations

from dataengine.storage.store import open_store
from tests.helpers import damage, run_cli

PARTITION = "equities_1day/symbol=MSFT/year=2024/month=01/data.parquet"


def test_a_query_over_a_damaged_partition_names_it_with_the_repair_hint(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-02-05", "-t", "day")
    assert code == 0, err
    damage(backend, PARTITION, b"garbage" * 10)
    code, out, err = run_cli(capsys, "query", "select count(*) from bars_1day")
    assert code == 1 and out == ""
    assert err.startswith(f"Error: damaged partition {open_store(backend) / PARTITION} (")
    assert err.rstrip().endswith("run 'dataengine verify --repair'") and len(err.strip().splitlines()) == 1
    code, out, err = run_cli(capsys, "query", "select count(*) as n from bars_1day where symbol = 'AAPL'")
    assert code == 0 and "24" in out, err
