"""A dataset's record: which source and feed it holds, how renamed symbols are mapped (``asof``), when it was
made. A record without ``source`` (every record written before there were other sources) is Alpaca's.

``metadata/datasets/{dataset}.json``, replaced atomically; stores written by earlier versions kept it as
``_dataset.json`` inside the dataset directory, where it is still read and from where the next claim moves it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from dataengine.datasets import DEFAULT_SOURCE, DatasetKey
from dataengine.errors import DatasetMismatchError, StorageError
from dataengine.storage import layout
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.store import StorePath
from dataengine.timerange import NEW_YORK


def read(root: StorePath, key: DatasetKey | str) -> dict[str, Any] | None:
    """The record, or None for a dataset that has none yet."""
    path = layout.read_dataset_record(root, key)
    if path is None:
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else None
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise StorageError(f"{path}: unreadable dataset record ({' '.join(str(exc).split())[:120]}); "
                           "run 'dataengine verify --repair' to rebuild it") from None


def check(root: StorePath, key: DatasetKey, feed: str, asof: str | None = None) -> None:
    """Refuse to mix sources, feeds, or symbol mappings (``asof``), in one dataset (:class:`DatasetMismatchError`).
    A dataset that holds nothing yet (no partition, no coverage, no version) takes any feed and ``asof``."""
    _binding(root, key, feed, asof)


def _binding(root: StorePath, key: DatasetKey, feed: str, asof: str | None) -> dict[str, Any] | None:
    """The record that binds a run of ``feed`` and ``asof`` (None: there is none, or it is of a dataset that
    holds nothing, whose next claim replaces it); :class:`DatasetMismatchError` when the run would mix."""
    info = read(root, key)
    if info is None:
        return None
    where = layout.dataset_dir(root, key)
    held = str(info.get("source") or DEFAULT_SOURCE)
    if held != key.source:
        raise DatasetMismatchError(
            f"{where} holds {held} bars (its record says so); refusing to add {key.source} bars: a dataset holds one "
            f"source's bars (renamed by hand? {held}'s belong in {DatasetKey(key.timeframe, key.adjustment, held).dirname}; "
            "or use another --storage-dir)"
        )
    if _mismatch(info, feed, asof) and _holds_nothing(root, key):
        return None  # the record of a run that stored nothing (a 401, a closed port) binds nothing
    if info.get("feed") not in (None, feed):
        raise DatasetMismatchError(
            f"{where} holds feed {info['feed']!r} bars; refusing to add feed {feed!r} "
            f"(use --feed {info['feed']} or another --storage-dir)"
        )
    if asof is not None and info.get("asof") not in (None, asof):
        raise DatasetMismatchError(
            f"{where} maps renamed symbols as of {info['asof']}; refusing to add bars mapped "
            f"as of {asof} (leave --asof out, or use another --storage-dir)"
        )
    return info


def _mismatch(info: dict[str, Any], feed: str, asof: str | None) -> bool:
    return info.get("feed") not in (None, feed) or (asof is not None and info.get("asof") not in (None, asof))


def _holds_nothing(root: StorePath, key: DatasetKey) -> bool:
    """No partition, no coverage and no version: the dataset is as new, whatever its record says. (A version
    means it held bars once: a repair may have set them all aside, and they were of the record's feed.)"""
    if next(layout.iter_partitions(layout.dataset_dir(root, key)), None) is not None:
        return False
    if CoverageLedger(layout.coverage_path(root, key)).pieces():
        return False
    return not (layout.versions_dir(root, key.dirname) / "_delta_log").is_dir()


def claim(root: StorePath, key: DatasetKey, feed: str, asof: str | None = None) -> str:
    """Check feed and ``asof``, and record them for a new dataset; return the dataset's ``asof``.

    Every fetch of a dataset sends the same ``asof``, so renamed symbols map the same way whatever day a run
    happens on: the one given for a new dataset, else the New York date it was created on."""
    info = _binding(root, key, feed, asof)
    legacy = layout.legacy_dataset_record_path(root, key)
    if info is not None and info.get("asof") and info.get("feed") and not legacy.is_file():
        return str(info["asof"])
    now = datetime.now(timezone.utc)
    record = info or {
        "source": key.source,
        "timeframe": key.timeframe.label,
        "adjustment": key.adjustment,
        "feed": feed,
        "created": now.isoformat(timespec="seconds"),
    }
    record["asof"] = record.get("asof") or asof or now.astimezone(NEW_YORK).date().isoformat()
    record.setdefault("feed", feed)  # a record rebuilt without knowing its feed learns it from the next run
    layout.dataset_record_path(root, key).write_text(json.dumps(record, indent=2) + "\n")
    if legacy.is_file():
        legacy.unlink()  # moved out of the dataset directory (stores written by earlier versions)
    return str(record["asof"])


def rebuild(root: StorePath, key: DatasetKey, *, feed: str | None, asof: str | None, created: str | None) -> dict[str, Any]:
    """Write a new record for a dataset whose record was damaged (``verify --repair``): its timeframe and
    adjustment from its name, its feed and ``asof`` as its runs recorded them (None: unknown, the next run
    records its own). Returns the record."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record: dict[str, Any] = {"source": key.source, "timeframe": key.timeframe.label, "adjustment": key.adjustment,
                              "created": created or now, "rebuilt": now}
    if feed:
        record["feed"] = feed
    if asof:
        record["asof"] = asof
    layout.dataset_record_path(root, key).write_text(json.dumps(record, indent=2) + "\n")
    return record

