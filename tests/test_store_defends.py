"""A store that defends itself (issue 15): only our files are touched, roots are checked, a read-only
connection cannot write, damage is found and repaired, torn logs heal, SIGTERM/SIGHUP stop like Ctrl-C,
hostile input is refused. Each test does what an outside trial did to the tool."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from dataengine.errors import DamagedPartitionError, UsageError
from dataengine.storage.store import open_store
from tests.conftest import REPO
from tests.helpers import assert_store_equals, damage, expected, read_store, run_cli, store_listing
from tests.test_crash_resume import COMMAND, every_file_readable, wait_for_requests

RANGE = ("2024-01-01", "2024-03-31")


run = run_cli


def ingest(capsys, *symbols: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return run(capsys, "ingest", *symbols, "--start", RANGE[0], "--end", RANGE[1], "-t", "minute", "--json", *extra)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


# -- 1: files that are not ours -------------------------------------------------------------------------------


def test_a_run_deletes_only_its_own_dead_temp_files(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    assert ingest(capsys, "AAPL")[0] == 0
    part = store / "equities_1min" / "symbol=AAPL" / "year=2024" / "month=01"
    users = [store / ".chapter3.docx.tmp", part / ".notes.1234.abcdefgh.tmp", part / ".data.parquet.swp",
             store / "metadata" / ".draft.1234.abcdefgh.tmp", store / "equities_1min" / ".x.999999.abcd1234.tmp"]
    for path in users:
        path.write_text("mine")
    # a killed writer's leftovers (pid 999999 does not exist): where this version stages a partition write, and
    # where older versions did (inside the partition directory; only verify --repair walks every partition)
    ours = store / "metadata" / "staging" / ".data.parquet.999999.abcd1234.tmp"
    legacy = part / ".data.parquet.999999.abcd1234.tmp"
    for path in (ours, legacy):
        path.write_text("half a partition")
    assert ingest(capsys, "AAPL", extra=("--full-refresh",))[0] == 0
    assert all(p.read_text() == "mine" for p in users) and not ours.exists() and legacy.exists()
    assert run(capsys, "verify", "--repair")[0] == 0
    assert all(p.read_text() == "mine" for p in users) and not legacy.exists()


# -- 2: roots that cannot be meant -----------------------------------------------------------------------------


def test_the_file_system_root_is_refused_before_anything_is_written(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    before = sorted(os.listdir("/"))
    code, _, err = run(capsys, "--storage-dir", "/", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 2 and "root of a file system" in err and sorted(os.listdir("/")) == before and not alpaca.requests


def test_home_a_typo_and_a_foreign_directory_are_refused(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = Path(os.environ["HOME"])
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("text")
    for root, message in ((home, "home directory"), (tmp_path / "no-such" / "store", "does not exist"),
                          (foreign, "not a dataengine store")):
        before = snapshot(root) if root.exists() else None
        code, _, err = run(capsys, "--storage-dir", str(root), "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02")
        assert code == 2 and message in err, err
        assert (snapshot(root) if root.exists() else None) == before
    code, _, err = run(capsys, "--storage-dir", str(foreign), "status")
    assert code == 2 and "not a dataengine store" in err
    assert not alpaca.requests


def test_a_new_store_is_announced_and_marked(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = ingest(capsys, "AAPL")
    assert code == 0 and f"new store at {tmp_path / 'store'}" in err
    assert json.loads((tmp_path / "store" / "metadata" / "store.json").read_text())["format_version"] == 1
    code, out, err = ingest(capsys, "AAPL")
    assert "new store" not in err


# -- 3: connect(read_only=True) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "COPY (SELECT 1) TO '{root}/equities_1min/symbol=AAPL/year=2024/month=01/data.parquet'",
    "COPY (SELECT 1) TO '{root}/metadata/coverage/equities_1min.jsonl'",
    "ATTACH '{root}/x.duckdb' AS x; CREATE TABLE x.t AS SELECT 1",
    # a pragma that changes the connection (DuckDB before 2.0 parses a reading one, PRAGMA version, as the SELECT
    # from pragma_version() it runs: a read, rightly let through)
    "CREATE TABLE t AS SELECT 1", "INSERT INTO bars_1min SELECT * FROM bars_1min", "PRAGMA enable_profiling",
    "CALL pragma_version()", "SET threads = 1", "INSTALL httpfs", "EXPORT DATABASE '{root}/dump'",
])
def test_read_only_connections_refuse_every_write(alpaca, capsys, tmp_path: Path, statement: str) -> None:  # type: ignore[no-untyped-def]
    from dataengine import connect

    store = tmp_path / "store"
    assert ingest(capsys, "AAPL")[0] == 0
    before = snapshot(store)
    con = connect(store, read_only=True)
    with pytest.raises(UsageError, match="read-only|exactly one"):
        con.execute(statement.format(root=store.resolve()))
    with pytest.raises(UsageError):
        con.sql("SELECT * FROM bars_1min").write_parquet(str(store / "equities_1min" / "x.parquet"))
    with pytest.raises(UsageError):
        con.register("t", pl.DataFrame({"a": [1]}))  # only reading methods exist
    assert con.execute("SELECT count(*) FROM bars_1min").fetchone()[0] > 0  # reading still works
    con.close()
    assert snapshot(store) == before


# -- 4: damage found, reported and repaired --------------------------------------------------------------------


def damage_store(store: str) -> dict[str, Any]:
    base = open_store(store) / "equities_1min"  # a local directory or a prefix on S3: the same calls
    paths = {
        "truncated": base / "symbol=AAPL" / "year=2024" / "month=01" / "data.parquet",
        "garbage": base / "symbol=AAPL" / "year=2024" / "month=02" / "data.parquet",
        "emptied": base / "symbol=MSFT" / "year=2024" / "month=03" / "data.parquet",
        "first": base / "symbol=NVDA" / "year=2024" / "month=01" / "data.parquet",
        "middle": base / "symbol=NVDA" / "year=2024" / "month=02" / "data.parquet",
    }
    data = paths["truncated"].read_bytes()
    # Damage from outside (a disk, a sync tool) hits the bytes, so every name of them: the dataset's file and
    # the latest version's (a hard link locally; the same damage to its copy on S3).
    for name, garbage in {"truncated": data[: len(data) // 2], "garbage": os.urandom(4096), "emptied": b""}.items():
        damage(store, paths[name].relative_to(base.root), garbage)
    paths["first"].unlink()
    paths["middle"].unlink()
    gone = base / "symbol=AMD"  # a whole symbol gone
    if gone.local is not None:
        import shutil

        shutil.rmtree(gone.local)
    else:
        for obj, _ in gone.walk():
            obj.unlink()
    return paths


@pytest.mark.slow
@pytest.mark.usefixtures("decoding")
def test_verify_names_every_damaged_partition_and_repair_makes_the_store_exact(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    store = backend
    symbols = ["AAPL", "MSFT", "NVDA", "AMD"]
    assert ingest(capsys, *symbols)[0] == 0
    damaged = damage_store(store)
    code, out, err = run(capsys, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    kinds = {(d["symbol"], d["year"], d["month"]): d["kind"] for d in report["damage"]}
    assert kinds[("AAPL", 2024, 1)] == kinds[("AAPL", 2024, 2)] == kinds[("MSFT", 2024, 3)] == "unreadable"
    assert kinds[("NVDA", 2024, 1)] == kinds[("NVDA", 2024, 2)] == "missing"
    assert {("AMD", 2024, m) for m in (1, 2, 3)} <= kinds.keys()
    assert "Traceback" not in err
    # everywhere else: one line naming the file and pointing at verify --repair, never a traceback
    code, _, err = run(capsys, "status")
    assert code == 1 and "verify --repair" in err and "Traceback" not in err
    code, _, err = run(capsys, "gaps", "AAPL")
    assert code == 1 and "verify --repair" in err and str(damaged["truncated"]) in err
    from dataengine.read import read_bars

    with pytest.raises(DamagedPartitionError, match="verify --repair"):
        read_bars("AAPL", "2024-01-01", "2024-02-28", storage_dir=store)
    code, _, err = run(capsys, "query", "SELECT count(*) FROM bars_1min WHERE symbol = 'AAPL'")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("Error: damaged partition ") and "verify --repair" in err
    code, out, err = ingest(capsys, "AAPL")
    assert code == 1 and "verify --repair" in json.loads(out)["failed"]["AAPL"]
    # repair: files aside, exactly those months again, the store exact
    alpaca.reset_log()
    code, out, err = run(capsys, "verify", "--repair", "--json")
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    assert_store_equals(read_store(store), expected(alpaca, symbols, *RANGE))
    quarantined = [name for name, _ in store_listing(store) if name.startswith("metadata/quarantine/")]
    assert len(quarantined) == 3 and all(name.endswith("data.parquet") for name in quarantined)
    assert run(capsys, "verify")[0] == 0


@pytest.mark.usefixtures("decoding")
def test_a_partition_deleted_by_hand_is_fetched_by_the_next_plain_run(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    store = backend
    assert ingest(capsys, "AAPL", "MSFT")[0] == 0
    (open_store(store) / "equities_1min" / "symbol=MSFT" / "year=2024" / "month=02" / "data.parquet").unlink()
    alpaca.reset_log()
    code, out, _ = ingest(capsys, "AAPL", "MSFT")
    assert code == 0
    assert {s for r in alpaca.requests for s in r.symbols} == {"MSFT"}  # only the lost month, nothing else
    assert_store_equals(read_store(store), expected(alpaca, ["AAPL", "MSFT"], *RANGE))


def test_verify_on_a_whole_store(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    assert ingest(capsys, "AAPL")[0] == 0
    code, out, _ = run(capsys, "verify")
    assert code == 0 and out.startswith("store is whole: 3 partition(s) checked")


# -- 5: torn tails -----------------------------------------------------------------------------------------------


def test_torn_ledger_and_coverage_tails_are_cut_before_the_next_append(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    assert ingest(capsys, "AAPL")[0] == 0
    ledger = store / "metadata" / "runs.jsonl"
    coverage = store / "metadata" / "coverage" / "equities_1min.jsonl"
    with open(ledger, "a") as handle:
        handle.write('{"run_id":"torn","started":"2024')
    with open(coverage, "a") as handle:
        handle.write('{"s":"MSFT","a":"2024-01-01T05:00:00+00:00","b":"20')
    assert ingest(capsys, "MSFT")[0] == 0
    for path in (ledger, coverage):
        assert path.read_bytes().endswith(b"\n")
        assert all(json.loads(line) for line in path.read_text().splitlines())
        assert duckdb.sql(f"SELECT count(*) FROM read_json('{path}')").fetchall()[0][0] >= 1
        pl.read_ndjson(path)
    assert len(pl.read_ndjson(ledger)) == 2
    assert list((store / "metadata" / "torn").iterdir())  # the cut bytes are kept for a look


# -- 6: SIGTERM and SIGHUP ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
@pytest.mark.usefixtures("decoding")
def test_sigterm_and_sighup_stop_like_ctrl_c(alpaca, tmp_path: Path, sig: int, code: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    alpaca.latency_s = 0.03
    monkeypatch.setenv("DATAENGINE_REQUEST_TIMEOUT", "30")  # the slow answers are waited for, not timed out
    # past the tenth the answers take 3 s: the run is still under way when the signal comes, however late a loaded
    # machine sends it (at 0.03 s a request it had ended before a signal sent 2 s late)
    alpaca.slow_after(10, 3.0)
    proc = subprocess.Popen(COMMAND + ["--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_requests(alpaca, 10)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    report = json.loads(out)
    assert report["interrupted"] is True and (report["exit_code"], report["signal"]) == (code, sig)
    store = tmp_path / "store"
    last = json.loads((store / "metadata" / "runs.jsonl").read_text().splitlines()[-1])
    assert last["exit_code"] == code and last["interrupted"] is True and last["signal"] == sig
    assert every_file_readable(store) > 0 and not list(store.rglob("*.tmp"))
    assert not (store / "metadata" / "run.lock").read_text().strip()  # released cleanly


# -- 7: hostile input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["*", "A?", "[AB]", "../etc", "A/", "/X", "A\\B", ".hidden"])
def test_symbols_are_data_never_patterns_or_paths(alpaca, capsys, symbol: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "ingest", symbol, "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 2 and "invalid symbol" in err and not alpaca.requests
    code, _, err = run(capsys, "gaps", symbol)
    assert code == 2


def test_a_huge_bad_value_is_echoed_short(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "list.txt"
    listing.write_text("AAPL\n" + "X*" * 5_000_000 + "\n")
    code, _, err = run(capsys, "ingest-csv", str(listing), "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 2 and len(err) < 1_000 and "10,000,000 characters" in err


def test_credentials_in_the_data_url_are_never_shown_or_stored(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert run(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-02")[0] == 0  # a ledger
    monkeypatch.setenv("APCA_API_DATA_URL", "http://someone:hunter2secret@127.0.0.1:9")
    monkeypatch.setenv("DATAENGINE_MAX_RETRIES", "0")
    code, out, err = run(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02", "--json")
    assert code == 3 and "cannot reach http://***@127.0.0.1:9" in err
    ledger = (tmp_path / "store" / "metadata" / "runs.jsonl").read_text()
    for text in (out, err, ledger):
        assert "hunter2secret" not in text and "someone" not in text


def test_index_membership_is_not_recorded_when_the_run_cannot_start(alpaca, capsys, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("APCA_API_KEY_ID", "wrong")
    listing = tmp_path / "two.csv"
    listing.write_text("Symbol\nAAPL\nMSFT\n")
    code, _, _ = run(capsys, "ingest-csv", str(listing), "--index-name", "mine", "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 3 and not (tmp_path / "store" / "metadata" / "indices" / "mine.csv").exists()


UNSUPPORTED = "not a supported store|not an S3 URL|segments in the prefix"


@pytest.mark.parametrize("uri", ["gs://bucket/x", "az://container/x", "file:///tmp/x", "s3:/bucket", "s3://Bad_Bucket/x",
                                 "s3://ab/x", "s3://bucket/a//b", "s3://bucket/../x"])
def test_an_unsupported_or_malformed_storage_uri_is_refused_before_anything_is_written(alpaca, capsys, tmp_path: Path, monkeypatch, uri: str) -> None:  # type: ignore[no-untyped-def]
    """Path() would collapse gs://bucket/x into the local directory ./gs:/bucket/x and write a store there."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--storage-dir", uri, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-02")
    assert code == 2 and re.search(UNSUPPORTED, err) and len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("DATAENGINE_STORAGE_DIR", uri)
    code, _, err = run(capsys, "status")
    assert code == 2 and re.search(UNSUPPORTED, err)
    assert not list(tmp_path.iterdir()) and not alpaca.all_requests
    from dataengine import ParquetStorage
    from dataengine.errors import ConfigError

    with pytest.raises(ConfigError, match=UNSUPPORTED):
        ParquetStorage(uri)


