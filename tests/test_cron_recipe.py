"""The cron line of docs/operations.md, exactly as written there, run the way cron runs it: ``/bin/sh -c``
with nothing but HOME and PATH=/usr/bin:/bin in the environment (no virtualenv on the PATH, no profile, no
keys exported), against the local Alpaca look-alike. Cron's scheduling is not tested; the command line is."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.alpaca_server import FakeAlpaca
from tests.conftest import REPO

pytestmark = pytest.mark.slow
VENV_DATAENGINE = Path(sys.prefix) / "bin" / "dataengine"
PAGE = REPO / "docs" / "operations.md"


def cron_line() -> str:
    """The command of the crontab line in docs/operations.md (the five time fields cut off)."""
    text = PAGE.read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)```", text, re.S)
    assert block, f"{PAGE} has no ```cron block"
    (line,) = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    fields = line.split(maxsplit=5)
    assert len(fields) == 6 and fields[:5] == ["30", "1", "*", "*", "2-6"], line
    assert "%" not in fields[5], "cron turns % into a newline"
    return fields[5]


def new_account(tmp_path: Path, settings: str | None) -> Path:
    """A home with dataengine installed where the page says (~/.venvs/dataengine) and its settings file."""
    home = tmp_path / "home"
    (home / ".venvs").mkdir(parents=True)
    (home / ".venvs" / "dataengine").symlink_to(sys.prefix)  # this virtualenv, at the page's place
    if settings is not None:
        (home / ".config" / "dataengine").mkdir(parents=True)
        (home / ".config" / "dataengine" / "settings.ini").write_text(settings)
    return home


def as_cron(home: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["env", "-i", f"HOME={home}", "PATH=/usr/bin:/bin", "/bin/sh", "-c", command],
                          capture_output=True, text=True, timeout=600, cwd=home)


def last_session() -> date:
    from dataengine import calendar

    today = date.today()
    return calendar.sessions(today - timedelta(days=10), today - timedelta(days=1))[-1]


@pytest.mark.skipif(not VENV_DATAENGINE.is_file(), reason="needs dataengine installed in a virtualenv")
def test_the_cron_line_works_as_pasted_and_is_silent(tmp_path: Path) -> None:
    """Keys and the data URL from settings.ini; history from the last session only (default_start), so the
    whole S&P 500 list runs in seconds against the test server."""
    with FakeAlpaca() as server:
        home = new_account(tmp_path, f"[common]\napi_key_id = test-key\napi_secret_key = test-secret\n"
                                     f"data_url = {server.url}\ndefault_start = {last_session().isoformat()}\n")
        done = as_cron(home, cron_line())
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")  # nothing for cron to mail
    result = json.loads((home / "logs" / "last-run.json").read_text())
    assert result["exit_code"] == 0 and len(result["successful"]) == 503 and result["rows_written"] > 0
    assert result["storage_dir"] == str(home / ".local" / "share" / "dataengine")  # the default store, made
    assert (home / ".local" / "share" / "dataengine" / "metadata" / "indices" / "sp500.csv").is_file()
    assert "ingesting 503 symbol(s), minute" in (home / "logs" / "dataengine.log").read_text()


@pytest.mark.skipif(not VENV_DATAENGINE.is_file(), reason="needs dataengine installed in a virtualenv")
def test_a_failure_is_mailed_with_dataengines_own_exit_code(tmp_path: Path) -> None:
    home = new_account(tmp_path, settings=None)  # no keys anywhere: dataengine exits 2
    done = as_cron(home, cron_line())
    assert done.stdout.startswith("dataengine exited 2: see ") and done.stdout.count("\n") == 1
    assert json.loads((home / "logs" / "last-run.json").read_text())["exit_code"] == 2
    assert "credentials missing" in done.stderr


def test_the_shells_failures_are_not_blamed_on_dataengine(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = as_cron(home, cron_line())  # no virtualenv at ~/.venvs/dataengine
    assert done.stdout.startswith("dataengine exited 127: ") and "not found" in done.stderr
    shutil.rmtree(home / "logs")
    (home / "logs").write_text("a file where the log directory goes")
    done = as_cron(home, cron_line())  # mkdir -p fails: its message alone, no "dataengine exited"
    assert done.stdout == "" and "mkdir" in done.stderr and done.returncode != 0
