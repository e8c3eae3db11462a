"""The result a run returns: a read-only mapping over the fields ``asdict()`` and ``--json`` give (the seed
README's ``result['successful']``), attributes as well, and the run ledger still filled from it."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from dataengine import IngestionPipeline, IngestResult
from tests.helpers import run_cli


def test_a_runs_result_is_a_mapping_over_its_fields(alpaca) -> None:  # type: ignore[no-untyped-def]
    alpaca.invalid_symbols = frozenset({"BADX"})
    result = IngestionPipeline(2).ingest_symbols(["AAPL", "BADX"], "2024-01-02", "2024-01-05", "day")
    assert isinstance(result, Mapping) and list(result) == list(result.asdict()) == list(result.keys())
    assert len(result) == len(result.asdict()) and dict(result) == dict(result.items()) == result.asdict()
    assert "failed" in result and "nope" not in result and 0 not in result
    assert result["successful"] == result.successful == ["AAPL"] and result.get("failed") == result.failed
    assert "invalid symbol" in result["failed"]["BADX"]
    assert result.get("nope") is None and result.get("nope", 7) == 7 and list(result.values())[1] == ["AAPL"]
    with pytest.raises(KeyError, match="nope"):
        result["nope"]


def test_properties_and_methods_are_attributes_not_entries() -> None:
    result = IngestResult(successful=["AAPL"])
    assert result.ok and result.exit_code == 0  # attribute access is as it was
    for name in ("ok", "exit_code", "nothing_found", "asdict"):
        assert name not in result
        with pytest.raises(KeyError):
            result[name]


def test_the_mapping_is_read_only() -> None:
    result = IngestResult()
    with pytest.raises(TypeError):
        result["failed"] = {}  # type: ignore[index]
    result.notes.append("mutable as attributes, as before")
    assert result["notes"] == ["mutable as attributes, as before"]


def test_a_result_equals_the_dict_of_its_entries_as_a_mapping_does() -> None:
    result = IngestResult(successful=["AAPL"], failed={"BADX": "invalid symbol"})
    assert result == result.asdict() and result.asdict() == result and dict(result) == result
    assert result != {**result.asdict(), "failed": {}} and result != {"successful": ["AAPL"]}
    assert result == IngestResult(successful=["AAPL"], failed={"BADX": "invalid symbol"}) and result != IngestResult()
    assert result != ["AAPL"] and result != "AAPL"
    with pytest.raises(TypeError):
        hash(result)


def test_the_cli_json_has_the_mappings_keys_and_the_exit_code(alpaca, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli(capsys, "ingest", "AAPL", "--start", "2024-01-02", "--end", "2024-01-05", "-t", "day",
                           "--json")
    assert code == 0 and list(json.loads(out)) == [*IngestResult(), "exit_code"]
