"""Versions through faults: a run killed before its commit, files lost or damaged under the table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataengine.storage import versions as v
from tests.conftest import REPO
from tests.storage.versions_support import Store, read_every_way, same

KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from dataengine.storage import versions as v
from tests.storage.versions_support import Store

store = Store(Path(sys.argv[1]))
provenance = store.provenance("killed-run")
ticket = v.begin_run(store.table, provenance)
changes = [store.write("AAPL", 2024, 1, [99.0, 98.0]), store.write("NVDA", 2024, 1, [50.0])]
if sys.argv[2] == "after-links":
    v.commit.link_changes(store.table, ticket.run_id, changes, v.log.read_state(store.table))
os.kill(os.getpid(), signal.SIGKILL)  # between the partition writes (and links) and the commit
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    store.run("run-1", {("AAPL", 2024, 1): [1.0, 2.0], ("MSFT", 2024, 1): [3.0]})
    return store


def kill_a_run(store: Store, stage: str) -> None:
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(store.root), stage], cwd=REPO, timeout=120)
    assert proc.returncode == -9


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["after-writes", "after-links"])
def test_a_run_killed_before_its_commit_leaves_every_version_whole(store: Store, stage: str) -> None:
    version_0 = read_every_way(store.table, 0)["snapshot"]
    kill_a_run(store, stage)
    v.log.forget(store.table)
    assert v.current_version(store.table) == 0
    for engine, frame in read_every_way(store.table, 0).items():
        same(frame, version_0, f"version 0 via {engine} after the kill")


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["after-writes", "after-links"])
def test_the_next_commit_takes_in_what_the_killed_run_wrote(store: Store, stage: str) -> None:
    kill_a_run(store, stage)
    result = store.run("run-2", {("MSFT", 2024, 2): [4.0]})
    assert (result.version, result.recovered_runs, result.partitions) == (1, ("killed-run",), 3)
    for engine, frame in read_every_way(store.table, 1).items():
        same(frame, store.directory(), f"version 1 via {engine}")
    assert v.history(store.table)[0].provenance["recovered_runs"] == ["killed-run"]
    assert not list((store.root / store.table.path / "_dataengine" / "pending").iterdir())


@pytest.mark.slow
def test_the_next_run_wins_a_partition_both_wrote(store: Store) -> None:
    kill_a_run(store, "after-links")
    store.run("run-2", {("AAPL", 2024, 1): [7.0]})
    aapl = v.snapshot(store.table).files(["AAPL"])[0]
    assert aapl.path.endswith("/run-2.parquet") and aapl.rows == 1
    same(read_every_way(store.table, 1)["snapshot"], store.directory(), "latest")


@pytest.mark.slow
def test_links_of_a_killed_run_are_pruned(store: Store) -> None:
    kill_a_run(store, "after-links")
    store.run("run-2", {})
    orphans = list((store.root / store.table.path).rglob("killed-run.parquet"))
    assert len(orphans) == 2
    v.prune(store.table, keep_days=30)
    assert not any(p.exists() for p in orphans)
    same(read_every_way(store.table, 1)["scan_delta"], store.directory(), "latest after prune")


def test_a_commit_after_a_lost_answer_is_not_made_twice(store: Store) -> None:
    provenance = store.provenance("run-2")
    ticket = v.begin_run(store.table, provenance)
    changes = [store.write("AAPL", 2024, 1, [5.0])]
    state = v.log.read_state(store.table)
    staged = v.commit.link_changes(store.table, ticket.run_id, changes, state)
    v.commit.write_version(store.table, staged, provenance, state, txn=ticket.txn)  # landed; answer lost
    v.log.forget(store.table)
    result = v.commit_run(store.table, ticket, changes, provenance)
    assert (result.version, result.already_committed) == (1, True)
    assert v.current_version(store.table) == 1


def test_two_writers_cannot_both_commit_a_version(store: Store) -> None:
    provenance = store.provenance("run-2")
    state = v.log.read_state(store.table)
    staged = v.commit.link_changes(store.table, "run-2", [store.write("AAPL", 2024, 1, [5.0])], state)
    v.commit.write_version(store.table, staged, provenance, state, txn=2)
    other = v.commit.link_changes(store.table, "run-3", [store.write("MSFT", 2024, 1, [6.0])], state)
    with pytest.raises(v.VersionConflictError, match="another writer"):
        v.commit.write_version(store.table, other, store.provenance("run-3"), state, txn=3)  # stale state: version 1 again


# -- check and mend --------------------------------------------------------------------------------------


def version_file(store: Store, symbol: str) -> Path:
    return store.root / v.snapshot(store.table).files([symbol])[0].path


def test_check_names_a_missing_file_and_one_of_another_size(store: Store) -> None:
    assert v.check(store.table) == []
    version_file(store, "AAPL").unlink()
    msft = version_file(store, "MSFT")
    msft.unlink()
    msft.write_bytes(b"not the file")
    problems = v.check(store.table)
    assert [(p.symbol, p.actual_size) for p in problems] == [("AAPL", None), ("MSFT", 12)]
    assert str(problems[0]).endswith("run-1.parquet: missing")


def test_mend_relinks_a_lost_file_from_the_dataset(store: Store) -> None:
    version_file(store, "AAPL").unlink()
    result = v.mend(store.table, store.provenance("verify-1", "repair"))
    assert (result.version, result.relinked, result.removed, result.unresolved) == (
        1, ("symbol=AAPL/year=2024/month=01",), (), ())
    assert v.check(store.table) == []
    same(read_every_way(store.table, 1)["duckdb"], store.directory(), "mended version")
    assert v.history(store.table)[0].reason == "repair"


def test_mend_drops_a_partition_the_dataset_lost_as_well(store: Store) -> None:
    version_file(store, "MSFT").unlink()
    (store.root / store.relpath("MSFT", 2024, 1)).unlink()
    result = v.mend(store.table, store.provenance("verify-1", "repair"))
    assert result.removed == ("symbol=MSFT/year=2024/month=01",)
    assert v.snapshot(store.table).frame["symbol"].to_list() == ["AAPL"]


def test_mend_says_when_the_dataset_file_is_the_damaged_one(store: Store) -> None:
    with open(store.root / store.relpath("AAPL", 2024, 1), "r+b") as handle:
        handle.truncate(10)  # in place: one inode, two names
    result = v.mend(store.table, store.provenance("verify-1", "repair"))
    assert result.version is None and [p.symbol for p in result.unresolved] == ["AAPL"]


def test_sync_brings_the_table_level_with_a_dataset_changed_outside_runs(store: Store) -> None:
    store.write("TSLA", 2024, 1, [1.0])
    os.unlink(store.root / store.relpath("MSFT", 2024, 1))
    result = v.sync(store.table, store.provenance("sync-1", "repair"))
    assert (result.version, result.partitions) == (1, 2)
    same(read_every_way(store.table, 1)["scan_delta"], store.directory(), "synced")
    assert v.sync(store.table, store.provenance("sync-2", "repair")).version is None