def test_a_dataset_folder_deleted_whole_is_fetched_again_and_verify_names_it(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    """Found while checking an S3 trial's finding: a dataset's folder deleted whole (to fetch it afresh; on S3,
    every object of it deleted, which leaves no folder) made the next ingest say "done, 0 bars written" and
    verify "store is whole: 0 partition(s)": the coverage ledger still said fetched, and with no folder nothing
    was checked. Each partition the latest version held is now gone as one deleted alone would be."""
    symbols = ["AAPL", "MSFT"]
    assert ingest(capsys, *symbols)[0] == 0
    dataset = open_store(backend) / "equities_1min"
    for path, _ in dataset.walk():
        path.unlink()
    if dataset.local is not None:
        import shutil

        shutil.rmtree(dataset.local)
    code, out, _ = run(capsys, "verify", "--json")
    report = json.loads(out)
    assert code == 1 and {d["kind"] for d in report["damage"]} == {"missing"}
    assert {(d["symbol"], d["month"]) for d in report["damage"]} == {(s, m) for s in symbols for m in (1, 2, 3)}
    code, out, _ = ingest(capsys, *symbols)  # the nightly run fetches it again, as a partition deleted alone
    assert code == 0 and json.loads(out)["rows_added"] > 0
    assert_store_equals(read_store(backend), expected(alpaca, symbols, *RANGE))
    assert run(capsys, "verify")[0] == 0
