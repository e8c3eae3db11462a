"""What a store holds, from metadata and Parquet footers, never from the rows.

:func:`store_status` answers "what do I have": the root and its size on disk; per dataset (timeframe and
adjustment) the symbols, rows, first and last bar, feed; the last runs from the ledger; the indices.
:func:`symbol_status` answers the same for one symbol, per dataset, with the months held, the months
missing between its first and last, and what the default run would fetch because it was never fetched, at
both ends (the planner's answer, :mod:`dataengine.reports.unfetched`, as ``gaps`` shows it).

Rows and first/last bars come from the footer index (:mod:`dataengine.storage.footer_index`), which reads only
the footers that changed since the last call.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from dataengine.config import Settings
from dataengine.datasets import DatasetKey
from dataengine.errors import StorageError, UsageError
from dataengine.loaders.symbol_loader import clean_symbols
from dataengine.storage import dataset_record, layout
from dataengine.storage.footer_index import EPOCH, KEY, FooterCache, refresh_cache
from dataengine.storage.metadata_store import MetadataStore
from dataengine.storage.run_ledger import RunLedger, RunRecord
from dataengine.storage.run_lock import RunLock, exited_holder
from dataengine.storage.store import Stat, StorePath, open_store
from dataengine.storage.store_root import check_readable_root
from dataengine.timeframes import parse_timeframe
from dataengine.timerange import DEFAULT_START, SIP_SAFE_DELAY_MINUTES, months_between

log = logging.getLogger(__name__)

def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def describe_dataset(name: str) -> dict[str, Any]:
    """``massive_equities_1min_split`` -> timeframe ``minute``, adjustment ``split``, source ``massive`` (from
    the name); ``synthetic`` for the sample source's datasets."""
    from dataengine.sources.source import SOURCES

    info = layout.describe_dataset(name)
    try:
        timeframe = parse_timeframe(info["label"]).name
    except UsageError:
        timeframe = info["label"]  # a directory this version does not know: shown as it is named
    return {"timeframe": timeframe, **info, "synthetic": SOURCES[info["source"]].synthetic}


def _dataset_info(root: StorePath, name: str) -> dict[str, Any]:
    info = describe_dataset(name)
    try:
        record = dataset_record.read(root, name) or {}
    except StorageError:  # a damaged record: status still answers, without the feed
        record = {}
    return {"name": name, **info, "feed": record.get("feed"), "adjustment": record.get("adjustment", info["adjustment"])}


def _other_disk_bytes(root: StorePath, datasets: list[str], counted: set[int]) -> int:
    """Bytes on disk outside the partition files: metadata, corporate actions, dataset records, and what
    older versions keep. A file with more than one name (locally, a version's hard link of a current
    partition) is counted once, as ``du`` counts it: not at all when ``counted`` (the partitions' inodes)
    holds it already."""
    seen = set(counted)

    def disk(st: Stat) -> int:
        if st.links > 1:
            if st.ino in seen:
                return 0
            seen.add(st.ino)
        return st.disk_bytes

    dirs, files = root.store.list_dir(root.key)
    total = sum(disk(st) for _, st in files)
    skip = set(datasets)
    for name in dirs:
        if name in skip:
            continue
        try:
            total += sum(disk(st) for _, st in (root / name).walk())
        except StorageError:
            if name in (layout.METADATA_DIR, layout.ACTIONS_DIR):
                raise
            # a directory not ours this account cannot read (lost+found at a mount's root, another user's
            # .Trash-1000): left out of the total, as status does not stop for it
    for name in datasets:  # a record still inside its dataset directory (stores written by earlier versions)
        legacy = root.store.stat(layout.legacy_dataset_record_path(root, name).key)
        total += legacy.disk_bytes if legacy is not None else 0
    return total


def _check_root(root: StorePath) -> None:
    check_readable_root(root)


def _damage(cache: FooterCache) -> dict[str, list[str]]:
    """Partitions the footer index found damaged or gone, for the report (``verify --repair`` mends them)."""
    return {
        "damaged": cache.unreadable["path"].to_list(),
        "missing_partitions": [layout.partition_relpath(*key) for key in cache.gone.iter_rows()],
    }


