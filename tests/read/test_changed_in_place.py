"""A tool writing over a partition's path (pandas' to_parquet, an editor) writes over the very file the versions
name: locally the two are one inode. The engines read the result as good Parquet of other bars, so a backtest
pinned to a tag read changed closes, exit 0 (a user's trial). Every read of a version now checks the files it
reads are the size the version recorded: one line naming the file, exit 1; and plain ``verify`` names the month,
which ``--repair`` fetches again (the version's copy is the same changed bytes). A read of the latest version
reads the dataset as it is now."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from dataengine import read_bars
from dataengine.errors import DamagedPartitionError
from tests.helpers import assert_store_equals, expected, read_store, run_cli

DAY = "equities_1day"
FEBRUARY = "symbol=AAPL/year=2024/month=02"
QUERY = "select sum(close) from bars_1day where symbol = 'AAPL'"


def rewrite_in_place(path: Path) -> None:
    """One close a cent higher, written over the same inode, as pandas writes (open, truncate, write)."""
    bars = pl.read_parquet(path)
    edited = bars.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.col("close") + 0.01).otherwise(pl.col("close")))
    scratch = path.with_name("edited.tmp")
    edited.write_parquet(scratch, compression="uncompressed")  # another size, as almost any rewrite has
    with path.open("r+b") as handle:
        handle.truncate(0)
        handle.write(scratch.read_bytes())
    scratch.unlink()


@pytest.fixture
def edited(alpaca, capsys, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "-q", "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-03-28", "-t", "day")
    assert code == 0, err
    assert run_cli(capsys, "tag", "paper", "--version", "0", "-t", "day")[0] == 0
    partition = tmp_path / "store" / DAY / FEBRUARY / "data.parquet"
    size = partition.stat().st_size
    rewrite_in_place(partition)
    assert partition.stat().st_size != size
    return partition


def test_a_pinned_read_of_a_file_changed_in_place_fails_naming_it(edited: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (version_file,) = (edited.parents[4] / "metadata/versions" / DAY / FEBRUARY).iterdir()
    code, out, err = run_cli(capsys, "query", QUERY, "--tag", "paper", "-t", "day")
    assert code == 1 and out == "" and version_file.name in err and "changed after it was committed" in err
    assert "cannot be mended" in err  # a pinned version's bytes: no repair brings them back
    with pytest.raises(DamagedPartitionError, match="changed after it was committed"):
        read_bars("AAPL", "2024-01-02", "2024-03-28", timeframe="day", tag="paper")
    read_bars("MSFT", "2024-01-02", "2024-03-28", timeframe="day", tag="paper")  # the other symbol reads


def test_plain_verify_names_the_month_and_repair_fetches_it(edited: Path, alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "query", QUERY, "-t", "day")[0] == 0  # the latest: the dataset as it is now
    code, out, _ = run_cli(capsys, "verify", "--json")  # no --read-data: the size says it
    assert code == 1 and [(d["month"], d["kind"]) for d in json.loads(out)["damage"]] == [(2, "altered")]
    code, out, err = run_cli(capsys, "verify", "--repair", "--json")
    report = json.loads(out)
    assert report["repaired"] == 1 and report["restored"] == 0  # the version's copy is the same changed bytes
    assert_store_equals(read_store(tmp_path / "store", DAY), expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-03-28", "1Day"))
    assert run_cli(capsys, "query", QUERY, "-t", "day")[0] == 0
    # the pinned version still names the changed file: the report says it cannot be restored, and reads of it fail
    assert code == 1 and not report["ok"] and "tag 'paper'" in " ".join(report["versions"])
    assert run_cli(capsys, "query", QUERY, "--tag", "paper", "-t", "day")[0] == 1


def test_a_query_pinned_to_a_tag_no_dataset_has_names_the_tags_there_are(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """A user's trial: read_bars and tag --delete named the tags there are; query said only that none had it."""
    assert run_cli(capsys, "-q", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31", "-t", "day")[0] == 0
    assert run_cli(capsys, "tag", "paper", "-t", "day")[0] == 0
    code, _, err = run_cli(capsys, "query", "select 1", "--tag", "papr")
    assert code == 2 and "has tag 'papr' (tags: paper)" in err
