"""A store, or a part of it, this account cannot read (chmod 000, another account's files): every command says one
line and exits 3, as for a store it cannot write; with --json one object. Found by a user's trial: `ingest`,
`status`, `query`, `gaps`, `verify`, `index list` and `doctor` printed a PermissionError traceback and exit 1.

Root reads everything whatever the modes, so as root the commands run without the capabilities that let it
(``setpriv``), as another account would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _as_an_account_without_rights(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root reads any file; dropping that right needs setpriv")
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run([*prefix, sys.executable, "-m", "dataengine", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    made = subprocess.run([sys.executable, "-m", "dataengine", "-q", "ingest", "AAPL", "--source", "sample", "-t", "day",
                           "--days", "5", "--storage-dir", str(root)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HOME": str(tmp_path)}, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    return root


@pytest.mark.parametrize("unreadable", [".", "metadata", "sample_equities_1day/symbol=AAPL"])
def test_a_store_this_account_cannot_read_is_one_line_and_exit_3(store: Path, tmp_path: Path, unreadable: str) -> None:
    target = store / unreadable
    target.chmod(0o000)
    try:
        for argv in (["ingest", "AAPL", "--source", "sample", "-t", "day", "--days", "3"], ["status"], ["verify"],
                     ["gaps", "--source", "sample", "-t", "day"], ["query", "select 1"], ["index", "list"]):
            if argv[0] in ("query", "index") and unreadable != ".":
                continue  # neither a query of no table nor the indices need the metadata or a partition
            done = _as_an_account_without_rights([*argv, "--storage-dir", str(store)], tmp_path)
            assert done.returncode == 3 and "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
            assert done.stderr.strip().splitlines()[-1].startswith("Error: cannot ") and "Permission denied" in done.stderr
            with_json = _as_an_account_without_rights([*argv, "--storage-dir", str(store), "--json"], tmp_path)
            if argv[0] not in ("query", "index"):  # they have no --json
                assert with_json.returncode == 3 and json.loads(with_json.stdout)["exit_code"] == 3, with_json.stderr
    finally:
        target.chmod(0o755)


def test_a_directory_not_ours_that_cannot_be_read_is_left_alone(store: Path, tmp_path: Path) -> None:
    """Found by a review: a store at a mount's root holds lost+found (root's, mode 700), and status, which adds
    up the disk the store takes, exited 3 on it. A directory that is not ours is left out of the total."""
    foreign = store / "lost+found"
    foreign.mkdir()
    foreign.chmod(0o000)
    try:
        for argv in (["status"], ["verify"], ["gaps", "--source", "sample", "-t", "day"]):
            done = _as_an_account_without_rights([*argv, "--storage-dir", str(store)], tmp_path)
            assert done.returncode in (0, 1) and "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
            assert "cannot read" not in done.stderr and "cannot access" not in done.stderr, (argv, done.stderr)
    finally:
        foreign.chmod(0o755)
