"""A newcomer's first day, as whole processes in a clean environment: a fresh account (no ~/.local/share, no
settings) running the README's commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alpaca_server import FakeAlpaca

pytestmark = pytest.mark.slow


def fresh_account(tmp_path: Path, server: FakeAlpaca) -> dict[str, str]:
    """The environment of a new account: a new empty HOME, no XDG variables, the keys and nothing else."""
    home = tmp_path / "newuser"
    home.mkdir()
    return {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "APCA_API_KEY_ID": "test-key",
        "APCA_API_SECRET_KEY": "test-secret",
        "APCA_API_DATA_URL": server.url,
    }


def run_as_newcomer(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dataengine", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_readme_main_command_works_on_a_fresh_account(tmp_path: Path) -> None:
    """No --storage-dir, no ~/.local/share: the default store is made with its parents and announced."""
    with FakeAlpaca() as server:
        env = fresh_account(tmp_path, server)
        assert not (Path(env["HOME"]) / ".local").exists()
        done = run_as_newcomer(env, tmp_path, "ingest-csv", "sp500-2025.csv", "--timeframe", "day",
                               "--start", "2024-01-02", "--end", "2024-01-05", "--json")
    assert done.returncode == 0, done.stderr
    store = Path(env["HOME"]) / ".local" / "share" / "dataengine"
    result = json.loads(done.stdout)
    assert result["storage_dir"] == str(store)
    assert f"note: new store at {store}" in done.stderr
    assert len(result["successful"]) == 503
    assert (store / "metadata" / "store.json").is_file()
    assert any((store / "equities_1day").glob("symbol=AAPL/year=2024/month=01/data.parquet"))


def test_index_add_on_a_fresh_account_makes_the_default_store(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "newuser"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    Path(env["HOME"]).mkdir()
    done = run_as_newcomer(env, tmp_path, "index", "add", "mine", "AAPL", "MSFT")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "newuser" / ".local" / "share" / "dataengine" / "metadata" / "indices" / "mine.csv").is_file()


def test_a_typed_storage_dir_with_a_missing_parent_is_still_a_typo(tmp_path: Path) -> None:
    """Only the default location is created with its parents: a path the user typed is checked as before."""
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"}
    typo = tmp_path / "no-such-dir" / "store"
    done = subprocess.run([sys.executable, "-m", "dataengine", "--storage-dir", str(typo), "ingest", "AAPL"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "does not exist (a typo?)" in done.stderr
    assert not typo.parent.exists()
