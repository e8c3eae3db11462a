"""``dataengine gaps`` on a dataset the store does not hold."""

from __future__ import annotations

from dataengine import IngestionPipeline
from tests.helpers import run_cli


def test_gaps_of_a_dataset_the_store_lacks_is_exit_2_naming_those_it_holds(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: gaps -t 7min said 'no bars stored (this store holds ...)', exit 0, where
    show AAPL -t week exits 2 for the same. Symbols named are still judged: their history was never fetched."""
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day").ok
    code, out, err = run_cli(capsys, "gaps", "-t", "7min")
    hint = "(this store holds equities_1day: name one with -t/--timeframe and --source)"
    assert code == 2 and out == "" and err.startswith("Error: no dataset equities_7min in ") and err.endswith(f" {hint}\n")
    code, out, _ = run_cli(capsys, "gaps", "AAPL", "-t", "7min", "--start", "2024-01-02", "--end", "2024-01-05")
    assert code == 1 and "never fetched: 2024-01-02..2024-01-05" in out
