"""Is the store whole? Every partition's footer readable, its rows inside the month its path names, and no
partition that was once written gone; its metadata whole (ledgers, dataset records, corporate-action files:
:mod:`.verify_metadata`); and each version table whole (its Delta log, the files its latest version names:
:mod:`dataengine.storage.versions`). ``repair`` puts damaged files aside, rebuilds the metadata and the version
logs and fetches exactly the damaged months.

Only footers are read (through the footer index, which reads just those that changed since the last call), so
verifying a large store costs about what ``status`` does. A partition counts as gone when the index saw it
once (every run indexes what it wrote; ``status`` indexes everything) and its file is no longer there.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import polars as pl

from dataengine.datasets import DatasetKey, dataset_prefixes
from dataengine.reports.verify_metadata import MetadataDamage, check_metadata, repair_metadata
from dataengine.storage import digests, layout
from dataengine.storage.coverage import CoverageLedger, Interval
from dataengine.storage.footer_index import FooterCache
from dataengine.storage.process_identity import held_by_this_process
from dataengine.storage.run_lock import RunLock
from dataengine.storage.store import StorePath
from dataengine.storage.versions import (
    DamagedLogError,
    VersionTable,
    altered_files,
    check,
    check_log,
    committed_files,
    kept_versions,
    latest_partitions,
    mend,
    mend_log,
    resized_in_place,
    restorable,
    tags,
    unrecorded,
    version_copy,
)
from dataengine.timerange import ny_month_end, ny_month_start

if TYPE_CHECKING:
    from dataengine.orchestration.ingestion_pipeline import IngestionPipeline
    from dataengine.orchestration.result import IngestResult
    from dataengine.storage.versions.log import TableState

log = logging.getLogger(__name__)


@dataclass
class Damage:
    """One damaged or missing partition."""

    dataset: str
    symbol: str
    year: int
    month: int
    kind: str  # unreadable | corrupt | altered | empty | outside_month | missing
    path: str

    def describe(self) -> str:
        what = {
            "unreadable": "cannot be read (truncated, garbage or not Parquet)",
            "corrupt": "has bars that cannot be read (damaged inside; its footer reads)",
            "altered": "is not the bytes its version committed (changed in place)",
            "empty": "holds no bar",
            "outside_month": "holds bars outside the month its path names",
            "missing": "was written once and is gone",
        }[self.kind]
        return f"{self.dataset} {self.symbol} {self.year:04d}-{self.month:02d}: {self.path} {what}"


@dataclass
class VerifyReport:
    partitions: int = 0
    damage: list[Damage] = field(default_factory=list)
    metadata: list[MetadataDamage] = field(default_factory=list)  # damaged ledger lines, records, action files
    # damaged files of a version table's Delta log, and files a dataset's latest version names, missing or resized
    versions: list[str] = field(default_factory=list)
    version_datasets: list[str] = field(default_factory=list)  # the datasets those problems are of
    elapsed_s: float = 0.0
    repair: dict[str, Any] | None = None  # per dataset, the repair run's result
    repaired: int = 0  # damaged or missing partitions a repair made whole: put back from a version, or fetched again
    restored: int = 0  # of those, the ones put back from the latest version's copy of their file (nothing fetched)
    quarantined: int = 0  # of those, the damaged ones whose file it kept in metadata/quarantine/ (not the missing)
    # months a repair set aside and did not fetch again whole (it was stopped, or their symbol failed): their
    # files, if any, are whole, so only gaps (their coverage was dropped) and this list tell
    unrepaired: list[str] = field(default_factory=list)
    mended: list[str] = field(default_factory=list)  # what a repair did to the metadata, one line each

    @property
    def ok(self) -> bool:
        return not self.damage and not self.metadata and not self.versions and not self.unrepaired

    def asdict(self) -> dict[str, Any]:
        return {**asdict(self), "metadata": [m.asdict() for m in self.metadata], "ok": self.ok}


RESTORABLE = ("missing", "unreadable", "corrupt", "altered")  # damage a whole copy of the file undoes


def verify(
    root: StorePath, *, datasets: list[str] | None = None, symbols: list[str] | None = None, all_versions: bool = False,
    read_data: bool = False,
) -> VerifyReport:
    """Check every partition of ``datasets`` (default all) of ``symbols`` (default all) from its footer, and
    the files of each dataset's latest and tagged versions (``all_versions``: of every version kept).
    ``read_data``: also read every byte of every partition: a file whose footer reads can still have a page that
    fails to decode (``corrupt``), and a file its version committed with a digest (every run since digests are
    kept) can hold other bytes than committed though every bar decodes (``altered``: changed in place)."""
    started = time.perf_counter()
    names = datasets if datasets is not None else layout.dataset_names(root)
    index = FooterCache(root)
    good = index.partitions(names, symbols)
    report = VerifyReport(partitions=good.height + index.unreadable.height)
    for d, s, y, m, path in index.unreadable.iter_rows():
        report.damage.append(Damage(d, s, y, m, "unreadable", path))
    month_start = pl.datetime(pl.col("year"), pl.col("month"), 1, time_zone="America/New_York").dt.epoch("us")
    next_year = pl.col("year") + (pl.col("month") == 12).cast(pl.Int32)
    next_month = pl.col("month") % 12 + 1
    month_end = pl.datetime(next_year, next_month, 1, time_zone="America/New_York").dt.epoch("us") - 1
    outside = (pl.col("first_us") < month_start) | (pl.col("last_us") > month_end)
    flagged = good.with_columns(
        pl.when(pl.col("rows") == 0).then(pl.lit("empty")).when(outside).then(pl.lit("outside_month")).alias("kind")
    ).filter(pl.col("kind").is_not_null())
    for d, s, y, m, kind in flagged.select("dataset", "symbol", "year", "month", "kind").iter_rows():
        report.damage.append(Damage(d, s, y, m, kind, str(layout.partition_path(root, d, s, y, m))))
    hashed: dict[str, set[str]] | None = None  # with read_data: the version files hashed here as the dataset's
    if read_data:
        flagged_keys = set(flagged.select("dataset", "symbol", "year", "month").iter_rows())
        rest = [key for key in good.select("dataset", "symbol", "year", "month", "rows").iter_rows() if key[:4] not in flagged_keys]
        committed = {d: committed_files(VersionTable.of(root, d)) for d in names}
        files = [committed[key[0]].get(key[1:4]) for key in rest]
        checks = [(*key, file[1] if file else None) for key, file in zip(rest, files, strict=True)]
        hashed = {d: {file[0] for key, file in zip(rest, files, strict=True) if file and key[0] == d} for d in names}
        kinds = root.store.each(lambda key: _read_whole(root, *key), checks, local_threads=2)
        # no lock: a run may have replaced a file since its digest was taken; damage only if still named as then
        again = {d: committed_files(VersionTable.of(root, d)) for d in {c[0] for c, k in zip(checks, kinds, strict=True) if k == "altered"}}
        for (d, s, y, m, *_), kind in zip(checks, kinds, strict=True):
            if kind is not None and (kind != "altered" or again[d].get((s, y, m)) == committed[d].get((s, y, m))):
                report.damage.append(Damage(d, s, y, m, kind, str(layout.partition_path(root, d, s, y, m))))
    for d, s, y, m in index.gone.iter_rows():
        report.damage.append(Damage(d, s, y, m, "missing", str(layout.partition_path(root, d, s, y, m))))
    for d in _folders_gone(root, names) if datasets is None else ():
        for s, y, m in latest_partitions(VersionTable.of(root, d), symbols):
            report.damage.append(Damage(d, s, y, m, "missing", str(layout.partition_path(root, d, s, y, m))))
    report.metadata = check_metadata(root)
    by_dataset = check_versions(root, names, all_versions=all_versions, hashed=hashed, damaged=report.damage,
                                symbols=symbols)
    report.damage.sort(key=lambda x: (x.dataset, x.symbol, x.year, x.month))
    report.versions = [problem for problems in by_dataset.values() for problem in problems]
    report.version_datasets = sorted(by_dataset)
    report.elapsed_s = round(time.perf_counter() - started, 3)
    return report


def _read_whole(root: StorePath, dataset: str, symbol: str, year: int, month: int, rows: int,
                sha256: str | None) -> str | None:
    """What a read of the whole partition finds wrong: ``corrupt`` when a bar does not decode or there are not as
    many as its footer says, ``altered`` when every bar decodes but the bytes are not those its version committed
    (``sha256``, when recorded); None when nothing is. Bytes that match the digest are not decoded: they are
    the ones the run wrote."""
    try:
        data = root.store.read(layout.partition_path(root, dataset, symbol, year, month).key)
        if sha256 is not None and digests.of_bytes(data) == sha256:
            return None
        if pl.read_parquet(io.BytesIO(data)).height != rows:
            return "corrupt"
    except (pl.exceptions.PolarsError, OSError):
        return "corrupt"
    return "altered" if sha256 is not None else None


def _folders_gone(root: StorePath, present: list[str]) -> list[str]:
    """Datasets a version table remembers whose folder is gone whole (deleted by hand; on S3 every object of it
    deleted, which leaves no folder): each partition their latest version held is missing, as one deleted alone."""
    remembered = [name for name in layout.versions_dir(root).subdirs() if name.startswith(dataset_prefixes())]
    return sorted(set(remembered) - set(present))


def verify_and_repair(
    root: StorePath, pipeline: IngestionPipeline, *, datasets: list[str] | None = None, symbols: list[str] | None = None,
    all_versions: bool = False, read_data: bool = False,
) -> VerifyReport:
    """``verify --repair``: under the store's run lock (taken, or waited for, before anything is touched), set
    damaged files aside, fetch exactly those months again, and verify once more. The report is the one after
    the repair, with each dataset's repair run in ``repair``."""
    with pipeline.holding_store():
        from dataengine.storage.parquet_storage import ParquetStorage

        # temp files a killed older version left in partition directories (runs never look there)
        ParquetStorage(root).remove_stale_temp_files(deep=True)
        report = verify(root, datasets=datasets, symbols=symbols, all_versions=all_versions, read_data=read_data)
        if report.ok:
            return report
        # the metadata first: refetching a month needs its dataset's record (its feed), and a run its version log
        mended = repair_metadata(root, report.metadata, pipeline) if report.metadata else []
        version_datasets = set(report.version_datasets)
        mended += _version_log_repairs(root, version_datasets)
        # before anything commits: a commit would take the dataset's file in under a new name instead
        mended += _version_file_restores(root, version_datasets)
        runs, restored = repair(root, report, pipeline) if report.damage else ({}, [])
        mended += _version_repairs(root, {d.dataset for d in report.damage} | version_datasets)
        after = verify(root, datasets=datasets, symbols=symbols, all_versions=all_versions, read_data=read_data)
    after.repair = {d: r.asdict() for d, r in runs.items()}
    done = {(dataset, symbol) for dataset, run in runs.items() for symbol in run.successful}
    fetched = [d for d in report.damage if d not in restored]
    after.restored = len(restored)
    after.repaired = len(restored) + sum(1 for d in fetched if (d.dataset, d.symbol) in done)
    after.unrepaired = [f"{d.dataset} {d.symbol} {d.year}-{d.month:02d}" for d in fetched if (d.dataset, d.symbol) not in done]
    after.quarantined = sum(1 for d in report.damage if d.kind != "missing")
    after.mended = mended
    return after


