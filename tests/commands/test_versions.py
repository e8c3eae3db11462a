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
