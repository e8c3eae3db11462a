"""Is the store's metadata whole? The ledgers (coverage, run ledger) line by line, the dataset records and the
corporate-action files whole. ``repair_metadata`` sets what is damaged aside under ``metadata/quarantine/``
(bad lines into a file of their own, bad files as they are: never deleted) and rebuilds what can be rebuilt:

* a coverage ledger is rewritten from its good lines (a dropped line's ranges count as not stored, and are
  fetched again by the next run that asks for them);
* the run ledger is rewritten from its good lines (the bad ones are history nobody can read);
* a dataset record is rebuilt from the dataset's name (timeframe, adjustment) and the run ledger (the feed and
  ``asof`` its runs used; when no run says, the next run records its own);
* corporate actions (``actions.parquet``), the dividend closes and the record of which symbols' actions were
  fetched (``fetched.json``) are fetched again: a damaged actions file takes ``fetched.json`` aside with it,
  so every symbol counts as never asked; ``repair`` then fetches them (``actions --update``), and should that
  fail the next ``ingest`` or ``actions --update`` does;
* the record of which actions an Alpaca-adjusted dataset was fetched under is rebuilt as "under none", so the
  next run fetches again every symbol an action since its first bar could have changed.

Each reader of these files already survives the damage with one line (a bad ledger line is skipped with a
warning naming ``FILE:LINE``; a bad record or actions file fails with the ``verify --repair`` hint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from dataengine.actions.schema import ACTION_SCHEMA
from dataengine.actions.store import CLOSE_SCHEMA
from dataengine.datasets import DatasetKey
from dataengine.errors import DataEngineError, StorageError
from dataengine.storage import dataset_record, layout
from dataengine.storage.coverage import CoverageLedger
from dataengine.storage.run_ledger import RunLedger, RunRecord
from dataengine.storage.store import StorePath
from dataengine.storage.store_files import read_json_map, read_table

if TYPE_CHECKING:
    from dataengine.orchestration.ingestion_pipeline import IngestionPipeline

log = logging.getLogger(__name__)

COVERAGE = "coverage ledger"
RUN_LEDGER = "run ledger"
DATASET_RECORD = "dataset record"
ACTIONS = "corporate actions"
CLOSES = "dividend closes"
FETCHED = "corporate-actions fetch record"
ADJUSTED = "adjusted-dataset record"


@dataclass
class MetadataDamage:
    """One damaged line of a ledger (``where`` is ``FILE:LINE``) or one damaged file (``where`` is the file)."""

    what: str  # COVERAGE, RUN_LEDGER, DATASET_RECORD, ACTIONS, ...
    where: str
    detail: str
    key: str = ""  # the store key of the log or file (for the repair)
    line: str = ""  # a bad line as read (bytes that are not UTF-8 as surrogate escapes)

    def describe(self) -> str:
        return f"{self.where}: {self.what}: {self.detail}"

    def asdict(self) -> dict[str, str]:
        return {"what": self.what, "where": self.where, "detail": self.detail}


def check_metadata(root: StorePath) -> list[MetadataDamage]:
    """Every damaged line of the ledgers and every damaged record or corporate-action file of the store."""
    found = _coverage_damage(root) + _ledger_damage(root)
    for name in _record_datasets(root):
        path = layout.read_dataset_record(root, name)
        if path is not None:
            found += _file_damage(path, DATASET_RECORD, _check_record)
    found += _file_damage(layout.actions_path(root), ACTIONS, lambda p: read_table(p, ACTION_SCHEMA))
    found += _file_damage(layout.closes_path(root), CLOSES, lambda p: read_table(p, CLOSE_SCHEMA))
    found += _file_damage(layout.fetched_actions_path(root), FETCHED, _check_fetched)
    for name in _listed(layout.adjusted_record_path(root, "x").parent, ".json"):
        found += _file_damage(layout.adjusted_record_path(root, name), ADJUSTED, _check_adjusted)
    return found


def _listed(directory: StorePath, suffix: str) -> list[str]:
    """Names under ``directory`` with ``suffix`` taken off (an S3 commit log is a "directory" of its own)."""
    return sorted({n.removesuffix(suffix) for n in directory.listdir() if not n.startswith(".")})


def _coverage_names(root: StorePath) -> list[str]:
    return sorted(set(layout.dataset_names(root)) | set(_listed(layout.coverage_path(root, "x").parent, ".jsonl")))


def _record_datasets(root: StorePath) -> list[str]:
    return sorted(set(layout.dataset_names(root)) | set(_listed(layout.dataset_record_path(root, "x").parent, ".json")))


def _coverage_damage(root: StorePath) -> list[MetadataDamage]:
    out = []
    for name in _coverage_names(root):
        path = layout.coverage_path(root, name)
        out += [MetadataDamage(COVERAGE, where, why, path.key, line) for where, line, why in CoverageLedger(path).damaged()]
    return out


def _ledger_damage(root: StorePath) -> list[MetadataDamage]:
    path = layout.ledger_path(root)
    out = []
    for where, line in root.store.log(path.key, RUN_LEDGER, fenced=False).entries():
        if line.strip() and not _is_record(line):
            out.append(MetadataDamage(RUN_LEDGER, where, "not a run record", path.key, line))
    return out


def _is_record(line: str) -> bool:
    if not line.isascii():  # records are written as ASCII JSON
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _check_record(path: StorePath) -> None:
    record = json.loads(path.read_bytes().decode("utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("feed", ""), str):
        raise ValueError("not a dataset record")


def _check_fetched(path: StorePath) -> None:
    if not all(isinstance(v, dict) for v in read_json_map(path).values()):
        raise ValueError("not a map of symbols")


def _check_adjusted(path: StorePath) -> None:
    if not all(isinstance(v, list) for v in read_json_map(path).values()):
        raise ValueError("not a map of symbols to action ids")


def _file_damage(path: StorePath, what: str, check: Callable[[StorePath], object]) -> list[MetadataDamage]:
    if not path.is_file():
        return []
    try:
        check(path)
    except FileNotFoundError:
        return []
    except (StorageError, ValueError, OSError) as exc:
        detail = str(exc).removeprefix(f"{path}: ").split("; run 'dataengine")[0]
        return [MetadataDamage(what, str(path), f"cannot be read ({' '.join(detail.split())[:160]})", path.key)]
    return []


# -- repair -----------------------------------------------------------------------------------------------


def repair_metadata(root: StorePath, damage: list[MetadataDamage], pipeline: IngestionPipeline | None = None,
                    *, stamp: str | None = None) -> list[str]:
    """Set ``damage`` aside under ``metadata/quarantine/<stamp>/`` and rebuild what it held (see the module).
    Call it with the store held (the run lock): it rewrites ledgers. Returns one note per thing done."""
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = layout.quarantine_dir(root, stamp)
    notes: list[str] = []
    lines = [d for d in damage if d.what in (COVERAGE, RUN_LEDGER)]
    for key in dict.fromkeys(d.key for d in lines):
        bad = [d for d in lines if d.key == key]
        kept = aside / f"{key}.bad-lines"
        kept.write_bytes(b"".join(d.line.encode("utf-8", "surrogateescape") + b"\n" for d in bad))
        _rewrite_without(root, key, bad)
        notes.append(f"set {len(bad)} damaged line(s) of {root / key} aside in {kept}")
    files = [d for d in damage if d not in lines]
    moved = {d.key for d in files}
    if any(d.what == ACTIONS for d in files) and layout.fetched_actions_path(root).is_file():
        moved.add(layout.fetched_actions_path(root).key)  # every symbol's actions count as never fetched
    for key in sorted(moved):
        root.store.move(key, (aside / key).key)
        notes.append(f"moved {root / key} aside to {aside / key}")
    for d in files:
        if d.what == DATASET_RECORD:
            notes.append(_rebuild_record(root, d.key))
        elif d.what == ADJUSTED:
            notes.append(_rebuild_adjusted(root, d.key))
    if any(d.what in (ACTIONS, CLOSES, FETCHED) for d in files):
        notes.append(_refetch_actions(pipeline))
    return notes


def _rewrite_without(root: StorePath, key: str, bad: list[MetadataDamage]) -> None:
    if bad[0].what == COVERAGE:
        CoverageLedger(root.at(key)).compact()  # rewritten from the pieces its good lines hold
        return
    log_ = root.store.log(key, RUN_LEDGER, fenced=False)
    skip = {d.where for d in bad}
    log_.replace("".join(line + "\n" for where, line in log_.entries() if where not in skip))


def _rebuild_record(root: StorePath, key: str) -> str:
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    if name == layout.DATASET_FILE.removesuffix(".json"):  # a legacy record inside the dataset directory
        name = key.split("/")[0]
    dataset = DatasetKey.from_name(name)
    runs = [r for r in _runs(root) if r.timeframe == dataset.timeframe.name and r.adjustment == dataset.adjustment
            and r.source == dataset.source]
    feeds = [r.feed for r in runs if r.feed]
    asofs = [r.asof for r in runs if r.asof]
    record = dataset_record.rebuild(root, dataset, feed=feeds[-1] if feeds else None, asof=asofs[-1] if asofs else None,
                                    created=runs[0].started if runs else None)
    unknown = [k for k in ("feed", "asof") if k not in record]
    tail = f"; {' and '.join(unknown)} unknown: the next run records its own" if unknown else ""
    return (f"rebuilt the record of {name} (feed {record.get('feed', '?')}, asof {record.get('asof', '?')}, "
            f"from {len(runs)} run(s) in the ledger){tail}")


def _runs(root: StorePath) -> list[RunRecord]:
    try:
        return RunLedger(root).all()
    except (StorageError, ValueError, TypeError):
        return []


def _rebuild_adjusted(root: StorePath, key: str) -> str:
    from dataengine.storage.store_files import write_json_map

    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    symbols = layout.symbols_in(layout.dataset_dir(root, name))
    write_json_map(root.at(key), {symbol: [] for symbol in symbols})
    return (f"rebuilt {root / key} as fetched under no action: the next {name} run fetches again each of its "
            f"{len(symbols)} symbol(s) that an action since its first bar could have changed")


def _refetch_actions(pipeline: IngestionPipeline | None) -> str:
    """Fetch again the actions of every source the store holds datasets of (each from its own source)."""
    later = "the next ingest (or 'dataengine actions --update') fetches them again"
    if pipeline is None:
        return f"corporate actions set aside: {later}"
    held: list[str | None] = [*sorted({layout.describe_dataset(n)["source"] for n in layout.dataset_names(pipeline.root)})]
    held = held or [None]  # no dataset: the source setting's
    done, failed = 0, 0
    for source in held:
        try:
            result = pipeline.update_corporate_actions(source=source)
        except DataEngineError as exc:
            return f"corporate actions set aside, not fetched again now ({exc}): {later}"
        done, failed = done + len(result.successful), failed + len(result.failed)
    if failed:
        return f"corporate actions fetched again for {done} symbol(s); {failed} failed: {later}"
    return f"corporate actions fetched again for {done} symbol(s)"