def _version_log_repairs(root: StorePath, datasets: set[str]) -> list[str]:
    """Rebuild the damaged files of these datasets' version logs (:func:`~dataengine.storage.versions.mend_log`),
    the damaged ones kept under ``metadata/quarantine/``; one line per file."""
    from dataengine.storage.run_ledger import new_run_id
    from dataengine.storage.versions import Provenance

    aside = layout.quarantine_dir(root, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")).key
    notes = []
    for dataset in sorted(datasets):
        provenance = Provenance(run_id=new_run_id(), reason="repair", command="verify --repair")
        notes += mend_log(VersionTable.of(root, dataset), provenance, aside)
    return notes


def _version_file_restores(root: StorePath, datasets: set[str]) -> list[str]:
    """Files of these datasets' latest versions lost, their bytes still the dataset's: linked back, so every
    version that named them reads again (:func:`~dataengine.storage.versions.restore_version_files`)."""
    from dataengine.storage.versions import current_version, restore_version_files

    notes = []
    for dataset in sorted(datasets):
        table = VersionTable.of(root, dataset)
        restored = restore_version_files(table)
        if restored:
            notes.append(f"{len(restored)} file(s) of version {current_version(table)} of {dataset} linked back from "
                         "the dataset (the same bytes): every version that named them reads again")
    return notes


def _version_repairs(root: StorePath, datasets: set[str]) -> list[str]:
    """A month set aside and not fetched again (the source has no bar of it any more) is gone from the dataset,
    and a file replaced outside a run is in no version: the latest version must name the dataset as it is. One
    more version per repaired dataset, if anything differs; a note for each version made."""
    from dataengine.storage.run_ledger import new_run_id
    from dataengine.storage.run_versions import DatasetVersion
    from dataengine.storage.versions import Provenance, current_version

    notes = []
    for dataset in sorted(datasets):
        version = DatasetVersion(root, dataset, Provenance(run_id=new_run_id(), reason="repair", command="verify --repair"))
        before = current_version(version.table)
        version.sync()
        mended = mend(version.table, version.provenance)  # a file the latest version names, lost: re-linked
        for problem in mended.unresolved:
            log.warning("version table of %s: %s (its dataset file is damaged too: repair it first)", dataset, problem)
        after = current_version(version.table)
        if after != before:
            notes.append(f"version {after} of {dataset} holds the dataset's files as they are now")
    return notes


def check_versions(root: StorePath, datasets: list[str], *, all_versions: bool = False,
                   hashed: dict[str, set[str]] | None = None, damaged: list[Damage] | None = None,
                   symbols: list[str] | None = None) -> dict[str, list[str]]:
    """Per dataset with any: damaged files of its version log (every commit read whole, the newest
    checkpoint; on S3 a GET each), files its latest and tagged versions (``all_versions``: every version kept)
    name that are missing or not their recorded size (one stat each; on S3 a listing), and dataset files no
    version holds: what ``read_bars`` of the latest or a pinned version would fail on, or read otherwise.
    ``hashed`` (``--read-data``): also read those versions' files and name each that is not the bytes its
    commit recorded, except the table-relative paths given per dataset (hashed already as the dataset's).
    ``damaged``: where to add partitions whose dataset file the version's record shows damaged: other bytes than
    its digest at its size (a copy rotted), or, of ``symbols``, one inode with it and resized (a write over it)."""
    found: dict[str, list[str]] = {}
    holder = RunLock.holder(root)
    # a run holds the store, or that cannot be told; not this very process (verify --repair holds it itself)
    alive = holder is not None and holder.get("alive") is not False and not held_by_this_process(holder)
    for name in datasets:
        table = VersionTable.of(root, name)
        problems = [str(problem) for problem in check_log(table)]
        try:
            checked = check(table)
            latest = [str(problem) for problem in checked]
            problems += latest + _older_problems(table, set(latest), all_versions)
            if damaged is not None and root.local is not None:  # S3 objects are never changed in place
                seen = {(x.dataset, x.symbol, x.year, x.month) for x in damaged}
                damaged += [Damage(name, s, y, m, "altered", str(layout.partition_path(root, name, s, y, m)))
                            for s, y, m in resized_in_place(table, checked)
                            if (name, s, y, m) not in seen and (symbols is None or s in symbols)]
            if hashed is not None:
                problems += _altered(table, hashed.get(name, set()), all_versions)
            held, uncompared, pending, altered = unrecorded(table, runs_alive=alive)
            if damaged is not None:  # a copied store's file rotted: the version's copy may hold the bytes
                damaged += [Damage(name, c.symbol, c.year, c.month, "altered", str(root.at(str(c.path)))) for c in altered]
            how = ("was written by a run that ended without committing (killed), or replaced outside a run"
                   if pending and not alive else "was replaced outside a run")
            problems += [f"{change.path} {how}: no version holds it, so a read pinned to the latest version would not "
                         "read it (verify --repair records it as a version; the next run would too)" for change in held]
            if uncompared:
                problems.append(f"{table.dataset_path}: {uncompared} partition file(s) are not the files the latest "
                                "version names, though of their size (a copy of the store: cp -r, a restore?); not "
                                "compared byte for byte: verify --repair records them as a version")
        except DamagedLogError as exc:  # the latest version cannot be read: the log's damage says why
            problems = problems or [f"{exc.path}: damaged version log ({exc.detail})"]
        if problems:
            found[name] = problems
    return found


def _older_problems(table: VersionTable, known: set[str], every: bool) -> list[str]:
    """Files of tagged versions (the ones a backtest pinned; with ``every``, of every version kept) that are
    missing or not their recorded size. A file only an older version holds cannot be fetched back as it was,
    so ``--repair`` cannot mend it: the report says so rather than calling the store whole (a partition changed
    in place, not replaced, damages the versions whose file is a hard link of it)."""
    pinned = {version: name for name, version in tags(table).items()}
    versions = kept_versions(table)[:-1] if every else sorted(pinned)  # the latest was checked already
    out: list[str] = []
    for version in versions:
        for problem in check(table, version):
            if str(problem) not in known:
                known.add(str(problem))
                which = f"tag {pinned[version]!r}" if version in pinned else "untagged"
                out.append(f"{problem} (version {version}, {which}: the bars it held there cannot be restored)"
                           + ("" if version in pinned else "; versions --prune --keep-days D drops it once older"))
    return out


def _altered(table: VersionTable, hashed: set[str], every: bool) -> list[str]:
    """Files of the latest and tagged versions (``every``: every version kept) whose bytes are not those their
    commit recorded: changed in place, so a read pinned to them returns other bars than the run stored."""
    pinned = {version: name for name, version in tags(table).items()}
    kept = kept_versions(table)
    versions = [kept[-1], *(kept[:-1] if every else sorted(set(pinned) - {kept[-1]}))] if kept else []
    return [f"{path}: not the bytes version {version} committed (changed in place"
            + (f"; tag {pinned[version]!r}" if version in pinned else "") + ")"
            for version, path in altered_files(table, versions, hashed)]


def repair(root: StorePath, report: VerifyReport, pipeline: IngestionPipeline) -> tuple[dict[str, IngestResult], list[Damage]]:
    """Move damaged files to ``metadata/quarantine/`` (never deleted). Put each month back from the latest
    version's copy of its file when that copy is whole and not the damaged file itself (the bytes the store
    held, nothing fetched); drop the others' coverage and fetch exactly those months again through
    ``pipeline``. Returns each dataset's repair run and the damage put back. Call it with the store held
    (:meth:`IngestionPipeline.holding_store`): nothing may write between setting a file aside and fetching it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    by_dataset: dict[str, dict[str, list[Interval]]] = {}
    ledgers: dict[str, CoverageLedger] = {}
    restored: list[Damage] = []
    latest: dict[str, TableState | None] = {}  # per dataset, the version to put files back from (one look each)
    for item in report.damage:
        path = layout.partition_path(root, item.dataset, item.symbol, item.year, item.month)
        found = root.store.stat(path.key)
        table = VersionTable.of(root, item.dataset)
        if item.dataset not in latest:
            latest[item.dataset] = restorable(table)
        # bytes that read wrong (empty, another month's) would come back as they are from a copy of them
        copy = version_copy(table, latest[item.dataset], item.symbol, item.year, item.month,
                            damaged=found.tag if found is not None else None) if item.kind in RESTORABLE else None
        if found is not None:
            aside = layout.quarantine_dir(root, stamp) / path.relative_to(root)
            root.store.move(path.key, aside.key)
            log.warning("moved %s aside to %s", path, aside)
        if copy is not None:
            root.store.link(copy, path.key)
            log.warning("put %s back from the latest version's copy %s", path, copy)
            restored.append(item)
            continue
        span = (ny_month_start(item.year, item.month), ny_month_end(item.year, item.month))
        ledger = ledgers.setdefault(item.dataset, CoverageLedger(layout.coverage_path(root, item.dataset)))
        ledger.forget(item.symbol, *span)
        by_dataset.setdefault(item.dataset, {}).setdefault(item.symbol, []).append(span)
    index = FooterCache(root)
    results: dict[str, IngestResult] = {}
    for dataset in sorted({d.dataset for d in restored} - set(by_dataset)):
        index.forget_gone(dataset, [(d.symbol, d.year, d.month) for d in restored if d.dataset == dataset])
    for dataset, ranges in sorted(by_dataset.items()):
        key = DatasetKey.from_name(dataset)
        index.forget_gone(dataset, [(d.symbol, d.year, d.month) for d in report.damage if d.dataset == dataset])
        try:
            results[dataset] = pipeline.ingest_ranges(ranges, key)
        except KeyboardInterrupt as stop:  # stopped before its bars: its result came with the stop
            stopped: IngestResult | None = getattr(stop, "result", None)
            if stopped is None:
                raise
            results[dataset] = stopped
        if results[dataset].interrupted:  # a stop ends the repair: the other datasets' months stay unrepaired
            break
    return results, restored
