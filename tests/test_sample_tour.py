"""The README's quick tour, as a newcomer meets it: the exact lines between ``<!-- tour -->`` and
``<!-- /tour -->`` run as processes in an empty environment (a fresh home, ``PATH=/usr/bin:/bin``, no key, no
setting), with nothing listening anywhere: the sample source needs no network. Every output that shows the
sample's bars says they are synthetic, and they never land in a real source's dataset."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def tour() -> tuple[list[str], str]:
    """(the ``dataengine`` command lines, the Python snippet) of the README's tour."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text[text.index("<!-- tour -->") : text.index("<!-- /tour -->")]
    bash, python = re.findall(r"```(?:bash|python)\n(.*?)```", block, re.S)
    lines = [line for line in bash.splitlines() if line.startswith("dataengine ")]
    assert lines[0] == "dataengine ingest AAPL MSFT --source sample -t day --days 30"
    return lines, python


def test_the_readme_tour_works_with_no_key_and_no_network(tmp_path: Path) -> None:
    lines, snippet = tour()
    bin_dir = Path(sys.executable).parent
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}  # no key, no setting, no store
    outputs = []
    for line in lines:
        args = line.split()
        done = subprocess.run([str(bin_dir / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{line}: {done.stderr[-1500:]}"
        outputs.append(done.stdout)
    ingest, status, show = outputs
    assert ingest.startswith("2 symbol(s) done, 0 failed") and "source: sample: synthetic bars, not market data" in ingest
    assert "sample_equities_1day  sample (synthetic)" in status and "not market data" in status
    assert show.startswith("AAPL · sample_equities_1day (synthetic sample data, not market data) · the last 10 bar(s)")
    done = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
    counts = dict(re.findall(r"│ (AAPL|MSFT)\s+┆ (\d+)", done.stdout))
    assert counts.keys() == {"AAPL", "MSFT"} and 18 <= int(counts["AAPL"]) == int(counts["MSFT"]) <= 23
    store = tmp_path / ".local" / "share" / "dataengine"
    assert sorted(p.name for p in store.iterdir() if "equities" in p.name) == ["sample_equities_1day"]


def test_sample_bars_are_the_same_on_every_run(tmp_path: Path) -> None:
    """Deterministic: two stores filled by two runs (and two range splits) hold the same bars."""
    from dataengine import IngestionPipeline, read_bars

    for name, ranges in (("one", [("2024-01-02", "2024-03-28")]), ("two", [("2024-02-01", "2024-03-28"), ("2024-01-02", "2024-01-31")])):
        pipeline = IngestionPipeline(storage_dir=tmp_path / name, progress=False)
        for start, end in ranges:
            assert pipeline.ingest_symbols(["AAPL", "BRK.B"], start, end, "15min", source="sample").ok
    one, two = (read_bars(None, None, None, "15min", storage_dir=str(tmp_path / n), source="sample") for n in ("one", "two"))
    assert one.height > 2 * 50 * 26 and one.equals(two)


def test_the_sample_never_mixes_with_real_data(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataengine import read_bars
    from tests.helpers import run_cli

    assert run_cli(capsys, "ingest", "AAPL", "--source", "sample", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-31")[0] == 0
    assert not alpaca.requests and not alpaca.action_requests  # no network
    assert run_cli(capsys, "ingest", "AAPL", "-t", "day", "--start", "2024-01-02", "--end", "2024-01-31")[0] == 0
    store = str(tmp_path / "store")
    real, made_up = (read_bars("AAPL", None, None, "day", storage_dir=store, source=s) for s in ("alpaca", "sample"))
    assert real.height == made_up.height == 21 and not real.equals(made_up)
    code, _, err = run_cli(capsys, "verify", "--source", "sample", "--against", "alpaca")
    assert code == 2 and "synthetic" in err
    code, out, _ = run_cli(capsys, "show", "AAPL")  # the real source first when it holds the symbol
    assert code == 0 and out.startswith("AAPL · equities_1day · ")
    # a query says so when it reads the sample's views (on stderr: a csv result stays clean), and only then
    note = "note: sample_* views hold synthetic bars from --source sample, not market data"
    code, out, err = run_cli(capsys, "query", "select count(*) as n from SAMPLE_bars_1day", "-f", "csv")
    assert code == 0 and out == "n\n21\n" and note in err
    code, out, err = run_cli(capsys, "query", "select count(*) as n from bars_1day", "-f", "csv")
    assert code == 0 and out == "n\n21\n" and "synthetic" not in err


def test_the_sample_refuses_what_alpaca_would_and_keeps_the_rest(tmp_path: Path) -> None:
    """A ticker Alpaca would call invalid (1AAPL: well formed, but not beginning with a letter) fails alone,
    named, as it would with real keys: not synthetic bars for a symbol no market has. (AAPL$ is refused before
    any source is asked: tests/commands/test_symbols.py.)"""
    from dataengine import IngestionPipeline

    pipeline = IngestionPipeline(storage_dir=tmp_path / "store", progress=False)
    result = pipeline.ingest_symbols(["1AAPL", "AAPL", "BRK.B"], "2024-01-02", "2024-01-31", "day", source="sample")
    assert not result.ok
    assert list(result.failed) == ["1AAPL"] and result.failed["1AAPL"].startswith("invalid symbol: 1AAPL")
    assert sorted(result.successful) == ["AAPL", "BRK.B"]
    assert not (tmp_path / "store" / "sample_equities_1day" / "symbol=1AAPL").exists()
