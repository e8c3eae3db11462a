"""A full disk (or a file-size limit) while Polars writes a partition is one line and exit 3, like Python's own
ENOSPC: Polars reports it as ``ComputeError: ... (os error 28)``, which a worker took for a bug in the symbol,
logged a traceback for each symbol, went on with the next ones and exited 1. The run now stops at the first
failed write, every file stays whole, and the same command finishes the job once space is free."""

from __future__ import annotations

import errno
import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from dataengine.errors import UsageError
from dataengine.storage import atomic
from tests.conftest import REPO
from tests.helpers import assert_store_equals, expected, read_store

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/dev/full and RLIMIT_FSIZE as Linux has them")

COMMAND = [sys.executable, "-m", "dataengine", "-q", "ingest", "AAPL", "MSFT", "-t", "minute", "--start", "2024-01-01",
           "--end", "2024-03-31", "--workers", "2", "--json"]


def test_a_full_disk_under_polars_is_an_os_error() -> None:
    frame = pl.DataFrame({"a": range(100_000)})
    with pytest.raises(OSError) as caught, atomic.native_os_errors():
        frame.write_parquet("/dev/full")  # a real device: every write fails with ENOSPC
    assert caught.value.errno == errno.ENOSPC and caught.value.strerror == "No space left on device"
    with pytest.raises(pl.exceptions.ColumnNotFoundError), atomic.native_os_errors():  # not a system error: as raised
        frame.select("missing")
    with pytest.raises(UsageError, match="os error 2"), atomic.native_os_errors():  # not Polars': a message of ours
        raise UsageError("cannot write out.csv: the disk said (os error 2)")


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails (EFBIG), not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return apply


def test_a_partition_that_cannot_be_written_stops_the_run_with_one_line_and_exit_3(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 200 KiB: the ledgers and records fit, a month of minute bars does not
    cut = subprocess.run(COMMAND, cwd=REPO, capture_output=True, text=True, timeout=300,
                         preexec_fn=_file_size_limit(200 * 1024))
    assert cut.returncode == 3, cut.stderr
    assert cut.stderr.splitlines() == [cut.stderr.strip()] and "Traceback" not in cut.stderr, cut.stderr
    assert cut.stderr.startswith("Error: cannot write ") and cut.stderr.strip().endswith(": File too large")
    report = json.loads(cut.stdout)
    assert report["error"] in cut.stderr and not report["successful"]
    done = subprocess.run(COMMAND, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_store_equals(read_store(tmp_path / "store", "equities_1min"),
                        expected(alpaca, ["AAPL", "MSFT"], "2024-01-01", "2024-03-31", "1Min"))
