"""A commit whose first line (``commitInfo``) was lost, rebuilt by ``verify --repair``: the corporate-actions
files it names are those the lost commit named wherever the store still tells (log_provenance), and marked
inferred where it cannot, never the version before's named as if known. Real runs against the fake Alpaca
server, so the kept actions files are what runs keep."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dataengine.storage.store import open_store
from dataengine.storage.versions import VersionTable, current_version
from dataengine.storage.versions.log import forget
from dataengine.storage.versions.log_entries import read_commit_info
from tests.helpers import run_cli

DAY, MINUTE = "equities_1day", "equities_1min"


def ingest(capsys, end: str, timeframe: str = "day", start: str = "2024-01-02") -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "-q", "ingest", "AAPL", "--start", start, "--end", end, "-t", timeframe)
    assert code == 0, err


def split(alpaca, ex_date: str, ratio: int = 4) -> None:  # type: ignore[no-untyped-def]
    alpaca.announce("forward_split", symbol="AAPL", cusip="037833100", new_rate=ratio, old_rate=1,
                    ex_date=ex_date, process_date=ex_date, record_date=ex_date, payable_date=ex_date)


def provenance(root: str, dataset: str, version: int) -> dict[str, Any]:
    table = VersionTable.of(open_store(root), dataset)
    forget(table)
    return dict(read_commit_info(table, version)["dataengine"])


def lose_first_line(root: str, dataset: str, version: int) -> None:
    """The commit emptied, as a sync tool copying while a run committed leaves it: every line lost."""
    open_store(root).store.put(f"metadata/versions/{dataset}/_delta_log/{version:020d}.json", b"")


def repair(capsys) -> str:  # type: ignore[no-untyped-def]
    code, out, err = run_cli(capsys, "verify", "--repair")
    assert code == 0, out + err
    return out


@pytest.mark.parametrize("lost", ["last commit", "a commit before the last"])
def test_a_rebuilt_commit_that_brought_no_new_actions_names_the_version_befores(alpaca, capsys, backend: str,  # type: ignore[no-untyped-def]
                                                                               lost: str) -> None:
    split(alpaca, "2024-01-16")
    ingest(capsys, "2024-01-31")
    ingest(capsys, "2024-02-29")  # no new actions: version 1 names version 0's files
    if lost != "last commit":
        ingest(capsys, "2024-03-28")
    named = provenance(backend, DAY, 1)
    assert named["actions_file"] == provenance(backend, DAY, 0)["actions_file"] is not None
    lose_first_line(backend, DAY, 1)
    out = repair(capsys)
    assert "cannot be told" not in out
    rebuilt = provenance(backend, DAY, 1)
    assert rebuilt["reason"] == "repair" and "inferred" not in rebuilt["rebuilt"]
    assert (rebuilt["actions_file"], rebuilt["closes_file"]) == (named["actions_file"], named["closes_file"])


def test_a_rebuilt_last_commit_that_brought_new_actions_names_them(alpaca, capsys, backend: str) -> None:  # type: ignore[no-untyped-def]
    """The known-wrong case: the lost commit was the run that stored a new split. Its kept actions file is
    named by no other commit, and nothing else could have kept it."""
    split(alpaca, "2024-01-16")
    ingest(capsys, "2024-01-31")
    split(alpaca, "2024-02-12", ratio=2)
    ingest(capsys, "2024-02-29")
    named = provenance(backend, DAY, 1)
    assert named["actions_file"] != provenance(backend, DAY, 0)["actions_file"]
    lose_first_line(backend, DAY, 1)
    out = repair(capsys)
    assert "cannot be told" not in out
    rebuilt = provenance(backend, DAY, 1)
    assert rebuilt["actions_file"] == named["actions_file"] and "inferred" not in rebuilt["rebuilt"]
    # the dataset is as version 1 says, actions too: the repair made no version naming them again
    assert current_version(VersionTable.of(open_store(backend), DAY)) == 1


def test_the_same_runs_commit_in_another_dataset_tells_what_a_lost_commit_named(alpaca, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The minute run that stored a new split also made a version of the daily dataset naming it: that commit
    says what the lost one named, though a later minute run named the same files (which alone cannot tell
    whether the lost commit or the later one brought them)."""
    root = str(tmp_path / "store")
    split(alpaca, "2024-01-16")
    ingest(capsys, "2024-01-31")
    ingest(capsys, "2024-01-05", "minute", start="2024-01-02")
    split(alpaca, "2024-02-12", ratio=2)
    ingest(capsys, "2024-01-10", "minute", start="2024-01-08")  # minute version 1, and a version of the daily
    ingest(capsys, "2024-01-12", "minute", start="2024-01-11")  # minute version 2: the same actions
    named = provenance(root, MINUTE, 1)
    day = provenance(root, DAY, current_version(VersionTable.of(open_store(root), DAY)))  # type: ignore[arg-type]
    assert day["run_id"] == named["run_id"] and day["reason"] == "corporate-actions"
    assert named["actions_file"] != provenance(root, MINUTE, 0)["actions_file"]
    lose_first_line(root, MINUTE, 1)
    repair(capsys)
    rebuilt = provenance(root, MINUTE, 1)
    assert rebuilt["actions_file"] == named["actions_file"] and "inferred" not in rebuilt["rebuilt"]


