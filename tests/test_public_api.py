"""The names the product description promises stay importable, and nothing else leaks into __all__."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import dataengine
from dataengine import errors

PROMISED = {"IngestionPipeline", "AlpacaClient", "ParquetStorage", "MetadataStore", "SymbolLoader"}


PUBLIC = {
    *PROMISED, "IngestResult", "Settings", "read_bars", "scan_bars", "connect", "current_version", "__version__",
    "DataEngineError", "UsageError", "ConfigError", "AuthError", "FatalRunError", "SourceError", "StorageError",
    "DatasetMismatchError", "MissingSymbolWarning",
    "LockError", "SourceUnreachableError", "RequestRejectedError",  # what a run raises (exit 3), docs/api.md lists
    "DamagedPartitionError",  # what read_bars raises for a file that cannot be read
    "MassiveClient",  # the second vendor's client, beside AlpacaClient (issue 25)
}


def test_all_is_exactly_the_public_api_and_resolves() -> None:
    assert set(dataengine.__all__) == PUBLIC  # a name added or dropped is a decision, made here too
    assert len(dataengine.__all__) == len(PUBLIC)  # no name twice
    for name in dataengine.__all__:
        assert getattr(dataengine, name) is not None


def test_the_api_page_lists_exactly_the_exported_errors() -> None:
    """docs/api.md's Errors section and ``dataengine``'s error classes name the same classes, both ways: a user
    reading the page can write ``except dataengine.LockError``, and every exported error is documented."""
    page = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    section = page.split("::: dataengine.errors", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\s+- (\w+)$", section, re.MULTILINE)
    exported = [n for n in dataengine.__all__ if isinstance(getattr(dataengine, n), type)
                and issubclass(getattr(dataengine, n), (Exception, Warning))]
    assert sorted(listed) == sorted(exported) and len(listed) == len(set(listed))
    for name in listed:
        assert getattr(dataengine, name) is getattr(errors, name)


def test_subpackages_expose_the_described_modules() -> None:
    from dataengine.api import AlpacaClient  # the product description's import path
    from dataengine.loaders import SymbolLoader
    from dataengine.orchestration import IngestionPipeline
    from dataengine.storage import MetadataStore, ParquetStorage

    assert (AlpacaClient, SymbolLoader, IngestionPipeline, MetadataStore, ParquetStorage) == (
        dataengine.AlpacaClient, dataengine.SymbolLoader, dataengine.IngestionPipeline,
        dataengine.MetadataStore, dataengine.ParquetStorage)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        dataengine.NoSuchThing  # noqa: B018


def test_reading_commands_do_not_import_alpaca() -> None:
    code = "import sys, dataengine.cli; print('alpaca' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_deprecated_wrapper_still_works_and_warns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sys.modules.pop("dataengine.alpaca_api_data", None)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        from dataengine import alpaca_api_data
    assert callable(alpaca_api_data.fetch_data) and callable(alpaca_api_data.store_data)
    from datetime import datetime, timezone

    import polars as pl

    frame = pl.DataFrame({"symbol": ["AAPL"], "timestamp": [datetime(2024, 1, 2, 15, tzinfo=timezone.utc)],
                          "open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1],
                          "trade_count": [1], "vwap": [1.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        stats = alpaca_api_data.store_data(frame, "minute", storage_dir=str(tmp_path))
    assert stats.rows_added == 1


def test_deprecated_fetch_data_reads_from_alpaca(alpaca) -> None:  # type: ignore[no-untyped-def]
    sys.modules.pop("dataengine.alpaca_api_data", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from dataengine import alpaca_api_data

        frame = alpaca_api_data.fetch_data("AAPL", "2024-01-02", "2024-01-02", "day")
    assert frame.height == 1 and frame["symbol"].to_list() == ["AAPL"]


def test_the_sources_package_names_every_source_and_what_each_can_do() -> None:
    import dataengine.sources as sources

    assert sources.__all__ == ["AlpacaClient", "MassiveClient", "SOURCES", "SampleSource", "SourceInfo", "source_info"]
    assert sorted(sources.SOURCES) == ["alpaca", "massive", "sample"] and sources.SampleSource.info.synthetic
    assert dataengine.MassiveClient is sources.MassiveClient and "MassiveClient" in dataengine.__all__


def test_the_read_package_names_resolve_when_first_used() -> None:
    """``dataengine.read`` imports its modules lazily (status must not pay for DuckDB): every name it exports
    still resolves, to the function of the module that owns it."""
    from dataengine import read

    assert sorted(read.__all__) == sorted(read._LAZY) == sorted(read.__dir__())
    for name in read.__all__:
        value = getattr(read, name)
        assert value.__module__ == read._LAZY[name], name
    with pytest.raises(AttributeError):
        read.no_such_reader  # noqa: B018
