"""A version that takes in what a killed run wrote counts that run's rows (``dataengine versions`` showed '?')."""

from __future__ import annotations

from pathlib import Path

from dataengine.storage import versions as v
from tests.storage.versions_support import Store


def test_the_version_that_takes_in_a_killed_runs_partitions_counts_their_rows(tmp_path: Path) -> None:
    """A user's trial: the run resumed after a kill -9 made a version whose rows were '?' (null), because the
    killed run's partitions came in as files of unknown rows. Their footers say how many."""
    store = Store(tmp_path)
    store.run("run-1", {("AAPL", 2024, 1): [1.0, 2.0], ("MSFT", 2024, 1): [3.0]})
    v.begin_run(store.table, store.provenance("killed-run"))  # its marker, then partitions, and never a commit
    store.write("AAPL", 2024, 1, [9.0, 8.0, 7.0])  # replaces run-1's two rows
    store.write("NVDA", 2024, 1, [5.0])
    result = store.run("run-2", {("MSFT", 2024, 2): [4.0, 4.5]})
    assert (result.recovered_runs, result.partitions) == (("killed-run",), 3)
    assert (result.rows_added, result.rows_removed) == (3 + 1 + 2, 2)
    newest = v.history(store.table)[0]
    assert (newest.rows_added, newest.rows_removed) == (6, 2)
    counted = {(f.symbol, f.month): f.rows for f in v.snapshot(store.table).files()}
    assert counted == {("AAPL", 1): 3, ("MSFT", 1): 1, ("MSFT", 2): 2, ("NVDA", 1): 1}