def test_a_rebuilt_commit_whose_actions_cannot_be_told_says_so(alpaca, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """New actions between version 0 and version 2, one dataset: the lost version 1 or version 2 brought them,
    nothing left says which. The version before's are named, and the commit and the repair say it is a guess."""
    root = str(tmp_path / "store")
    split(alpaca, "2024-01-16")
    ingest(capsys, "2024-01-31")
    split(alpaca, "2024-02-12", ratio=2)
    ingest(capsys, "2024-02-29")
    ingest(capsys, "2024-03-28")
    before = provenance(root, DAY, 0)
    lose_first_line(root, DAY, 1)
    out = repair(capsys)
    assert "which corporate-actions files it named cannot be told: version 0's are named, marked inferred " \
           "(actions_file)" in out
    rebuilt = provenance(root, DAY, 1)
    assert rebuilt["rebuilt"]["inferred"] == ["actions_file"] and rebuilt["actions_file"] == before["actions_file"]
    assert rebuilt["closes_file"] == before["closes_file"]  # no dividend: no closes file, known
    code, out, _ = run_cli(capsys, "versions", "-t", "day", "--json")
    listed = json.loads(out)["versions"]
    assert code == 0 and [(v["version"], v["inferred"]) for v in listed] == [(2, []), (1, ["actions_file"]), (0, [])]
    code, out, _ = run_cli(capsys, "versions", "-t", "day")
    assert code == 0 and "(rebuilt by a repair; actions_file inferred)" in out


def test_a_kept_actions_file_no_version_names_does_not_make_them_unknown(alpaca, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A kept copy made while the lost commit's neighbours ran and named by no version (a run that died between
    keeping the actions it stored and committing): the commit after names the version before's files, so the
    lost one did too."""
    root = str(tmp_path / "store")
    split(alpaca, "2024-01-16")
    ingest(capsys, "2024-01-31")
    ingest(capsys, "2024-02-29")
    store = open_store(root).store
    named = provenance(root, DAY, 1)
    store.put("metadata/versions/_corporate_actions/actions-0123456789abcdef.parquet", store.read(named["actions_file"]))
    ingest(capsys, "2024-03-28")
    assert provenance(root, DAY, 2)["actions_file"] == named["actions_file"]
    lose_first_line(root, DAY, 1)
    out = repair(capsys)
    assert "cannot be told" not in out and provenance(root, DAY, 1)["actions_file"] == named["actions_file"]
