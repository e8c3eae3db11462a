"""Which roots may hold a store: checked before anything is written, and marked once one is made.

A store is a directory (or an S3 prefix) with ``metadata/`` or ``equities_*`` dataset directories in it; a
new one is marked by ``metadata/store.json`` (format version, creation time). A run refuses, before writing
anything, a root that cannot be meant (the store checks its own kind: ``/``, a home directory itself, a
missing parent that looks like a typo, a bucket that does not exist) and a non-empty directory that is not a
store (it would mix our files with someone else's, and the query sandbox would open to all of it).
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone

from dataengine.datasets import dataset_prefixes
from dataengine.errors import UsageError
from dataengine.storage import layout
from dataengine.storage.store import StorePath

FORMAT_VERSION = 1


def is_store(root: StorePath) -> bool:
    return _holds_a_store(root.root.subdirs())


def _holds_a_store(dirs: list[str]) -> bool:
    """Whether a root with these directories is a store: ``metadata/`` or a dataset of any source in it."""
    return layout.METADATA_DIR in dirs or any(name.startswith(dataset_prefixes()) for name in dirs)


def check_writable_root(root: StorePath) -> bool:
    """Raise :class:`UsageError` for a root a run must not write to; return True when the store would be new."""
    root = root.root
    if root.store.check_root(writing=True):
        return True  # nothing there yet (the default location, or a new directory whose parent exists)
    # One listing decides: asked in two (is it a store? is it empty?), a run that began the store in between
    # (its lock, in metadata/) made a new prefix look like someone else's files to a run starting with it.
    dirs, files = root.store.list_dir(root.key)
    if _holds_a_store(dirs):
        return False
    if any(not name.startswith(".") for name in dirs + [key.rsplit("/", 1)[-1] for key, _ in files]):
        raise UsageError(
            f"{root} is not empty and is not a dataengine store (no metadata/ and no datasets); "
            "pass an empty or new directory"
        )
    return True


def mark_store(root: StorePath) -> bool:
    """Write ``metadata/store.json`` if the store has none; True when this made a new store."""
    marker = layout.store_marker(root)
    if marker.is_file():
        return False
    new = not is_store(root)
    record = {"format_version": FORMAT_VERSION, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    root.store.create_marker(marker.key, (json.dumps(record, indent=2) + "\n").encode())
    return new


def check_readable_root(root: StorePath) -> StorePath:
    """The root of an existing store, or :class:`UsageError` (nothing here, or a directory that is no store)."""
    root = root.root
    root.store.check_root(writing=False)
    if not root.is_dir():
        raise _no_store(root)
    if not is_store(root):
        raise UsageError(f"{root} is not a dataengine store (no metadata/ and no datasets)")
    return root


def _no_store(root: StorePath) -> UsageError:
    return UsageError(f"no store at {root} (nothing ingested yet? set --storage-dir, storage_dir= from Python, or DATAENGINE_STORAGE_DIR)")


def unmake_store(root: StorePath) -> bool:
    """Take away a store that a run made and stored nothing in, while that run still holds its lock (the lock,
    the caller's to release with ``remove=True``, is left). True when the store holds only what the start of a
    run makes before it asks its source anything (the marker, the records of the datasets it claimed, the lock,
    empty directories under ``metadata/``): their files and directories are deleted then. False, with nothing
    deleted, when it holds anything else: a run record, bars, corporate actions, a file of someone's. Names
    beginning with a dot beside ``metadata/`` are never looked at: they were there before (a new store's root
    may hold them) and stay."""
    root = root.root
    dirs, files = root.store.list_dir(root.key)
    if any(not name.startswith(".") for name in [*dirs, *(key.rsplit("/", 1)[-1] for key, _ in files)]
           if name != layout.METADATA_DIR):
        return False
    made = [path for path, _ in layout.metadata_dir(root).walk()]
    lock = layout.lock_path(root)
    starts = {lock, layout.store_marker(root)}
    if any(path not in starts and path != layout.dataset_record_path(root, path.name.removesuffix(".json"))
           for path in made):
        return False
    for path in made:
        if path != lock:
            path.unlink()
    local = layout.metadata_dir(root).local
    if local is not None:  # directories are a local store's own (S3 has none to take away)
        for directory in sorted((d for d in local.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty after all: kept
                directory.rmdir()
    return True


def sweep_made_root(root: StorePath, *, made: bool) -> None:
    """After :func:`unmake_store` and the lock's release: the empty ``metadata/`` directory of a local store,
    and its root when the run ``made`` it. A directory another run filled meanwhile (its lock) stays."""
    local = root.root.local
    if local is None:
        return
    for directory in (local / layout.METADATA_DIR, local) if made else (local / layout.METADATA_DIR,):
        with contextlib.suppress(OSError):
            directory.rmdir()
