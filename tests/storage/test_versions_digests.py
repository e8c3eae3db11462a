"""Each version records the digest of every file it adds (``tags`` of its Delta ``add`` actions): the bytes a
run placed, hashed as it placed them; kept through checkpoints, and for the files a killed run left, hashed
when the next commit takes them in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dataengine.storage import versions as v
from dataengine.storage.digests import TAG
from dataengine.storage.versions import log
from tests.helpers import run_cli
from tests.storage.versions_support import Store

DAY = "equities_1day"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def adds(store: Path, dataset: str, version: int) -> list[dict]:
    commit = store / "metadata/versions" / dataset / "_delta_log" / f"{version:020d}.json"
    return [line["add"] for line in map(json.loads, commit.read_text().splitlines()) if "add" in line]


def test_a_runs_commit_records_the_digest_of_the_bytes_it_placed(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run_cli(capsys, "-q", "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-02-29", "-t", "day")
    assert code == 0, err
    table = tmp_path / "store/metadata/versions" / DAY
    added = adds(tmp_path / "store", DAY, 0)
    assert len(added) == 4
    for add in added:
        assert add["tags"] == {TAG: sha256(table / add["path"])}
        assert sha256(table / add["path"]) == sha256(tmp_path / "store" / DAY / add["path"].rsplit("/", 1)[0] / "data.parquet")


def test_digests_survive_a_checkpoint_and_a_replay(tmp_path: Path) -> None:
    store = Store(tmp_path, checkpoint_interval=2)
    store.run("run-1", {("AAPL", 2024, 1): [1.0, 2.0]})
    store.run("run-2", {("MSFT", 2024, 1): [3.0]})
    store.run("run-3", {("AAPL", 2024, 1): [4.0]})  # version 2: a checkpoint
    assert (tmp_path / "metadata/versions/equities_1min/_delta_log/00000000000000000002.checkpoint.parquet").exists()
    for checkpointed in (True, False):
        log.forget(store.table)
        if not checkpointed:
            (tmp_path / "metadata/versions/equities_1min/_delta_log/00000000000000000002.checkpoint.parquet").unlink()
        state = log.read_state(store.table)
        assert state is not None and state.sha256.height == 2
        for path, digest in state.sha256.iter_rows():
            assert digest == sha256(tmp_path / "metadata/versions/equities_1min" / path)
        assert state.digest_of(state.by_key(["symbol=AAPL/year=2024/month=01"])["symbol=AAPL/year=2024/month=01"][0]) == \
            sha256(tmp_path / store.relpath("AAPL", 2024, 1))


def test_the_files_a_killed_run_left_are_hashed_when_the_next_commit_takes_them_in(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.run("run-1", {("AAPL", 2024, 1): [1.0, 2.0]})
    v.begin_run(store.table, store.provenance("killed-run"))  # its marker, a partition, and never a commit
    store.write("NVDA", 2024, 1, [5.0])
    store.run("run-2", {("MSFT", 2024, 2): [4.0]})
    log.forget(store.table)
    state = log.read_state(store.table)
    assert state is not None
    nvda = state.by_key(["symbol=NVDA/year=2024/month=01"])["symbol=NVDA/year=2024/month=01"][0]
    assert state.digest_of(nvda) == sha256(tmp_path / store.relpath("NVDA", 2024, 1))
