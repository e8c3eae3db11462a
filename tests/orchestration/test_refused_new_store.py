"""A run refused by the source (keys rejected) before it stored anything leaves no store where there was none
(a user's trial found an empty store made at a mistyped path by a run with a bad key); a store that existed
keeps everything it held, and the refused run's ledger record."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.storage.run_ledger import RunLedger
from tests.helpers import run_cli, store_listing

DAYS = ("-t", "day", "--start", "2024-01-02", "--end", "2024-01-05")
REJECTED = ("Error: Alpaca rejected the API keys (HTTP 401: unauthorized); "
            "check APCA_API_KEY_ID and APCA_API_SECRET_KEY")


def _nothing_at(root: str) -> bool:
    return store_listing(root) == [] and (root.startswith("s3://") or not Path(root).exists())


@pytest.mark.parametrize("command", [("ingest", "AAPL", *DAYS), ("ingest", "AAPL", "--adjustment", "all", *DAYS),
                                     ("actions", "--update", "AAPL")])
def test_keys_rejected_on_a_new_store_leave_nothing_at_its_path(alpaca, backend: str, capsys, monkeypatch,  # type: ignore[no-untyped-def]
                                                                command: tuple[str, ...]) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    code, _, err = run_cli(capsys, *command)
    assert (code, err.strip().splitlines()[-1]) == (3, REJECTED) and "new store" not in err and "ERROR" not in err
    assert _nothing_at(backend)
    monkeypatch.setenv("APCA_API_KEY_ID", "test-key")  # the same command, keys fixed: the store is made then
    assert run_cli(capsys, *command)[0] == 0 and store_listing(backend)


def test_a_source_that_cannot_be_reached_leaves_no_store_either(alpaca, capsys, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_DATA_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "0")
    code, _, err = run_cli(capsys, "ingest", "AAPL", *DAYS)
    assert code == 3 and "cannot reach http://127.0.0.1:9" in err and not (tmp_path / "store").exists()


def test_an_empty_directory_given_for_the_store_is_left_as_it_was(alpaca, capsys, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "store"
    (root / ".keep").mkdir(parents=True)
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    assert run_cli(capsys, "ingest", "AAPL", *DAYS)[0] == 3
    assert sorted(p.name for p in root.rglob("*")) == [".keep"]


def test_a_store_that_existed_keeps_what_it_held_and_records_the_refused_run(alpaca, backend: str, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(capsys, "ingest", "AAPL", *DAYS)[0] == 0
    before = [(name, data) for name, data in store_listing(backend) if "runs" not in name and "run.lock" not in name]
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    assert run_cli(capsys, "ingest", "MSFT", *DAYS)[0] == 3
    after = dict(store_listing(backend))
    assert all(after.get(name) == data for name, data in before)
    assert [r.exit_code for r in RunLedger(backend).all()] == [0, 3]


def test_a_lock_file_taken_away_with_its_store_is_never_held_twice(tmp_path: Path) -> None:
    """The refused run deletes the lock file while it holds it. A run that opened the file just before (a
    waiting run's next attempt) must lock the file the name holds now, not the deleted one: else a third run
    would lock a new file of the same name beside it, and two runs would write one store."""
    import os

    from dataengine.storage.flock_lock import FlockBackend

    path = tmp_path / "store" / "metadata" / "run.lock"
    refused = FlockBackend(path, "ingest (keys rejected)")
    assert refused.try_acquire()[0]
    waiting = FlockBackend(path, "ingest --wait")
    waiting._fd = os.open(path, os.O_RDWR)  # its open came first, its flock after the release: the interleaving
    refused.release(remove=True)
    assert waiting.try_acquire()[0] and path.exists()
    assert not FlockBackend(path, "a third run").try_acquire()[0]
    waiting.release()
