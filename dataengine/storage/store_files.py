"""The small whole-file records a store keeps beside its partitions (JSON maps, one-file Parquet tables): read
whole, replaced whole and atomically through ``metadata/staging``, a damaged one a one-line StorageError naming
the file and ``verify --repair`` (which sets it aside and fetches or rebuilds what it held)."""
from __future__ import annotations

import json
from typing import Any

import polars as pl

from dataengine.errors import StorageError
from dataengine.storage.store import StorePath

REPAIR_HINT = "run 'dataengine verify --repair'"


def read_json_map(path: StorePath) -> dict[str, Any]:
    """A JSON object file as a dict; {} when there is none yet."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise StorageError(f"{path}: unreadable ({_short(exc)}); {REPAIR_HINT}") from None
    if not isinstance(data, dict):
        raise StorageError(f"{path}: unreadable (not a JSON object); {REPAIR_HINT}")
    return data


def write_json_map(path: StorePath, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` (keys sorted) atomically."""
    path.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


def read_table(path: StorePath, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """A one-file Parquet table with ``schema``'s columns; empty when there is none yet."""
    try:
        return path.store.read_parquet(path.key).select(list(schema))
    except FileNotFoundError:
        return pl.DataFrame(schema=schema)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise StorageError(f"{path}: unreadable ({_short(exc)}); {REPAIR_HINT}") from None


def write_table(path: StorePath, frame: pl.DataFrame) -> None:
    """Replace ``path`` with ``frame`` as zstd Parquet, atomically."""
    try:
        path.store.write_with(path.key, lambda tmp: frame.write_parquet(tmp, compression="zstd"))
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__

