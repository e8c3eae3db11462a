"""Every run a version: what each version reads, through dataengine and through other engines, and what a
later run, a retry, a twin file or an old store does to it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from dataengine.storage import versions as v
from tests.storage.versions_support import Store, read_every_way, same, unique_bytes

RUN_1 = {("AAPL", 2024, 1): [1.0, 2.0, 3.0], ("MSFT", 2024, 1): [10.0, 11.0]}
RUN_2 = {("AAPL", 2024, 1): [1.5, 2.5, 3.5, 4.5], ("AAPL", 2024, 2): [5.0]}  # a re-fetch and a new month
RUN_3 = {("MSFT", 2024, 1): [9.0], ("BRK.B", 2024, 2): [400.0, 401.0]}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def three_runs(store: Store) -> dict[int, pl.DataFrame]:
    """Three runs; what the dataset directory held after each, by version."""
    seen = {}
    for run_id, partitions in (("run-1", RUN_1), ("run-2", RUN_2), ("run-3", RUN_3)):
        result = store.run(run_id, partitions)
        assert result.version is not None
        seen[result.version] = store.directory()
    return seen


def test_every_version_reads_what_its_run_left_through_every_engine(store: Store) -> None:
    seen = three_runs(store)
    assert sorted(seen) == [0, 1, 2]
    for version, expected in seen.items():
        for engine, frame in read_every_way(store.table, version).items():
            same(frame, expected, f"version {version} via {engine}")


def test_the_latest_version_is_the_dataset_directory(store: Store) -> None:
    three_runs(store)
    assert_frame_equal(read_every_way(store.table, 2)["snapshot"], store.directory())
    assert v.current_version(store.table) == 2


def test_a_rewritten_partition_leaves_the_old_version_byte_for_byte(store: Store) -> None:
    store.run("run-1", RUN_1)
    before = {f.path: hashlib.sha256((store.root / f.path).read_bytes()).hexdigest()
              for f in v.snapshot(store.table, version=0).files()}
    store.run("run-2", RUN_2)
    after = {f.path: hashlib.sha256((store.root / f.path).read_bytes()).hexdigest()
             for f in v.snapshot(store.table, version=0).files()}
    assert after == before
    old = v.snapshot(store.table, version=0).files(["AAPL"])[0]
    new = v.snapshot(store.table, version=1).files(["AAPL"], (2024, 1), (2024, 1))[0]
    assert old.path != new.path and old.path.endswith("/run-1.parquet") and new.path.endswith("/run-2.parquet")


def test_files_are_hard_links_of_the_dataset_partitions(store: Store) -> None:
    store.run("run-1", RUN_1)
    for file in v.snapshot(store.table).files():
        data = store.root / store.relpath(file.symbol, file.year, file.month)
        assert os.path.samefile(store.root / file.path, data)


def test_the_dataset_directory_holds_only_its_partitions(store: Store) -> None:
    three_runs(store)
    names = {p.name for p in (store.root / store.dataset).rglob("*") if p.is_file()}
    assert names == {"data.parquet"}
    assert store.directory().height == 4 + 1 + 1 + 2  # AAPL Jan, Feb; MSFT; BRK.B: no row counted twice


def test_identical_bytes_in_two_symbols_stay_two_files(store: Store) -> None:
    store.run("run-1", {("AAA", 2024, 1): [1.0, 2.0], ("BBB", 2024, 1): [1.0, 2.0]})
    files = v.snapshot(store.table).files()
    assert (store.root / files[0].path).read_bytes() == (store.root / files[1].path).read_bytes()
    assert [f.symbol for f in files] == ["AAA", "BBB"] and files[0].path != files[1].path
    for engine, frame in read_every_way(store.table, 0).items():
        assert frame["symbol"].to_list() == ["AAA", "AAA", "BBB", "BBB"], engine


def test_two_datasets_with_identical_bytes_keep_their_own_tables(tmp_path: Path) -> None:
    minute, daily = Store(tmp_path, "equities_1min"), Store(tmp_path, "equities_1day")
    minute.run("run-1", {("AAA", 2024, 1): [1.0]})
    daily.run("run-1", {("AAA", 2024, 1): [1.0]})
    one, two = v.snapshot(minute.table).files()[0], v.snapshot(daily.table).files()[0]
    assert one.path != two.path and not os.path.samefile(tmp_path / one.path, tmp_path / two.path)
    assert v.snapshot(minute.table).scan().collect().height == v.snapshot(daily.table).scan().collect().height == 1


def test_a_retried_commit_lands_once(store: Store) -> None:
    provenance = store.provenance("run-1")
    ticket = v.begin_run(store.table, provenance)
    changes = [store.write(*key, closes) for key, closes in RUN_1.items()]
    first = v.commit_run(store.table, ticket, changes, provenance)
    v.log.forget(store.table)  # as a new process would see it
    again = v.commit_run(store.table, ticket, changes, provenance)
    assert (first.version, again.version, again.already_committed) == (0, 0, True)
    assert again.partitions == first.partitions == 2
    assert v.current_version(store.table) == 0 and DeltaTable(store.table.uri).transaction_version("equities_1min") == 1


def test_a_retry_is_recognised_from_a_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path, checkpoint_interval=2)
    for n in range(4):
        store.run(f"run-{n}", {("AAPL", 2024, 1): [float(n)]})
    assert (tmp_path / store.table.path / "_delta_log" / f"{2:020d}.checkpoint.parquet").exists()
    provenance = store.provenance("run-2")
    v.log.forget(store.table)
    again = v.commit_run(store.table, v.RunTicket("run-2", 3), [], provenance)
    assert (again.version, again.already_committed) == (2, True)


def test_each_run_gets_a_growing_ticket(store: Store) -> None:
    tickets = []
    for n in range(3):
        provenance = store.provenance(f"run-{n}")
        tickets.append(v.begin_run(store.table, provenance).txn)
        v.commit_run(store.table, v.RunTicket(f"run-{n}", tickets[-1]), [store.write("A", 2024, 1, [n])], provenance)
    assert tickets == [1, 2, 3]
    assert v.begin_run(store.table, store.provenance("run-3")) == v.begin_run(store.table, store.provenance("run-3"))


def test_a_run_that_changes_nothing_makes_no_version(store: Store) -> None:
    store.run("run-1", RUN_1)
    assert store.run("run-2", {}).version is None
    assert v.current_version(store.table) == 0
    assert not list((store.root / store.table.path / "_dataengine" / "pending").iterdir())


def test_an_existing_store_is_adopted_as_version_0_without_a_byte_more(store: Store) -> None:
    for (symbol, year, month), closes in {**RUN_1, **RUN_3}.items():
        store.write(symbol, year, month, closes)
    before, expected = unique_bytes(store.root), store.directory()
    result = store.run("first-versioned-run", {("AAPL", 2024, 3): [7.0]})
    assert result.version == 1
    assert_frame_equal(read_every_way(store.table, 0)["scan_delta"], expected)
    assert [h.reason for h in v.history(store.table)] == ["run", "adopt"]
    assert v.history(store.table)[1].partitions == 3
    adopted = {f.path.rsplit("/", 1)[1] for f in v.snapshot(store.table, version=0).files()}
    assert adopted == {"first-versioned-run-adopt.parquet"}
    table = store.root / store.table.path
    log_bytes = unique_bytes(table / "_delta_log") + unique_bytes(table / "_dataengine")
    new_partition = (store.root / store.relpath("AAPL", 2024, 3)).stat().st_size
    assert unique_bytes(store.root) - before == log_bytes + new_partition  # links cost nothing


def test_a_new_store_starts_at_version_0(store: Store) -> None:
    assert v.current_version(store.table) is None
    assert store.run("run-1", RUN_1).version == 0
    assert [h.reason for h in v.history(store.table)] == ["run"]


def test_history_says_what_made_each_version(store: Store) -> None:
    three_runs(store)
    newest = v.history(store.table)[0]
    assert (newest.version, newest.run_id, newest.reason, newest.partitions) == (2, "run-3", "run", 2)
    assert (newest.rows_added, newest.rows_removed, newest.rows_changed) == (3, 2, 1)
    assert newest.provenance["feed"] == "sip" and newest.provenance["command"] == "dataengine ingest TEST"
    assert newest.timestamp == store.clock.now
    assert [h.version for h in v.history(store.table, limit=2)] == [2, 1]


def test_other_engines_see_the_provenance(store: Store) -> None:
    store.run("run-1", RUN_1)
    info = DeltaTable(store.table.uri).history()[0]
    assert info["dataengine"]["run_id"] == "run-1" and info["operationMetrics"]["numFiles"] == "2"


def test_a_version_as_of_a_time(store: Store) -> None:
    three_runs(store)
    times = {h.version: h.timestamp for h in v.history(store.table)}
    assert v.snapshot(store.table, as_of=times[1]).version == 1
    assert v.snapshot(store.table, as_of=times[2] - (times[2] - times[1]) / 2).version == 1
    assert v.version_at(store.table, times[2].replace(year=2030)) == 2
    with pytest.raises(v.VersionError, match="no version at"):
        v.version_at(store.table, times[0].replace(year=2000))


def test_a_version_that_does_not_exist_is_one_clear_error(store: Store) -> None:
    with pytest.raises(v.VersionError, match="no versions yet"):
        v.snapshot(store.table)
    store.run("run-1", RUN_1)
    with pytest.raises(v.VersionError, match=r"version 5 .* does not exist \(versions 0..0\)"):
        v.snapshot(store.table, version=5)


def test_checkpoints_keep_every_version_readable(tmp_path: Path) -> None:
    store = Store(tmp_path, checkpoint_interval=3)
    seen = {}
    for n in range(7):
        result = store.run(f"run-{n}", {("AAPL", 2024, 1 + n % 3): [float(n)] * (n + 1)})
        assert result.version is not None
        seen[result.version] = store.directory()
    assert json.loads((tmp_path / store.table.path / "_delta_log" / "_last_checkpoint").read_text())["version"] == 6
    for version, expected in seen.items():
        v.log.forget(store.table)
        same(read_every_way(store.table, version)["snapshot"], expected, f"version {version}")
        same(read_every_way(store.table, version)["scan_delta"], expected, f"version {version}")


def test_a_partition_the_dataset_lost_leaves_the_next_version(store: Store) -> None:
    store.run("run-1", RUN_1)
    provenance = store.provenance("repair-1", "repair")
    ticket = v.begin_run(store.table, provenance)
    gone = v.PartitionFile("MSFT", 2024, 1, path=None)
    assert v.commit_run(store.table, ticket, [gone], provenance).partitions == 1
    assert v.snapshot(store.table).frame["symbol"].to_list() == ["AAPL"]
    assert v.snapshot(store.table, version=0).frame["symbol"].to_list() == ["AAPL", "MSFT"]


def test_a_run_id_that_cannot_name_a_file_is_refused() -> None:
    with pytest.raises(v.model.UsageError, match="cannot name a version file"):
        v.Provenance("../etc")


def test_a_partition_given_twice_is_committed_once(store: Store) -> None:
    provenance = store.provenance("run-1")
    ticket = v.begin_run(store.table, provenance)
    first, last = store.write("AAPL", 2024, 1, [1.0]), store.write("AAPL", 2024, 1, [2.0, 3.0])
    assert v.commit_run(store.table, ticket, [first, last], provenance).partitions == 1
    assert v.snapshot(store.table).scan().collect()["close"].to_list() == [2.0, 3.0]


def test_a_ticket_no_version_carries_is_refused(store: Store) -> None:
    store.run("run-1", RUN_1)
    store.run("run-2", RUN_2)
    with pytest.raises(v.VersionConflictError, match="ticket 1 is behind the table"):
        v.commit_run(store.table, v.RunTicket("run-x", 1), [], store.provenance("run-x"))


def test_the_schema_of_a_first_commit_is_what_deltalake_makes_of_the_file() -> None:
    """The Delta schema comes from Polars' view of a data file (no pyarrow, no deltalake on a first run), written
    as deltalake writes it: held equal for a partition file and for every column type mapped."""
    import io
    from datetime import date, datetime, timezone

    import polars as pl

    from dataengine.storage.layout import BAR_SCHEMA
    from dataengine.storage.versions.log_write import _schema_string_by_deltalake, schema_string

    stamp = datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc)
    bars = pl.DataFrame({"timestamp": [stamp], "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0],
                         "volume": [1], "trade_count": [1], "vwap": [1.0]}, schema={k: v for k, v in BAR_SCHEMA.items() if k != "symbol"})
    other = pl.DataFrame({"i8": pl.Series([1], dtype=pl.Int8), "i16": pl.Series([1], dtype=pl.Int16),
                          "i32": pl.Series([1], dtype=pl.Int32), "f32": pl.Series([1.0], dtype=pl.Float32), "b": [True],
                          "d": [date(2024, 1, 2)], "naive": [stamp.replace(tzinfo=None)], "raw": [b"x"], "s": ["x"]})
    for frame in (bars, other):
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        assert schema_string(buffer.getvalue()) == _schema_string_by_deltalake(buffer.getvalue())
