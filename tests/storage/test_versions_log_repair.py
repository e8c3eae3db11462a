"""A version table's Delta log damaged by something else (a disk, a sync tool, a hand): readers say one line
naming the file, check_log names it, and mend_log rebuilds every version bar for bar, read by every engine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from dataengine.storage import versions as v
from tests.storage.versions_support import Store, read_every_way, same

RUNS = [  # seven runs over three symbols: every partition changed by some, kept by others
    {("AAPL", 2024, 1): [1.0, 2.0], ("MSFT", 2024, 1): [3.0]},
    {("AAPL", 2024, 2): [4.0]},
    {("MSFT", 2024, 1): [5.0, 6.0], ("NVDA", 2024, 1): [7.0]},
    {("AAPL", 2024, 1): [8.0], ("AAPL", 2024, 3): [9.0]},
    {("NVDA", 2024, 1): [10.0], ("MSFT", 2024, 2): [11.0]},
    {("AAPL", 2024, 2): [12.0, 13.0]},
    {("MSFT", 2024, 1): [14.0]},
]
ASIDE = "metadata/quarantine/20250101T000000Z"


def build(root: Path, checkpoint_interval: int) -> tuple[Store, dict[int, pl.DataFrame], list[str | None]]:
    store = Store(root, checkpoint_interval=checkpoint_interval)
    for number, partitions in enumerate(RUNS):
        store.run(f"run-{number}", partitions)
    versions = {n: v.snapshot(store.table, version=n).scan().collect() for n in range(len(RUNS))}
    return store, versions, [info.run_id for info in v.history(store.table)]


def commit_file(store: Store, version: int) -> Path:
    return store.root / store.table.path / "_delta_log" / f"{version:020d}.json"


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def keep_first_lines(path: Path) -> None:  # cut at a line's end: every line left is a valid action
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))


def flip_a_byte_of_the_last_line(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x55  # the last closing brace
    path.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "cut in half": cut_in_half, "cut at a line's end": keep_first_lines, "a byte flipped": flip_a_byte_of_the_last_line,
    "emptied": lambda path: path.write_bytes(b""), "deleted": Path.unlink,
}


def assert_every_version_as_before(store: Store, versions: dict[int, pl.DataFrame]) -> None:
    v.log.forget(store.table)
    assert v.check_log(store.table) == [] and v.check(store.table) == []
    for number, frame in versions.items():
        for engine, read in read_every_way(store.table, number).items():
            same(read, read_every_way_reference(frame), f"version {number} via {engine} after the repair")


def read_every_way_reference(frame: pl.DataFrame) -> pl.DataFrame:
    from tests.storage.versions_support import normal

    return normal(frame)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize(("interval", "damaged"), [(100, 6), (100, 2), (3, 1), (3, 3)],
                         ids=["last commit", "old commit, no checkpoint after it", "old commit, a checkpoint after it",
                              "the commit a checkpoint was made at"])
def test_a_damaged_commit_is_named_and_rebuilt_with_every_version_as_it_was(tmp_path: Path, interval: int, damaged: int,
                                                                            damage: str) -> None:
    store, versions, runs = build(tmp_path, interval)
    if damage == "deleted" and damaged == len(RUNS) - 1:
        pytest.skip("a deleted last commit is no damage: the table is one version shorter, as after a crash")
    DAMAGE[damage](commit_file(store, damaged))
    v.log.forget(store.table)
    problems = v.check_log(store.table)
    assert [(p.kind, p.version) for p in problems] == [("commit", damaged)], problems
    assert str(problems[0]).startswith(f"{store.table.path}/_delta_log/{damaged:020d}.json: damaged version log (")
    notes = v.mend_log(store.table, store.provenance("repair-1", "repair"), ASIDE)
    assert len(notes) == 1 and f"{damaged:020d}.json: rebuilt" in notes[0]
    assert_every_version_as_before(store, versions)
    if damage != "deleted":
        assert (store.root / ASIDE / store.table.path / "_delta_log" / f"{damaged:020d}.json").exists()
    history = [info.run_id for info in v.history(store.table)]
    lost_first_line = damage in ("emptied", "deleted") or (damage == "cut in half" and len(RUNS[damaged]) < 3)
    assert history == runs or (lost_first_line and history[len(RUNS) - 1 - damaged] == "repair-1")
    store.run("run-next", {("TSLA", 2024, 1): [1.0]})  # the table takes commits again
    assert v.current_version(store.table) == len(RUNS)


def test_readers_of_a_damaged_commit_say_one_line_naming_it(tmp_path: Path) -> None:
    store, _, _ = build(tmp_path, 100)
    cut_in_half(commit_file(store, 2))
    v.log.forget(store.table)
    for read in (lambda: v.snapshot(store.table), lambda: v.snapshot(store.table, version=4)):
        with pytest.raises(v.DamagedLogError, match=r"damaged version log file .*00000000000000000002\.json .*"
                                                    r"run 'dataengine verify --repair'"):
            read()
    assert v.snapshot(store.table, version=1).version == 1  # versions before it still read


def test_a_damaged_checkpoint_costs_only_speed_and_is_written_anew(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, versions, _ = build(tmp_path, 3)
    (store.root / store.table.path / "_delta_log" / f"{6:020d}.checkpoint.parquet").write_bytes(b"PAR1 garbage")
    v.log.forget(store.table)
    with caplog.at_level(logging.WARNING):
        same(read_every_way_reference(v.snapshot(store.table).scan().collect()), read_every_way_reference(versions[6]),
             "the latest version, read from the commits")
    assert "00000000000000000006.checkpoint.parquet" in caplog.text and "replaying the commits before it" in caplog.text
    assert [p.kind for p in v.check_log(store.table)] == ["checkpoint"]
    notes = v.mend_log(store.table, store.provenance("repair-1", "repair"), ASIDE)
    assert len(notes) == 1 and "a new checkpoint of the latest version written" in notes[0]
    assert_every_version_as_before(store, versions)


def test_a_checkpoint_hint_naming_no_checkpoint_is_set_aside(tmp_path: Path) -> None:
    store, versions, _ = build(tmp_path, 3)
    (store.root / store.table.path / "_delta_log" / "_last_checkpoint").write_text('{"version": 5, "size": 1}')
    assert [(p.kind, p.detail) for p in v.check_log(store.table)] == [
        ("hint", "names checkpoint 00000000000000000005.checkpoint.parquet, which is not there")]
    v.mend_log(store.table, store.provenance("repair-1", "repair"), ASIDE)
    assert_every_version_as_before(store, versions)


def test_a_rebuilt_last_commit_leaves_a_dead_runs_writes_to_the_next_commit(tmp_path: Path) -> None:
    """The dataset changed after the damaged commit without a commit of its own (a run that died) and the
    commit lost its add of that very partition: its run's file in the table says what it named, and the next
    commit takes the dead run's partition in."""
    store, versions, _ = build(tmp_path, 100)
    ticket = v.begin_run(store.table, store.provenance("dead-run"))
    store.write("MSFT", 2024, 1, [99.0])  # written, never committed
    keep_first_lines(commit_file(store, 6))  # run 6's only add, of MSFT 2024-01, is lost
    v.log.forget(store.table)
    v.mend_log(store.table, store.provenance("repair-1", "repair"), ASIDE)
    same(read_every_way(store.table, 6)["scan_delta"], read_every_way_reference(versions[6]), "version 6")
    assert ticket.txn > 0 and v.sync(store.table, store.provenance("sync-1", "repair")).version == 7
    same(read_every_way(store.table, 7)["snapshot"], store.directory(), "version 7: the dataset")


def test_a_rebuilt_commit_whose_first_line_is_lost_keeps_what_the_dataset_is_from_the_version_before(tmp_path: Path) -> None:
    """Its feed, adjustment, asof and the corporate actions it read come from version N-1's commitInfo: rebuilt
    with the repair's own (none), a verify --repair's next sync saw the actions unnamed and made an empty
    'repair' version, and the version said feed and adjustment null (a user's trial)."""
    store, _, _ = build(tmp_path, 100)
    last = len(RUNS) - 1
    earlier = v.log_entries.read_commit_info(store.table, last - 1)["dataengine"]
    commit_file(store, last).write_bytes(b"")
    v.log.forget(store.table)
    v.mend_log(store.table, v.Provenance("repair-1", reason="repair", command="verify --repair"), ASIDE)
    rebuilt = v.log_entries.read_commit_info(store.table, last)["dataengine"]
    assert rebuilt["reason"] == "repair" and rebuilt["run_id"] == "repair-1"
    assert {k: rebuilt[k] for k in ("source", "feed", "adjustment", "asof")} == {
        k: earlier[k] for k in ("source", "feed", "adjustment", "asof")} and earlier["feed"] == "sip"
