"""With the digest each version records of its files' bytes, "the same bytes" is exact: ``verify --read-data``
finds a month changed in place that still decodes (no other check can: locally the version's copy is the same
inode), and ``verify --repair`` restores from, or links back to, exactly the bytes committed, whatever the
files' times say."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from dataengine.storage.store import open_store
from dataengine.storage.versions import VersionTable, log
from tests.alpaca_server import Universe
from tests.helpers import assert_store_equals, expected, read_store, run_cli

DAY = "equities_1day"
JANUARY = "symbol=AAPL/year=2024/month=01"


def ingest(capsys, store: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "-q", "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-02-29", "-t", "day")
    assert code == 0, err
    log.forget(VersionTable.of(open_store(store), DAY))  # what the next command reads comes from the log, as in a new process


def one_cent_more(path: Path) -> None:
    """The file's first close a cent higher, written over the same inode (an editor saving in place, a sync
    tool, a bit flip that still decodes): every bar reads, the footer too, the rows are as many."""
    bars = pl.read_parquet(path)
    edited = bars.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("close") + 0.01).otherwise(pl.col("close")))
    scratch = path.with_name("edited.tmp")
    edited.write_parquet(scratch, compression="zstd")
    with path.open("r+b") as handle:
        handle.truncate(0)
        handle.write(scratch.read_bytes())
    scratch.unlink()


def version_file(store: Path) -> Path:
    (only,) = (store / "metadata/versions" / DAY / JANUARY).iterdir()
    return only


def test_read_data_finds_a_month_changed_in_place_that_still_decodes_and_repair_fetches_it(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest(capsys, tmp_path / "store")
    partition = tmp_path / "store" / DAY / JANUARY / "data.parquet"
    one_cent_more(partition)
    assert run_cli(capsys, "verify")[0] == 0  # footers only: it cannot tell
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--json")
    assert code == 1
    assert [(d["symbol"], d["month"], d["kind"]) for d in json.loads(out)["damage"]] == [("AAPL", 1, "altered")]
    code, out, _ = run_cli(capsys, "verify", "--read-data")
    assert code == 1 and "AAPL 2024-01" in out and "is not the bytes its version committed (changed in place)" in out
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--repair", "--json")
    report = json.loads(out)  # the version's copy is the same inode, the same changed bytes: fetched again
    assert code == 0 and report["ok"] and (report["repaired"], report["restored"]) == (1, 0)
    assert_store_equals(read_store(tmp_path / "store", DAY), expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "1Day"))


def test_a_version_copy_with_other_bytes_is_not_put_back(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The partition deleted, and its version's copy changed in place: it reads whole, with as many rows as
    recorded, but it is not what the run committed, so the month is fetched again instead."""
    ingest(capsys, tmp_path / "store")
    (tmp_path / "store" / DAY / JANUARY / "data.parquet").unlink()
    one_cent_more(version_file(tmp_path / "store"))
    code, out, _ = run_cli(capsys, "verify", "--repair", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and (report["repaired"], report["restored"]) == (1, 0)
    assert_store_equals(read_store(tmp_path / "store", DAY), expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-02-29", "1Day"))


def test_a_lost_version_file_is_linked_back_whatever_the_time_of_the_dataset_file(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Its bytes are the committed ones: a backup tool restoring the store with other times (or ``touch``) does
    not keep the lost file from coming back, as it did when only the times could tell."""
    ingest(capsys, tmp_path / "store")
    lost = version_file(tmp_path / "store")
    lost.unlink()
    long_ago = 946_684_800  # 2000-01-01
    os.utime(tmp_path / "store" / DAY / JANUARY / "data.parquet", (long_ago, long_ago))
    alpaca.universe = Universe(thin={"AAPL"})  # what a fetch would store instead
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "1 file(s) of version 0 of equities_1day linked back from the dataset" in out
    assert lost.exists() and run_cli(capsys, "verify", "--all-versions")[0] == 0


def test_a_lost_version_file_is_not_linked_back_from_bytes_changed_within_the_run(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The dataset's file changed by a cent, of the same size and rows, and given the time it had (inside the
    run's window, where the signs alone took it for the lost file): not the committed bytes, not linked back."""
    ingest(capsys, tmp_path / "store")
    partition = tmp_path / "store" / DAY / JANUARY / "data.parquet"
    before = partition.stat()
    one_cent_more(partition)
    os.utime(partition, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert partition.stat().st_size == before.st_size
    lost = version_file(tmp_path / "store")
    lost.unlink()
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert "linked back" not in out and not lost.exists()


def test_read_data_names_a_pinned_versions_file_changed_in_place(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A backtest pinned version 0; January was fetched anew since, so version 0's January is a file only the
    version holds. Changed in place, a pinned read returns other closes; --read-data says so, naming the tag
    (--repair cannot fetch a past version back, so the report stays not ok)."""
    ingest(capsys, tmp_path / "store")
    assert run_cli(capsys, "tag", "paper", "--version", "0", "-t", "day")[0] == 0
    (tmp_path / "store" / DAY / JANUARY / "data.parquet").unlink()  # fetched anew by the next run: version 1
    ingest(capsys, tmp_path / "store")
    (old, _) = sorted((tmp_path / "store/metadata/versions" / DAY / JANUARY).iterdir(), key=lambda p: p.stat().st_mtime_ns)
    one_cent_more(old)
    old = old.relative_to(tmp_path / "store")
    assert run_cli(capsys, "verify")[0] == 0  # sizes and footers: it cannot tell
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--json")
    report = json.loads(out)
    assert code == 1 and not report["damage"]  # the dataset's own files are whole
    assert report["versions"] == [f"{old}: not the bytes version 0 committed (changed in place; tag 'paper')"]
    assert run_cli(capsys, "tag", "paper", "--delete", "-t", "day")[0] == 0
    assert run_cli(capsys, "verify", "--read-data")[0] == 0  # an untagged older version: only --all-versions
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--all-versions")
    assert code == 1 and f"{old}: not the bytes version 0 committed (changed in place)" in out


def test_a_copied_store_whose_version_copy_changed_is_not_a_partition_replaced(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A copy of the store (cp -r: every hard link a file of its own), then the version's copy of January
    changed in place at the same size. The dataset's file is still the committed bytes, so it is not "replaced
    outside a run" (compared with the version's copy, it was); --read-data names the version's file."""
    import shutil

    ingest(capsys, tmp_path / "store")
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "store", copy)
    version_copy = version_file(copy)
    data = bytearray(version_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    version_copy.write_bytes(bytes(data))
    code, out, _ = run_cli(capsys, "verify", "--json", "--storage-dir", str(copy))
    assert code == 0 and json.loads(out)["versions"] == []
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--json", "--storage-dir", str(copy))
    named = version_copy.relative_to(copy)
    assert code == 1 and json.loads(out)["versions"] == [f"{named}: not the bytes version 0 committed (changed in place)"]


def test_a_commit_rebuilt_by_repair_keeps_the_digests_its_readable_lines_recorded(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A review's case: one torn line of a commit, rebuilt by verify --repair, dropped the digest of every file the
    commit named, so a later change in place that still decodes passed --read-data."""
    ingest(capsys, tmp_path / "store")
    commit = tmp_path / "store/metadata/versions" / DAY / "_delta_log" / f"{0:020d}.json"
    lines = commit.read_bytes().splitlines(keepends=True)
    commit.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the last add torn in half
    log.forget(VersionTable.of(open_store(tmp_path / "store"), DAY))
    code, out, _ = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "rebuilt" in out
    added = [json.loads(line)["add"] for line in commit.read_text().splitlines() if '"add"' in line]
    assert len(added) == 4 and sum(1 for add in added if "tags" in add) == 3  # the torn line's digest is lost
    log.forget(VersionTable.of(open_store(tmp_path / "store"), DAY))
    one_cent_more(tmp_path / "store" / DAY / JANUARY / "data.parquet")
    (january,) = [add for add in added if add["path"].startswith(JANUARY)]
    assert "tags" in january  # its line was readable (the torn one is MSFT's February, the last)
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--json")
    assert code == 1 and [d["kind"] for d in json.loads(out)["damage"]] == ["altered"]


def test_a_month_a_run_replaced_while_read_data_ran_is_not_called_altered(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A review's case: verify takes no lock, so a run may replace a month (as its own version) between the digests
    taken and the file read; the new bytes are not the old digest's, and every bar decodes. Not damage."""
    import dataengine.reports.verify as verifying
    from dataengine.storage.parquet_storage import ParquetStorage

    ingest(capsys, tmp_path / "store")
    taken = verifying.committed_files
    writes: list[object] = []

    def then_a_run(table):  # type: ignore[no-untyped-def]
        found = taken(table)
        if not writes:  # a legitimate writer corrects January under the run lock, a version of its own
            bars = pl.read_parquet(tmp_path / "store" / DAY / JANUARY / "data.parquet")
            writes.append(ParquetStorage(tmp_path / "store").store(bars.with_columns(symbol=pl.lit("AAPL"), close=pl.col("close") + 0.01), "day"))
        return found

    monkeypatch.setattr(verifying, "committed_files", then_a_run)
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--json")
    assert writes and code == 0 and json.loads(out)["damage"] == []


def test_a_copied_stores_rotted_file_is_put_back_not_recorded(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A user's trial: in a copy of the store (cp -r), two bytes of a partition flipped at the same size. verify
    called it "replaced outside a run" and --repair recorded the rot as the latest version ("store is whole").
    Its bytes are not the digest its version recorded: it is damage, put back from the version's copy."""
    import shutil

    ingest(capsys, tmp_path / "store")
    stored = read_store(tmp_path / "store", DAY)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "store", copy)
    partition = copy / DAY / JANUARY / "data.parquet"
    data = bytearray(partition.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 2 + 1] ^= 0xFF
    partition.write_bytes(bytes(data))
    code, out, _ = run_cli(capsys, "verify", "--json", "--storage-dir", str(copy))
    report = json.loads(out)
    assert code == 1 and [(d["symbol"], d["month"], d["kind"]) for d in report["damage"]] == [("AAPL", 1, "altered")]
    assert not [v for v in report["versions"] if "replaced outside a run" in v]
    code, out, _ = run_cli(capsys, "verify", "--repair", "--json", "--storage-dir", str(copy))
    report = json.loads(out)
    assert code == 0 and report["ok"] and (report["repaired"], report["restored"]) == (1, 1)
    assert_store_equals(read_store(copy, DAY), stored)
