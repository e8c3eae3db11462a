"""``dataengine verify`` on a dataset the store does not hold."""

from __future__ import annotations

from dataengine import IngestionPipeline
from tests.helpers import run_cli


def test_verify_of_a_dataset_the_store_lacks_is_exit_2_naming_those_it_holds(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: verify -t week said 'store is whole: 0 partition(s) checked', exit 0, where
    versions, gaps and show exit 2 for the same."""
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day").ok
    code, out, err = run_cli(capsys, "verify", "-t", "week")
    assert code == 2 and out == "" and err.startswith("Error: no dataset of week in ")
    assert err.endswith(" (this store holds equities_1day: name one with -t/--timeframe and --source)\n")
    code, out, _ = run_cli(capsys, "verify", "-t", "day")
    assert code == 0 and out.startswith("store is whole: 1 partition(s) checked")
