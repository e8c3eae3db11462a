"""The README's plain install as a user meets it: ``pip install .`` with no extras (made by .ci/run in a
virtualenv of its own), then the README's tour exactly as written (between its ``<!-- tour -->`` markers) and a
command with keys that reaches the vendor client, each from an empty HOME with nothing else in the environment.
The test suite runs in the test extra's environment, which brings more libraries than a user's install (it once
hid that numpy and requests were not dependencies). Any exit code but the expected one, or a traceback, fails.

Usage: python3 .ci/plain_install_tour.py VENV   (standard library only)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

venv = Path(sys.argv[1]).resolve()
readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
tour = readme.split("<!-- tour -->", 1)[1].split("<!-- /tour -->", 1)[0]
blocks = re.findall(r"```(bash|python)\n(.*?)```", tour, re.S)
home = tempfile.mkdtemp(prefix="plain-install-home-")
env = {"HOME": home, "PATH": f"{venv}/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def run(argv: list[str], expect: int, **extra: str) -> None:
    done = subprocess.run(argv, env={**env, **extra}, cwd=home, capture_output=True, text=True, timeout=300)
    print(f"plain install: {' '.join(argv)[:100]} -> exit {done.returncode}")
    if done.returncode != expect or "Traceback" in done.stdout + done.stderr:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        sys.exit(f"plain install: expected exit {expect} and no traceback")


assert [kind for kind, _ in blocks] == ["bash", "python"], blocks
for kind, code in blocks:
    if kind == "bash":
        for line in filter(str.strip, code.splitlines()):
            run(["bash", "-c", line], 0)
    else:
        run([str(venv / "bin" / "python"), "-c", code], 0)
# With keys the run builds the vendor's HTTP client; nothing listens on the port: one line, exit 3 (fatal).
run(["dataengine", "ingest", "AAPL", "-t", "day", "--days", "5"], 3, APCA_API_KEY_ID="key", APCA_API_SECRET_KEY="secret",
    APCA_API_DATA_URL="http://127.0.0.1:9", DATAENGINE_RETRY_BACKOFF="0.01")
print("plain install: the README's tour and a keyed command ran as documented")
