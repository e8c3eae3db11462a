"""Index membership: the seed API, point-in-time snapshots in any order, the CSV format, bad input."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from dataengine.errors import UsageError
from dataengine.storage.metadata_store import MetadataStore, parse_day, validate_index_name


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    s = MetadataStore(tmp_path)
    s.store("spx", ["AAPL", "MSFT", "GE"], as_of="2020-01-01")
    s.store("spx", ["AAPL", "MSFT", "TSLA"], as_of="2020-12-21")  # GE out, TSLA in
    return s


def test_seed_api_store_and_load(tmp_path: Path) -> None:
    metadata = MetadataStore(tmp_path)
    metadata.store("s_and_p_500", ["AAPL", "MSFT", "GOOGL"])
    frame = metadata.load("s_and_p_500")
    assert frame["symbol"].to_list() == ["AAPL", "GOOGL", "MSFT"]
    assert frame.columns == ["symbol", "added", "removed"] and set(frame["added"]) == {date.today().isoformat()}
    assert (tmp_path / "metadata" / "indices" / "s_and_p_500.csv").is_file()


@pytest.mark.parametrize(
    ("as_of", "members"),
    [
        ("2019-12-31", []),  # before the first snapshot
        ("2020-01-01", ["AAPL", "GE", "MSFT"]),  # on it
        ("2020-06-30", ["AAPL", "GE", "MSFT"]),  # between
        ("2020-12-21", ["AAPL", "MSFT", "TSLA"]),  # on the second
        ("2024-01-01", ["AAPL", "MSFT", "TSLA"]),  # after
    ],
)
def test_members_as_of(store: MetadataStore, as_of: str, members: list[str]) -> None:
    assert store.members("spx", as_of) == members
    assert store.load("spx", as_of)["symbol"].to_list() == members


def test_csv_is_one_row_per_symbol_and_period(store: MetadataStore) -> None:
    text = store.index_path("spx").read_text()
    assert text.splitlines() == [
        "symbol,added,removed",
        "AAPL,2020-01-01,",
        "GE,2020-01-01,2020-12-21",
        "MSFT,2020-01-01,",
        "TSLA,2020-12-21,",
    ]


def test_csv_answers_point_in_time_in_duckdb(store: MetadataStore) -> None:
    query = (
        f"SELECT symbol FROM read_csv('{store.index_path('spx')}', all_varchar=true) "
        "WHERE added <= '2020-06-30' AND (removed IS NULL OR removed = '' OR '2020-06-30' < removed) ORDER BY symbol"
    )
    assert [r[0] for r in duckdb.sql(query).fetchall()] == ["AAPL", "GE", "MSFT"]


def test_older_snapshot_is_inserted_without_changing_later_ones(store: MetadataStore) -> None:
    store.store("spx", ["AAPL", "IBM"], as_of="2019-01-01")
    store.store("spx", ["AAPL", "MSFT", "GE", "XOM"], as_of="2020-06-01")
    assert store.members("spx", "2019-06-01") == ["AAPL", "IBM"]
    assert store.members("spx", "2020-01-01") == ["AAPL", "GE", "MSFT"]
    assert store.members("spx", "2020-07-01") == ["AAPL", "GE", "MSFT", "XOM"]
    assert store.members("spx", "2021-01-01") == ["AAPL", "MSFT", "TSLA"]
    assert [s.date for s in store.snapshots("spx")] == ["2019-01-01", "2020-01-01", "2020-06-01", "2020-12-21"]


def test_same_day_snapshot_replaces_it(store: MetadataStore) -> None:
    store.store("spx", ["AAPL", "MSFT", "NVDA"], as_of="2020-12-21")
    assert store.members("spx", "2021-01-01") == ["AAPL", "MSFT", "NVDA"]
    assert store.members("spx", "2020-06-01") == ["AAPL", "GE", "MSFT"]


def test_unchanged_snapshot_changes_nothing(store: MetadataStore) -> None:
    before = store.index_path("spx").read_text()
    store.store("spx", ["TSLA", "MSFT", "AAPL"], as_of="2022-01-01")
    assert store.index_path("spx").read_text() == before


def test_snapshots_say_what_changed(store: MetadataStore) -> None:
    first, second = store.snapshots("spx")
    assert (first.date, first.members, first.added, first.removed) == ("2020-01-01", 3, ["AAPL", "GE", "MSFT"], [])
    assert (second.date, second.members, second.added, second.removed) == ("2020-12-21", 3, ["TSLA"], ["GE"])


def test_names_lists_indices(store: MetadataStore) -> None:
    store.store("ndx", ["AAPL"], as_of="2021-01-01")
    assert store.names() == ["ndx", "spx"]


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", ".hidden", "", "x" * 101, "sp 500", "a..b"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError, match="invalid index name"):
        MetadataStore(tmp_path).store(name, ["AAPL"])
    assert not (tmp_path / "metadata").exists() or not any((tmp_path / "metadata").rglob("*.csv"))


def test_good_names_pass() -> None:
    for name in ("sp500", "s_and_p_500", "nasdaq-100", "R2000.v2"):
        assert validate_index_name(name) == name


def test_unknown_index(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown index 'nope'"):
        MetadataStore(tmp_path).members("nope")


@pytest.mark.parametrize("text", ["2024-13-01", "2024-02-30", "yesterday", "20240101", "2024-1-1"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(UsageError, match="is not a date"):
        parse_day(text)


def test_hand_edited_file_with_a_bad_date_names_the_line(store: MetadataStore) -> None:
    path = store.index_path("spx")
    path.write_text(path.read_text() + "IBM,2021-02-30,\n")
    with pytest.raises(UsageError, match=r"spx.csv:6: added '2021-02-30' is not a date"):
        store.members("spx")


def test_empty_snapshot_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least one symbol"):
        MetadataStore(tmp_path).store("spx", [])
