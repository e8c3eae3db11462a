"""Tags pin versions; prune deletes what only old unpinned versions name, and frees what it says."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dataengine.storage import versions as v
from tests.storage.versions_support import Store, read_every_way, same, unique_bytes


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


def daily_runs(store: Store, days: int = 4) -> dict[int, pl.DataFrame]:
    """A run a day, each re-fetching AAPL's January (so each version has its own AAPL file)."""
    seen = {}
    for day in range(days):
        result = store.run(f"day-{day}", {("AAPL", 2024, 1): [float(day)] * (day + 1), ("MSFT", 2024, day + 1): [1.0]})
        assert result.version is not None
        seen[result.version] = store.directory()
    return seen


def test_a_tagged_version_survives_prune_through_every_engine(store: Store) -> None:
    seen = daily_runs(store)
    assert v.tag(store.table, "paper-2025", 1) == 1
    result = v.prune(store.table, keep_days=0.5)  # version 2 was current half a day ago
    assert result.kept_versions == (1, 2, 3) and result.oldest_kept == 2
    for engine, frame in read_every_way(store.table, 1).items():
        same(frame, seen[1], f"tagged version via {engine}")
    assert v.snapshot(store.table, tag="paper-2025").version == 1


def test_a_pruned_version_is_a_clear_error(store: Store) -> None:
    daily_runs(store)
    v.prune(store.table, keep_days=1.5)  # versions 1..3 were current in the last day and a half
    with pytest.raises(v.VersionError, match="version 0 of equities_1min was pruned"):
        v.snapshot(store.table, version=0)
    with pytest.raises(v.VersionError, match="was pruned"):
        v.tag(store.table, "too-late", 0)


def test_prune_frees_the_bytes_it_reports(store: Store) -> None:
    daily_runs(store)
    before = unique_bytes(store.root)
    result = v.prune(store.table, keep_days=0)
    assert result.files_deleted == 3 and result.bytes_freed > 0  # AAPL of versions 0, 1, 2
    horizon = (store.root / store.table.path / "_dataengine" / "pruned.json").stat().st_size  # written by prune
    assert before - unique_bytes(store.root) + horizon == result.bytes_freed


def test_prune_keeps_every_version_current_within_the_window(store: Store) -> None:
    seen = daily_runs(store)
    result = v.prune(store.table, keep_days=10)
    assert (result.files_deleted, result.bytes_freed, result.kept_versions) == (0, 0, (0, 1, 2, 3))
    same(read_every_way(store.table, 0)["snapshot"], seen[0], "version 0")


def test_the_latest_version_is_never_pruned(store: Store) -> None:
    daily_runs(store)
    store.clock.advance(days=365)
    assert v.prune(store.table, keep_days=0).kept_versions == (3,)
    assert v.check(store.table) == []
    same(read_every_way(store.table, 3)["scan_delta"], store.directory(), "latest")


def test_prune_takes_its_time_from_now(store: Store) -> None:
    daily_runs(store)
    assert v.prune(store.table, keep_days=1.5, now=store.clock.now.replace(year=2024)).files_deleted == 0


def test_a_tag_never_moves(store: Store) -> None:
    daily_runs(store, 2)
    v.tag(store.table, "pinned", 0)
    assert v.tag(store.table, "pinned", 0) == 0
    with pytest.raises(v.VersionError, match="pins version 0 already"):
        v.tag(store.table, "pinned", 1)
    assert v.untag(store.table, "pinned") == 0
    assert v.tag(store.table, "pinned") == 1 and v.tags(store.table) == {"pinned": 1}


def test_tags_show_in_history_and_bad_names_are_refused(store: Store) -> None:
    daily_runs(store, 2)
    v.tag(store.table, "a", 0)
    v.tag(store.table, "b", 0)
    assert [h.tags for h in v.history(store.table)] == [(), ("a", "b")]
    with pytest.raises(v.VersionError, match="use letters"):
        v.tag(store.table, "no spaces")
    with pytest.raises(v.VersionError, match=r"no tag 'c' on equities_1min \(tags: a, b\)"):
        v.snapshot(store.table, tag="c")
