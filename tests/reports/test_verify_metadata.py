"""Damaged metadata, on a local store and on S3: every reader says one line (never a traceback), ``verify``
names the damaged line or file, ``verify --repair`` sets it aside in ``metadata/quarantine/`` and rebuilds
what it held, after which the store is whole and exact again."""

from __future__ import annotations

import json

import polars as pl

from dataengine.storage.store import StorePath, open_store
from tests.helpers import assert_store_equals, expected, read_store, run_cli

SYMBOLS = ["AAPL", "MSFT", "NVDA"]
DAYS = ("2024-01-02", "2024-03-28")
BAD = b"\xff\xfe not a coverage line \x00\n"


def _ingest(capsys, *extra: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    return run_cli(capsys, "ingest", *SYMBOLS, "--start", DAYS[0], "--end", DAYS[1], "-t", "day", *extra)


def _coverage_object(root: StorePath) -> StorePath:
    """The coverage ledger's file (local) or its newest snapshot object (S3), which a run leaves compacted."""
    local = root / "metadata/coverage/equities_1day.jsonl"
    if local.is_file():
        return local
    snapshots = [p for p, _ in (root / "metadata/coverage/equities_1day").walk() if p.name.endswith(".snapshot.jsonl")]
    return max(snapshots, key=lambda p: p.name)


def _quarantined(root: StorePath, suffix: str) -> list[bytes]:
    return [p.read_bytes() for p, _ in (root / "metadata/quarantine").walk() if p.key.endswith(suffix)]


def test_a_bad_line_in_the_middle_of_a_coverage_ledger_is_skipped_named_and_set_aside(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    root = open_store(backend)
    assert _ingest(capsys)[0] == 0
    ledger = _coverage_object(root)
    lines = ledger.read_bytes().splitlines(keepends=True)
    assert len(lines) >= 3  # (on S3 the first is the lineage header)
    ledger.write_bytes(b"".join(lines[:-1]) + BAD + lines[-1])
    bad_line = len(lines)
    code, _, err = run_cli(capsys, "gaps", *SYMBOLS, "--start", DAYS[0], "--end", DAYS[1], "-t", "day")
    assert "Traceback" not in err and f"{ledger}:{bad_line}: not a coverage line" in err, err
    code, out, err = run_cli(capsys, "verify")
    assert code == 1 and f"{ledger}:{bad_line}: coverage ledger: not a coverage line" in out, out + err
    code, out, err = _ingest(capsys)
    assert code == 0 and "Traceback" not in err and f"{ledger}:{bad_line}" in err, err
    code, out, err = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "set 1 damaged line(s)" in out, out + err
    assert _quarantined(root, "coverage/equities_1day.jsonl.bad-lines") == [BAD]
    code, out, err = run_cli(capsys, "verify")
    assert code == 0 and out.startswith("store is whole"), out + err
    code, _, err = _ingest(capsys)
    assert code == 0 and "coverage line" not in err, err
    assert_store_equals(read_store(backend, "equities_1day"), expected(alpaca, SYMBOLS, *DAYS, "1Day"))


def test_a_broken_dataset_record_is_one_line_then_rebuilt_from_the_run_ledger(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    root = open_store(backend)
    assert _ingest(capsys, "--feed", "iex")[0] == 0
    record = root / "metadata/datasets/equities_1day.json"
    before = json.loads(record.read_bytes())
    record.write_bytes(b'{"feed": "iex", "asof": "2024-\xff')
    code, out, err = _ingest(capsys, "--feed", "iex", "--json")
    assert code == 3 and json.loads(out)["exit_code"] == 3
    assert err.count("\n") == 1 and f"{record}: unreadable dataset record" in err and "verify --repair" in err, err
    code, out, _ = run_cli(capsys, "verify")
    assert code == 1 and f"{record}: dataset record: cannot be read" in out
    code, out, err = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "rebuilt the record of equities_1day (feed iex, asof " in out, out + err
    after = json.loads(record.read_bytes())
    assert (after["feed"], after["asof"], after["timeframe"]) == (before["feed"], before["asof"], before["timeframe"])
    assert _quarantined(root, "metadata/datasets/equities_1day.json") == [b'{"feed": "iex", "asof": "2024-\xff']
    code, _, err = _ingest(capsys, "--feed", "sip")
    assert code == 2 and "refusing to add feed 'sip'" in err  # the rebuilt record still guards the dataset
    assert _ingest(capsys, "--feed", "iex")[0] == 0


def test_broken_corporate_actions_are_set_aside_and_fetched_again(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    alpaca.announce("forward_split", symbol="NVDA", new_rate=4, old_rate=1, ex_date="2024-02-12",
                    process_date="2024-02-12", record_date="2024-02-07", payable_date="2024-02-09")
    alpaca.announce("cash_dividend", symbol="MSFT", rate=0.75, special=False, foreign=False, ex_date="2024-02-14",
                    process_date="2024-03-14", record_date="2024-02-15", payable_date="2024-03-14")
    root = open_store(backend)
    assert _ingest(capsys)[0] == 0
    actions, closes = root / "corporate_actions/actions.parquet", root / "corporate_actions/closes.parquet"
    stored = pl.read_parquet(actions.read_bytes()), pl.read_parquet(closes.read_bytes())
    actions.write_bytes(b"PAR1 garbage")
    closes.write_bytes(b"")
    code, out, err = _ingest(capsys)
    errors = [line for line in err.splitlines() if line.startswith("Error:") or "Traceback" in line]
    assert code == 3 and len(errors) == 1 and f"{actions}: unreadable" in errors[0] and "verify --repair" in err, err
    code, out, _ = run_cli(capsys, "verify")
    assert code == 1 and f"{actions}: corporate actions: cannot be read" in out and f"{closes}: dividend closes" in out
    code, out, err = run_cli(capsys, "verify", "--repair")
    assert code == 0 and "corporate actions fetched again for 3 symbol(s)" in out, out + err
    assert pl.read_parquet(actions.read_bytes()).equals(stored[0])
    assert pl.read_parquet(closes.read_bytes()).equals(stored[1])
    assert _quarantined(root, "corporate_actions/actions.parquet") == [b"PAR1 garbage"]
    assert _quarantined(root, "corporate_actions/fetched.json")  # every symbol counted as never fetched
    assert _ingest(capsys)[0] == 0


def test_a_bad_run_ledger_record_is_named_and_set_aside(alpaca, backend: str, capsys) -> None:  # type: ignore[no-untyped-def]
    root = open_store(backend)
    assert _ingest(capsys)[0] == 0
    assert _ingest(capsys)[0] == 0
    local = root / "metadata/runs.jsonl"
    if local.is_file():
        first, second = local.read_bytes().splitlines(keepends=True)
        local.write_bytes(first + b"\xc3\x28 torn by a hand\n" + second)
        where = f"{local}:2"
    else:
        damaged = root / "metadata/runs/0000000000.jsonl"
        damaged.write_bytes(b"\xc3\x28 torn by a hand\n" + damaged.read_bytes())
        where = f"{damaged}:1"
    code, out, err = run_cli(capsys, "status")
    assert code == 0 and "Traceback" not in err, err
    code, out, _ = run_cli(capsys, "verify")
    assert code == 1 and f"{where}: run ledger: not a run record" in out, out
    code, out, err = run_cli(capsys, "verify", "--repair")
    assert code == 0, out + err
    assert _quarantined(root, ".bad-lines") == [b"\xc3\x28 torn by a hand\n"]
    code, out, _ = run_cli(capsys, "status", "--json")
    assert code == 0 and len(json.loads(out)["runs"]) >= 2
