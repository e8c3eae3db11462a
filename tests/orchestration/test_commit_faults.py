"""A run whose version cannot be committed (a full disk, a file in the way) has stored its bars: the CLI still
prints its JSON object and exits 1 with one line, never a traceback, and the next run's commit takes the bars
in. With real faults: a file system out of inodes (a tmpfs, where the test may mount one), a file where the
version table needs a directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataengine import read_bars
from tests.helpers import assert_store_equals, expected, run_cli

DAY = ["-t", "day", "--json"]


def ingest(capsys: pytest.CaptureFixture[str], store: Path, end: str) -> tuple[int, dict[str, object], str]:
    code, out, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", end, *DAY, "--storage-dir", str(store))
    return code, json.loads(out), err


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own (root only; skipped elsewhere), so the test can run it out of inodes for real."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=10000", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def inodes(mount: Path, count: int) -> None:
    subprocess.run(["mount", "-o", f"remount,nr_inodes={count}", str(mount)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("spare", range(1, 9))
def test_a_disk_full_at_any_point_of_a_run_is_one_line_and_no_bar_is_lost(alpaca, tmpfs: Path, capsys, spare: int) -> None:  # type: ignore[no-untyped-def]
    store = tmpfs / "store"
    code, _, err = ingest(capsys, store, "2024-01-31")
    assert code == 0, err
    st = os.statvfs(tmpfs)
    inodes(tmpfs, st.f_files - st.f_ffree + spare)  # February's partition, links, commit: some fit, not all
    code, result, err = ingest(capsys, store, "2024-02-29")  # never an exception out of main()
    assert result["exit_code"] == code and code in (0, 1, 3), err
    if code == 1:  # the bars are stored, only the version is not
        assert "No space left on device" in str(result["version_error"]) and result["version"] is None
        assert "version was not committed" in err and "next run's commit takes them in" in err
    inodes(tmpfs, 10000)
    code, result, err = ingest(capsys, store, "2024-02-29")
    assert code == 0 and result["version"] is not None, err
    for version in (None, result["version"]):
        assert_store_equals(read_bars("AAPL", timeframe="day", storage_dir=str(store), version=version),
                            expected(alpaca, ["AAPL"], "2024-01-02", "2024-02-29", "1Day"))
    assert run_cli(capsys, "verify", "--storage-dir", str(store))[0] == 0


def test_a_file_in_the_way_of_the_version_table_fails_the_commit_not_the_run(alpaca, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    store = tmp_path / "store"
    assert ingest(capsys, store, "2024-01-31")[0] == 0
    blocker = store / "metadata/versions/equities_1day/symbol=AAPL/year=2024/month=02"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")  # a sync tool's conflict copy, a hand: link() meets ENOTDIR
    code, result, err = ingest(capsys, store, "2024-02-29")
    assert code == 1 and result["exit_code"] == 1 and result["version"] is None and result["rows_added"] > 0
    assert f"cannot write {blocker}/" in str(result["version_error"]) and "Not a directory" in str(result["version_error"])
    assert err.count("version was not committed") == 1 and "Traceback" not in err
    run = json.loads(run_cli(capsys, "status", "--storage-dir", str(store), "--json")[1])["runs"][0]
    assert run["exit_code"] == 1 and run["version_error"] == result["version_error"]  # the ledger agrees
    assert f"{run['run_id']}: version not committed" in run_cli(capsys, "status", "--storage-dir", str(store))[1]
    blocker.unlink()
    code, result, err = ingest(capsys, store, "2024-02-29")  # nothing to fetch: its commit takes February in
    assert code == 0 and result["version"] == 1 and "ended without committing" in err
    assert_store_equals(read_bars("AAPL", timeframe="day", storage_dir=str(store), version=1),
                        expected(alpaca, ["AAPL"], "2024-01-02", "2024-02-29", "1Day"))
