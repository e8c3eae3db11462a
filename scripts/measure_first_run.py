"""A user's first run against a warm run, as whole processes: CPU, wall time and peak RSS from ``/usr/bin/time -v``.

    python scripts/measure_first_run.py N LABEL=CHECKOUT [LABEL=CHECKOUT ...]
    python scripts/measure_first_run.py 15 before=../dataengine-old after=.

Each CHECKOUT is a clone with its own ``.venv`` (``pip install -e '.[test]'``); the first one's
``tests/alpaca_server.py`` serves every run on a free port. Runs are interleaved (round after round, every
checkout and case in turn) and the medians of N are printed, then the raw figures as JSON.

*first*: a fresh account, ``HOME`` a new empty directory and no ``XDG_*`` variables. *warm*: an account that has run
the same command before. ``gaps``: ``dataengine --storage-dir S gaps AAPL MSFT`` on a store of two symbols x
Jan-Mar 2024 of minute bars (its own caches warmed by one run); ``ingest``: ``dataengine -q --storage-dir NEW
ingest AAPL --start 2024-01-02 --end 2024-01-31`` (minute bars) into a new store every time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INGEST = ["-q", "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-31"]
FILL = ["-q", "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-03-28"]


def timed(checkout: Path, args: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> dict[str, float]:
    out = subprocess.run(["/usr/bin/time", "-v", str(checkout / ".venv" / "bin" / "dataengine"), *args],
                         env=env, capture_output=True, text=True)

    def field(pattern: str) -> str:
        found = re.search(pattern, out.stderr)
        if found is None:
            raise SystemExit(f"no {pattern!r} in the output of {args}:\n{out.stderr[-3000:]}")
        return found.group(1)

    status = int(field(r"Exit status: (\d+)"))
    if status not in ok:
        raise SystemExit(f"{args} exited {status}:\n{out.stderr[-3000:]}")
    clock = [float(p) for p in field(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)").split(":")]
    return {
        "cpu": float(field(r"User time \(seconds\): ([\d.]+)")) + float(field(r"System time \(seconds\): ([\d.]+)")),
        "wall": sum(part * 60**i for i, part in enumerate(reversed(clock))),
        "rss_mib": int(field(r"Maximum resident set size \(kbytes\): (\d+)")) / 1024,
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    rounds = int(argv[0])
    checkouts = {label: Path(path).resolve() for label, path in (a.split("=", 1) for a in argv[1:])}
    scratch = Path(tempfile.mkdtemp(prefix="first-run-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = next(iter(checkouts.values()))
    server = subprocess.Popen([str(first / ".venv" / "bin" / "python"), "tests/alpaca_server.py", "--port", str(port)],
                              cwd=first, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "APCA_", "DATAENGINE_", "PYTHON"))}
    base.update(APCA_API_DATA_URL=f"http://127.0.0.1:{port}", APCA_API_KEY_ID="test-key",
                APCA_API_SECRET_KEY="test-secret", NO_COLOR="1")

    def new_dir(prefix: str) -> str:
        return tempfile.mkdtemp(dir=scratch, prefix=prefix)

    def as_user(home: str) -> dict[str, str]:
        return dict(base, HOME=home)

    try:
        for _ in range(600):  # the server builds its calendar before it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        setup = {}
        for label, checkout in checkouts.items():
            store, home = new_dir("store-"), new_dir("home-")
            timed(checkout, ["--storage-dir", store, *FILL], as_user(home))
            gaps = ["--storage-dir", store, "gaps", "AAPL", "MSFT"]
            timed(checkout, gaps, as_user(home), ok=(0, 1))
            warm_gaps, warm_ingest = new_dir("home-"), new_dir("home-")
            timed(checkout, gaps, as_user(warm_gaps), ok=(0, 1))
            timed(checkout, ["--storage-dir", new_dir("store-"), *INGEST], as_user(warm_ingest))
            setup[label] = (gaps, warm_gaps, warm_ingest)
        runs: dict[str, list[dict[str, float]]] = {}
        for _ in range(rounds):
            for label, checkout in checkouts.items():
                gaps, warm_gaps, warm_ingest = setup[label]
                for case, args, home, ok in (
                    ("gaps first", gaps, new_dir("home-"), (0, 1)),
                    ("gaps warm", gaps, warm_gaps, (0, 1)),
                    ("ingest first", ["--storage-dir", new_dir("store-"), *INGEST], new_dir("home-"), (0,)),
                    ("ingest warm", ["--storage-dir", new_dir("store-"), *INGEST], warm_ingest, (0,)),
                ):
                    runs.setdefault(f"{label} {case}", []).append(timed(checkout, args, as_user(home), ok))
        for name, measured in sorted(runs.items()):
            med = {f: statistics.median(r[f] for r in measured) for f in ("cpu", "wall", "rss_mib")}
            print(f"{name:24s} CPU {med['cpu']:.2f} s  wall {med['wall']:.2f} s  peak RSS {med['rss_mib']:.0f} MiB")
        print(json.dumps(runs))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
