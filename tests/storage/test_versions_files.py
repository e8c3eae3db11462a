"""The contract of the store seam a version table stands on (:class:`VersionFiles`), over both stores: a local
directory and a prefix on the S3 test server."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataengine.storage.store import open_store
from dataengine.storage.versions import StoreFiles, VersionFiles


@pytest.fixture(params=["local", "s3"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> VersionFiles:
    root = request.getfixturevalue("s3_store") if request.param == "s3" else tmp_path
    return StoreFiles(open_store(root))


def test_link_makes_a_second_name_for_the_same_bytes(files: VersionFiles) -> None:
    files.put("a/data.parquet", b"bars")
    files.link("a/data.parquet", "t/symbol=A/run-1.parquet")
    assert files.read("t/symbol=A/run-1.parquet") == b"bars"
    one, two = files.stat_many(["a/data.parquet", "t/symbol=A/run-1.parquet"])
    assert one is not None and two is not None and one.fingerprint == two.fingerprint


def test_link_never_replaces_a_name(files: VersionFiles) -> None:
    files.put("a", b"new")
    files.put("b", b"committed")
    with pytest.raises(FileExistsError):
        files.link("a", "b")
    assert files.read("b") == b"committed"


def test_link_of_a_missing_file_says_so(files: VersionFiles) -> None:
    with pytest.raises(FileNotFoundError):
        files.link("nothing", "t/x.parquet")


def test_a_replaced_source_leaves_its_link_with_the_old_bytes(files: VersionFiles) -> None:
    files.put("a", b"old")
    files.link("a", "t/a-v0")
    files.put("a", b"newer")
    assert files.read("t/a-v0") == b"old"
    a, link = files.stat_many(["a", "t/a-v0"])
    assert a is not None and link is not None and a.fingerprint != link.fingerprint


def test_put_if_absent_writes_once(files: VersionFiles) -> None:
    assert files.put_if_absent("log/0.json", b"first")
    assert not files.put_if_absent("log/0.json", b"second")
    assert files.read("log/0.json") == b"first"


def test_read_with_a_limit_reads_the_head(files: VersionFiles) -> None:
    files.put("f", b"commitInfo\nadd\n")
    assert files.read("f", limit=10) == b"commitInfo"
    with pytest.raises(FileNotFoundError):
        files.read("missing")


def test_list_walks_a_prefix_with_sizes(files: VersionFiles) -> None:
    files.put("t/x/1", b"1")
    files.put("t/y/z/22", b"22")
    files.put("u/3", b"3")
    assert sorted((i.path, i.size) for i in files.list("t")) == [("t/x/1", 1), ("t/y/z/22", 2)]
    assert list(files.list("nowhere")) == []


def test_delete_reports_the_bytes_it_freed(files: VersionFiles) -> None:
    files.put("a", b"12345")
    files.link("a", "b")
    assert files.delete("b") in (0, 5)  # 0 where "b" was a hard link of "a"; 5 where it was a copy
    assert files.delete("a") == 5
    assert files.delete("a") == 0 and files.stat("a") is None


def test_uri_is_what_other_engines_open(files: VersionFiles) -> None:
    assert files.uri("metadata/versions/x").endswith("/metadata/versions/x")


def test_a_link_across_file_systems_is_a_copy_under_the_same_rules(tmp_path: Path) -> None:
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to link across")
    elsewhere = other / f"dataengine-test-{tmp_path.name}"
    elsewhere.mkdir()
    try:
        (tmp_path / "mnt").symlink_to(elsewhere)
        files = StoreFiles(open_store(tmp_path))
        files.put("mnt/data.parquet", b"bars")
        files.link("mnt/data.parquet", "t/run-1.parquet")
        assert files.read("t/run-1.parquet") == b"bars"
        with pytest.raises(FileExistsError):
            files.link("mnt/data.parquet", "t/run-1.parquet")
        assert [p.name for p in (tmp_path / "t").iterdir()] == ["run-1.parquet"]  # no temp file left
    finally:
        for path in elsewhere.iterdir():
            path.unlink()
        elsewhere.rmdir()


def test_read_many_reads_each_in_order_and_none_for_an_absent_one(files: VersionFiles) -> None:
    files.put("t/a", b"one")
    files.put("t/b", b"two")
    assert files.read_many(["t/b", "t/none", "t/a"]) == [b"two", None, b"one"]
