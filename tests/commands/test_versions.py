"""``dataengine tag``: pin a version under a name, and remove the name again (``--delete``)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from dataengine import IngestionPipeline
from tests.helpers import run_cli


def test_a_tag_in_use_names_the_command_that_removes_it_and_that_command_works(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The trial: 'untag it first' with no CLI way to untag (only the Python library had one)."""
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").version == 0
    assert p.ingest_symbols(["AAPL"], "2024-02-01", "2024-02-29", "day").version == 1
    store = str(tmp_path / "store")
    assert run_cli(capsys, "tag", "before", "-t", "day", "--version", "0")[0] == 0
    code, _, err = run_cli(capsys, "tag", "before", "-t", "day", "--version", "1", "--storage-dir", store)
    command = f"dataengine tag before --delete -t day --storage-dir {store}"
    assert code == 2 and err == f"Error: tag 'before' pins version 0 already (a tag never moves); remove it first: {command}\n"
    code, out, _ = run_cli(capsys, *shlex.split(command)[1:])
    assert code == 0 and out == "removed tag 'before' of equities_1day (it pinned version 0)\n"
    assert run_cli(capsys, "tag", "before", "-t", "day", "--version", "1")[0] == 0
    code, out, _ = run_cli(capsys, "versions", "-t", "day", "--json")
    assert {v["version"]: v["tags"] for v in json.loads(out)["versions"]} == {1: ["before"], 0: []}
    code, out, _ = run_cli(capsys, "tag", "before", "-d", "-t", "day", "--json")
    assert code == 0 and json.loads(out) == {"tag": "before", "dataset": "equities_1day", "version": 1, "deleted": True}


def test_deleting_a_tag_that_is_not_there_or_with_a_version_is_exit_2(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").ok
    assert run_cli(capsys, "tag", "paper", "-t", "day")[0] == 0
    code, _, err = run_cli(capsys, "tag", "nope", "--delete", "-t", "day")
    assert code == 2 and err == "Error: no tag 'nope' on equities_1day (tags: paper)\n"
    code, _, err = run_cli(capsys, "tag", "paper", "--delete", "--version", "0", "-t", "day")
    assert code == 2 and err == "Error: --delete removes the tag whatever version it pins: give no --version\n"
    code, out, _ = run_cli(capsys, "versions", "-t", "day", "--json")
    assert json.loads(out)["versions"][0]["tags"] == ["paper"]


def test_prune_with_t_prunes_only_that_dataset_and_without_it_every_one(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found by a new user's trial: versions --prune --keep-days 0 -t minute pruned every dataset (the daily one
    lost its versions) and ignored -t. Naming a dataset prunes only it; naming none prunes every one."""
    p = IngestionPipeline(max_workers=2)
    for end in ("2024-01-03", "2024-01-04"):
        assert p.ingest_symbols(["AAPL"], "2024-01-02", end, "day").ok
        assert p.ingest_symbols(["AAPL"], "2024-01-02", end, "hour").ok
    code, out, _ = run_cli(capsys, "versions", "--prune", "--keep-days", "0", "-t", "hour", "--json")
    assert code == 0 and list(json.loads(out)["datasets"]) == ["equities_1hour"]
    code, out, _ = run_cli(capsys, "versions", "-t", "day", "--json")
    assert all(v["readable"] for v in json.loads(out)["versions"])  # untouched
    code, out, _ = run_cli(capsys, "versions", "--prune", "--keep-days", "0", "--source", "alpaca", "--json")
    # --source alone: every dataset of that source (a review found it pruning the source's minute bars only)
    assert code == 0 and sorted(json.loads(out)["datasets"]) == ["equities_1day", "equities_1hour"]
    code, out, _ = run_cli(capsys, "versions", "--prune", "--keep-days", "0", "--json")
    assert code == 0 and sorted(json.loads(out)["datasets"]) == ["equities_1day", "equities_1hour"]
    code, _, err = run_cli(capsys, "versions", "--prune", "-t", "week")
    hint = "(this store holds equities_1day, equities_1hour: name one with -t/--timeframe and --source)"
    assert code == 2 and err.startswith("Error: no dataset equities_1week in ") and err.endswith(f" {hint}\n")


def test_versions_of_a_dataset_the_store_lacks_is_exit_2_naming_those_it_holds(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """The trial: versions -t week said 'no versions yet', exit 0, where show AAPL -t week exits 2."""
    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-05", "day").ok
    code, out, err = run_cli(capsys, "versions", "-t", "week")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "no dataset equities_1week in " in err and "(this store holds equities_1day: name one" in err
    code, out, _ = run_cli(capsys, "versions", "-t", "week", "--json")
    assert code == 2 and json.loads(out)["exit_code"] == 2


def test_a_refetch_that_replaced_every_value_shows_the_rows_it_added_and_removed(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    """The trial: a --full-refresh that rewrote February with new prices showed rows '+0' (the net count), which
    read as 'nothing happened', while --json said 20 rows added and 20 removed."""
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["MSFT"], "2024-02-01", "2024-02-29", "day").version == 0
    alpaca.universe.announce("forward_split", symbol="MSFT", ex_date="2024-06-10", process_date="2024-06-10",
                             new_rate=2, old_rate=1)  # raw prices before it are twice what they were
    assert p.ingest_symbols(["MSFT"], "2024-02-01", "2024-02-29", "day", full_refresh=True).version == 1
    code, out, _ = run_cli(capsys, "versions", "-t", "day")
    header, *rows = out.splitlines()[2:]
    assert code == 0 and header.split()[4:9] == ["partitions", "rows", "added", "rows", "removed"]
    assert [row.split()[3:6] for row in rows] == [["1", "+20", "-20"], ["1", "+20", "0"]]
    code, out, _ = run_cli(capsys, "versions", "-t", "day", "--json")
    replaced = json.loads(out)["versions"][0]
    assert (replaced["rows_added"], replaced["rows_removed"], replaced["rows_changed"]) == (20, 20, 0)