def run_summary(record: RunRecord) -> dict[str, Any]:
    """The short form of a ledger record that status shows."""
    return {
        "run_id": record.run_id,
        "started": record.started,
        "ended": record.ended,
        "elapsed_s": record.elapsed_s,
        "outcome": record.outcome,
        "exit_code": record.exit_code,
        "timeframe": record.timeframe,
        "source": record.source,
        "symbols_requested": record.symbols_requested,
        "symbols_ok": len(record.successful),
        "symbols_failed": len(record.failed),
        "rows_written": record.rows_written,
        # the dataset's version the run left (what a backtest pins); None from a ledger line written before runs
        # recorded it, or when the run's commit failed (version_error)
        "version": record.version,
        "requests": record.requests,
        "error": record.error,
        "command": " ".join(record.command),
        **({"storage_requests": record.storage_requests} if record.storage_requests else {}),
        **({"version_error": record.version_error} if record.version_error else {}),
    }


def store_status(root: str | Path | StorePath, *, runs: int = 5) -> dict[str, Any]:
    """Everything :command:`dataengine status` shows, as one JSON-ready dict."""
    started = time.perf_counter()
    root = open_store(root)
    _check_root(root)
    names = layout.dataset_names(root)
    cache = FooterCache(root)
    parts = cache.partitions(names, whole_store=True)
    per_dataset = (
        parts.group_by("dataset")
        .agg(
            pl.col("symbol").n_unique().alias("symbols"),
            pl.len().alias("partitions"),
            pl.col("rows").sum().alias("rows"),
            pl.col("first_us").min().alias("first_us"),
            pl.col("last_us").max().alias("last_us"),
            pl.col("size").sum().alias("data_bytes"),
            pl.col("blocks").sum().alias("disk_bytes"),
        )
        .to_dicts()
    )
    by_name = {d["dataset"]: d for d in per_dataset}
    datasets = []
    for name in names:
        d = by_name.get(name, {})
        datasets.append(
            {
                **_dataset_info(root, name),
                "symbols": d.get("symbols", 0),
                "partitions": d.get("partitions", 0),
                "rows": d.get("rows", 0),
                "first_bar": _iso(d.get("first_us")),
                "last_bar": _iso(d.get("last_us")),
                "data_bytes": d.get("data_bytes", 0),
                "disk_bytes": d.get("disk_bytes", 0),
            }
        )
    metadata = MetadataStore(root)
    indices: list[dict[str, Any]] = []
    for name in metadata.names():
        try:
            snaps = metadata.snapshots(name)
        except UsageError as exc:
            indices.append({"name": name, "error": str(exc)})
            continue
        indices.append(
            {"name": name, "members": snaps[-1].members if snaps else 0, "snapshots": [s.date for s in snaps]}
        )
    holder = RunLock.holder(root)
    return {
        "root": str(root),
        "disk_bytes": int(sum(d["disk_bytes"] for d in datasets)) + _other_disk_bytes(root, names, set(parts["ino"])),
        "data_bytes": int(sum(d["data_bytes"] for d in datasets)),
        "datasets": datasets,
        "running": holder if holder and holder.get("alive") is not False else None,
        "exited_holder": exited_holder(holder),  # a dead run's lease that still refuses runs (S3)
        "runs": [run_summary(r) for r in sorted(RunLedger(root).last(runs), key=lambda r: r.started, reverse=True)],
        "indices": indices,
        "versions": _versions(root),
        **_damage(cache),
        "footers_read": cache.footers_read,
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def symbol_status(
    root: str | Path | StorePath,
    symbol: str,
    *,
    history_start: date = DEFAULT_START,
    sip_delay_minutes: int = SIP_SAFE_DELAY_MINUTES,
    lag: int = 1,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """One symbol's coverage per dataset: rows, first/last bar, months held, months missing in between, and
    ``never_fetched``: the session ranges a default run (from ``history_start`` to now, ``sip_delay_minutes``
    and ``lag`` as the run's; with ``settings``, each dataset's source's history and plan limits) would fetch
    because they were never fetched, before the first bar and after the last one."""
    started = time.perf_counter()
    root = open_store(root)
    _check_root(root)
    (symbol,) = clean_symbols([symbol], source="symbol")  # spelled as ingest spells it: brk-b is BRK.B
    names = layout.dataset_names(root)
    cache = FooterCache(root)
    parts = cache.partitions(names, [symbol]).sort(KEY)
    datasets = []
    for name in names:
        mine = parts.filter(pl.col("dataset") == name)
        if mine.is_empty():
            continue
        held = [(int(y), int(m)) for y, m in mine.select("year", "month").iter_rows()]
        months = [f"{y:04d}-{m:02d}" for y, m in held]
        never = _never_fetched(root, name, symbol, history_start, sip_delay_minutes, lag, settings)
        datasets.append(
            {
                **_dataset_info(root, name),
                "rows": int(mine["rows"].sum()),
                "first_bar": _iso(mine["first_us"].min()),  # type: ignore[arg-type]
                "last_bar": _iso(mine["last_us"].max()),  # type: ignore[arg-type]
                "months_held": len(months),
                "first_month": months[0],
                "last_month": months[-1],
                "missing_months": _missing(held, never),
                "never_fetched": never,
                "disk_bytes": int(mine["blocks"].sum()),
            }
        )
    return {
        "root": str(root),
        "symbol": symbol,
        "datasets": datasets,
        "corporate_actions": _actions_of(root, symbol),
        **_damage(cache),
        "footers_read": cache.footers_read,
        "elapsed_s": round(time.perf_counter() - started, 3),
    }


def _never_fetched(root: StorePath, name: str, symbol: str, history_start: date, sip_delay_minutes: int, lag: int,
                   settings: Settings | None) -> list[list[str]]:
    # the planner and the bar store: imported for ``status SYMBOL`` only, the whole-store status stays light
    from dataengine.reports.unfetched import never_fetched_sessions
    from dataengine.storage.parquet_storage import ParquetStorage

    try:
        key = DatasetKey.from_name(name)
    except UsageError:
        return []  # a directory this version does not know: nothing to plan for it
    found = never_fetched_sessions(ParquetStorage(root), key, [symbol], history_start=history_start,
                                   sip_delay_minutes=sip_delay_minutes, lag=lag, settings=settings)
    return found.get(symbol, [])


def _versions(root: StorePath) -> list[dict[str, Any]]:
    """Per dataset with versions: how many are kept, the current one and its tags (``dataengine versions``
    adds the bytes only kept versions hold: a walk of the table, too slow for ``status``)."""
    from dataengine.reports.versions import kept_summary

    return kept_summary(root)


def _actions_of(root: StorePath, symbol: str) -> dict[str, Any]:
    """How many corporate actions are stored for ``symbol``, the latest one, and a rename away from it."""
    from dataengine.actions.schema import describe, renamed_to
    from dataengine.actions.store import ActionStore

    store = ActionStore(root)
    mine = store.select([symbol]).filter(pl.col("symbol") == symbol)
    renamed = renamed_to(mine, symbol)
    return {
        "count": mine.height,
        "latest": describe(mine.row(-1, named=True)) if mine.height else None,
        "renamed": {"to": renamed[0], "on": renamed[1].isoformat()} if renamed else None,
    }


def _missing(held: list[tuple[int, int]], never: list[list[str]]) -> list[str]:
    """Months between the first and last held that have no partition, as ``YYYY-MM``; not those never fetched
    (listed in ``never``, the sessions a run would fetch)."""
    from dataengine.reports.unfetched import month_never_fetched

    have = set(held)
    gone = [f"{y:04d}-{m:02d}" for y, m in months_between(held[0], held[-1]) if (y, m) not in have]
    return [month for month in gone if not month_never_fetched(month, never)]


__all__ = ["FooterCache", "refresh_cache", "store_status", "symbol_status"]
