"""``dataengine index add|show|list``: output, point-in-time answers, exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataengine.cli import main
from tests.helpers import read_only, run_cli, store_listing


@pytest.fixture(params=["local", "s3"])
def cli(request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """The CLI on a local store, and on a store on S3."""
    store = request.getfixturevalue("s3_store") if request.param == "s3" else str(tmp_path / "store")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--storage-dir", store, *args])
        out, err = capsys.readouterr()
        return code, out, err

    run.store = store  # type: ignore[attr-defined]
    return run


@pytest.fixture
def history(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("index", "add", "spx", "AAPL", "MSFT", "GE", "--as-of", "2020-01-01")[0] == 0
    assert cli("index", "add", "spx", "AAPL", "MSFT", "TSLA", "--as-of", "2020-12-21")[0] == 0


def test_add_reports_the_change(cli) -> None:  # type: ignore[no-untyped-def]
    cli("index", "add", "spx", "AAPL", "GE", "--as-of", "2020-01-01")
    code, out, _ = cli("index", "add", "spx", "AAPL", "brk-b", "--as-of", "2021-01-01")
    assert code == 0 and out.startswith("spx as of 2021-01-01: 2 members (+1 -1)")


def test_add_from_a_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "members.csv"
    listing.write_text("Symbol,Security\nAAPL,Apple\nBRK-B,Berkshire\n")
    code, out, _ = cli("index", "add", "mine", str(listing), "--as-of", "2024-01-02", "--json")
    assert code == 0 and json.loads(out)["members"] == 2
    assert cli("index", "show", "mine")[1].split() == ["AAPL", "BRK.B"]


@pytest.mark.parametrize(
    ("as_of", "members"),
    [("2019-06-01", []), ("2020-06-30", ["AAPL", "GE", "MSFT"]), ("2023-01-01", ["AAPL", "MSFT", "TSLA"])],
)
def test_show_as_of_before_between_after(cli, history, as_of: str, members: list[str]) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("index", "show", "spx", "--as-of", as_of)
    assert code == 0 and out.split() == members
    if not members:
        assert "no members on 2019-06-01 (first snapshot 2020-01-01)" in err


def test_show_json(cli, history) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("index", "show", "spx", "--as-of", "2020-06-30", "--json")
    assert code == 0
    assert json.loads(out) == {"name": "spx", "as_of": "2020-06-30", "count": 3, "symbols": ["AAPL", "GE", "MSFT"]}


def test_show_defaults_to_the_latest(cli, history) -> None:  # type: ignore[no-untyped-def]
    assert cli("index", "show", "spx")[1].split() == ["AAPL", "MSFT", "TSLA"]


def test_list_shows_snapshots(cli, history) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = cli("index", "list")
    assert code == 0
    assert out.splitlines() == [
        "spx: 3 members now, 2 snapshot(s)",
        "  2020-01-01      3 members  +3 -0",
        "  2020-12-21      3 members  +1 -1",
    ]
    listing = json.loads(cli("index", "list", "--json")[1])
    assert [s["date"] for s in listing["indices"][0]["snapshots"]] == ["2020-01-01", "2020-12-21"]


def test_ingest_csv_index_name_records_a_snapshot(alpaca, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    listing = tmp_path / "two.txt"
    listing.write_text("AAPL\nMSFT\n")
    code, _, _ = cli("ingest-csv", str(listing), "--index-name", "two", "--start", "2024-01-02", "--end", "2024-01-03", "-t", "day")
    assert code == 0
    assert cli("index", "show", "two")[1].split() == ["AAPL", "MSFT"]
    assert len(json.loads(cli("index", "list", "--json")[1])["indices"][0]["snapshots"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("index", "add", "../up", "AAPL"), "invalid index name '../up'"),
        (("index", "add", "a/b", "AAPL"), "invalid index name 'a/b'"),
        (("index", "show", ".."), "invalid index name '..'"),
        (("index", "show", "nope"), "unknown index 'nope'"),
        (("index", "add", "spx", "AAPL", "--as-of", "2024-02-30"), "--as-of '2024-02-30' is not a date"),
        (("index", "show", "spx", "--as-of", "soon"), "--as-of 'soon' is not a date"),
        (("index", "add", "spx", "missing.csv"), "symbol file missing.csv not found"),
    ],
)
def test_bad_input_exits_2(cli, history, tmp_path: Path, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    before = store_listing(cli.store)
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and message in err and "Traceback" not in err
    assert store_listing(cli.store) == before


def test_every_index_command_has_help(cli) -> None:  # type: ignore[no-untyped-def]
    for command in ("add", "show", "list"):
        code, out, _ = cli("index", command, "--help")
        assert code == 0 and "Usage:" in out and len(out.splitlines()) > 3


def test_a_store_it_cannot_write_is_exit_3_and_its_help_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The trial: exit 3 on a read-only store, while the help listed only 0 and 2."""
    store = tmp_path / "store"
    assert run_cli(capsys, "--storage-dir", str(store), "index", "add", "spx", "AAPL")[0] == 0
    with read_only(store) as reason:
        code, out, err = run_cli(capsys, "--storage-dir", str(store), "index", "add", "spx", "MSFT")
    assert code == 3 and not out and err == f"Error: cannot create the lock file {store}/metadata/indices.lock: {reason}\n"
    assert run_cli(capsys, "index", "show", "spx", "--storage-dir", str(store))[1] == "AAPL\n"
    exits = run_cli(capsys, "index", "add", "--help")[1].split("Exit ", 1)[1]
    assert "· 3 the store not writable (read-only" in " ".join(exits.split())
