"""``verify``: what it flags in a store that something other than dataengine changed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import assert_store_equals, expected, read_store, run_cli


def test_another_months_readable_bars_under_a_partition_path_are_flagged(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A sync tool or a hand copies February's file over January's: every footer reads fine, every bar is a
    good bar, but not of the month the path names (a reader filtering on month=1 would get February)."""
    code, _, err = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-01", "--end", "2024-03-31", "-t", "day")
    assert code == 0, err
    symbol = tmp_path / "store" / "equities_1day" / "symbol=AAPL" / "year=2024"
    (symbol / "month=01" / "data.parquet").write_bytes((symbol / "month=02" / "data.parquet").read_bytes())
    code, out, _ = run_cli(capsys, "verify", "--json")
    damage = json.loads(out)["damage"]
    assert code == 1
    assert [(d["symbol"], d["month"], d["kind"]) for d in damage] == [("AAPL", 1, "outside_month")]
    code, out, _ = run_cli(capsys, "verify")
    assert code == 1 and "equities_1day AAPL 2024-01" in out and "holds bars outside the month its path names" in out


def test_a_repair_says_which_files_it_kept_aside(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: verify --repair of a partition deleted by hand said "damaged files kept in
    quarantine", though a deleted file leaves nothing to keep. A repair now says it fetched them again, and
    names the quarantine only for damaged files it kept."""
    assert run_cli(capsys, "-q", "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-02-29", "-t", "day")[0] == 0
    (tmp_path / "store/equities_1day/symbol=AAPL/year=2024/month=01/data.parquet").unlink()
    for name in ("data.parquet", *(p.name for p in (tmp_path / "store/metadata/versions/equities_1day/symbol=AAPL/year=2024/month=01").iterdir())):
        (tmp_path / "store/metadata/versions/equities_1day/symbol=AAPL/year=2024/month=01" / name).unlink(missing_ok=True)
    code, out, _ = run_cli(capsys, "verify", "--repair")  # its version's copy gone too: fetched again
    assert code == 0 and "repaired 1 partition(s): 1 fetched again\n" in out and "quarantine" not in out
    (tmp_path / "store/equities_1day/symbol=MSFT/year=2024/month=02/data.parquet").write_bytes(b"not parquet")
    code, out, _ = run_cli(capsys, "verify", "--repair")  # damaged in place: its version's copy (a link) too
    assert code == 0 and "repaired 1 partition(s): 1 fetched again; the 1 damaged file(s) kept in " in out


def test_read_data_finds_a_file_damaged_inside_whose_footer_reads_and_repair_fetches_it(alpaca, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Found by a user's trial: 200 bytes overwritten mid-file, the size unchanged. The footers read, so verify
    called the store whole while reads failed. --read-data reads every bar and names the file; with --repair
    the month is fetched again (the version's copy is the same damaged bytes: a hard link)."""
    import json

    assert run_cli(capsys, "-q", "ingest", "AAPL", "MSFT", "--start", "2024-01-02", "--end", "2024-01-31")[0] == 0
    part = tmp_path / "store/equities_1min/symbol=AAPL/year=2024/month=01/data.parquet"
    with part.open("r+b") as handle:
        handle.seek(part.stat().st_size // 3)
        handle.write(b"\xff" * 200)
    assert run_cli(capsys, "verify")[0] == 0  # footers only: it cannot tell
    code, out, _ = run_cli(capsys, "verify", "--read-data")
    assert code == 1 and "AAPL 2024-01" in out and "has bars that cannot be read (damaged inside" in out
    code, out, _ = run_cli(capsys, "verify", "--read-data", "--repair", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["repaired"] == 1 and report["restored"] == 0
    assert_store_equals(read_store(tmp_path / "store"), expected(alpaca, ["AAPL", "MSFT"], "2024-01-02", "2024-01-31"))
