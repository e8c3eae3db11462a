"""Versions as a user handles them: pins and prunes per dataset key (dataengine.reports.versions)."""

from __future__ import annotations

from pathlib import Path

from dataengine import IngestionPipeline
from dataengine.datasets import DatasetKey
from dataengine.reports.versions import prune_versions, table_of
from dataengine.storage.store import open_store


def test_prune_by_key_reaches_a_dataset_stored_with_alpacas_adjustment(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-15", "day", adjustment="split").ok
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-02-29", "day", adjustment="split", full_refresh=True).ok
    root, key = open_store(tmp_path / "store"), DatasetKey.of("day", "split")  # no raw day dataset in this store
    report = prune_versions(root, [key], keep_days=0)
    assert list(report.datasets) == [table_of(root, key).dataset] == [key.dirname]
    assert report.datasets[key.dirname]["kept_versions"] == [1] and report.datasets[key.dirname]["files_deleted"] == 1


def test_versions_marks_what_a_prune_took_and_keeps_tagged_ones_readable(alpaca, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """After a prune the listing says which versions can no longer be read, instead of showing them as any other
    (a pinned read of one then fails: the list must not promise it)."""
    from dataengine.commands.versions import render
    from dataengine.reports.versions import pin_version, versions_report

    p = IngestionPipeline(max_workers=2)
    for end in ("2024-01-31", "2024-02-29", "2024-03-28"):
        assert p.ingest_symbols(["AAPL"], "2024-01-02", end, "day").ok
    root, key = open_store(tmp_path / "store"), DatasetKey.of("day")
    pin_version(root, key, "paper", 0)
    assert all(v["readable"] for v in versions_report(root, key)["versions"])
    pruned = prune_versions(root, [key], keep_days=0)
    assert pruned.datasets["equities_1day"]["versions_dropped"] == 1  # 1; 0 is tagged (a user's trial: said nowhere)
    report = versions_report(root, key)
    assert {v["version"]: v["readable"] for v in report["versions"]} == {2: True, 1: False, 0: True}
    lines = {line.split()[0]: line for line in render(report).splitlines()[3:]}
    assert lines["1"].endswith("(pruned: no longer readable)") and "pruned" not in lines["0"] + lines["2"]


def test_a_time_copied_from_versions_pins_that_version(alpaca, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The times ``versions`` shows paste into --as-of: with their Z (a time without an offset is New York's,
    five hours off) and to the millisecond (two runs a second apart are two versions)."""
    from tests.helpers import run_cli

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").version == 0
    assert p.ingest_symbols(["AAPL"], "2024-02-01", "2024-02-29", "day").version == 1
    code, out, _ = run_cli(capsys, "versions", "-t", "day")
    assert code == 0 and "committed (UTC)" in out
    shown = {int(line.split()[0]): line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()}
    for version, rows in ((0, 21), (1, 41)):
        code, out, err = run_cli(capsys, "query", "select count(*) as n from bars_1day", "-f", "csv", "--as-of", shown[version])
        assert code == 0 and out == f"n\n{rows}\n", (shown, err)


def test_bytes_held_only_by_older_versions_are_the_same_figure_on_both_stores(backend: str) -> None:
    """Found by a user's trial: on S3, after runs that rewrote nothing, `versions` reported every version file
    as "held only by older versions", the current version's copies included, which no prune can free."""
    from dataengine.reports.versions import versions_report
    from dataengine.storage.versions import snapshot

    p = IngestionPipeline(max_workers=2)
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-15", "day").version == 0
    assert p.ingest_symbols(["AAPL", "MSFT"], "2024-01-02", "2024-02-15", "day", full_refresh=True).version == 0
    root, key = open_store(backend), DatasetKey.of("day")
    assert versions_report(root, key)["kept_bytes"] == 0  # one version: nothing only an older one holds
    assert p.ingest_symbols(["AAPL"], "2024-02-01", "2024-02-29", "day").version == 1
    table = table_of(root, key)
    old = {f.path for f in snapshot(table, version=0).files()} - {f.path for f in snapshot(table).files()}
    assert len(old) == 1  # AAPL's February, rewritten with its second half
    assert versions_report(root, key)["kept_bytes"] == sum(st.disk_bytes for path, st in root.at(table.path).walk()
                                                           if path.key in {root.at(o).key for o in old})


def test_a_time_before_the_first_version_is_named_as_typed(alpaca, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """``--as-of 2020-01-01`` is a New York day: the error names it so, not the UTC instant it ends at, and
    says when the first version was made (as ``versions`` shows it)."""
    import pytest

    from dataengine.read import read_bars
    from dataengine.storage.versions import VersionError
    from tests.helpers import run_cli

    assert IngestionPipeline(max_workers=2).ingest_symbols(["AAPL"], "2024-01-02", "2024-01-31", "day").version == 0
    first = [line.split()[1] for line in run_cli(capsys, "versions", "-t", "day")[1].splitlines() if line.strip()[:1] == "0"]
    for typed, shown in (("2020-01-01", "2020-01-01 New York time"), ("2020-01-01T09:30Z", "2020-01-01T09:30Z")):
        code, out, err = run_cli(capsys, "query", "select 1", "--as-of", typed)
        assert (code, out) == (2, "")
        assert err == f"Error: no dataset in {tmp_path / 'store'} had a version yet as of {shown}: the first was made {first[0]}\n"
    with pytest.raises(VersionError, match=f"^equities_1day had no version yet as of 2020-01-01 New York time: its first is from {first[0]}$"):
        read_bars("AAPL", "2024-01-02", "2024-01-31", "day", as_of="2020-01-01")
