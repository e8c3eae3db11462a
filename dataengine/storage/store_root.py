"""Which directories may hold a store: checked before anything is written, and marked once one is made.

A store is a directory with ``metadata/`` or ``equities_*`` dataset directories in it; a new one is marked by
``metadata/store.json`` (format version, creation time). A run refuses, before writing anything, a root that
cannot be meant: ``/`` (or a drive root), a home directory itself, a path whose parent does not exist (a
typo), and a non-empty directory that is not a store (it would mix our files with someone else's, and the
query sandbox would open to all of it).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from dataengine.errors import StorageError, UsageError
from dataengine.storage import layout
from dataengine.storage.atomic import write_text_atomic
from dataengine.storage.s3 import S3Path
from dataengine.storage.store_path import StorePath, is_s3

STORE_FILE = "store.json"
FORMAT_VERSION = 1


def is_store(root: StorePath) -> bool:
    return layout.metadata_dir(root).is_dir() or bool(layout.dataset_names(root))


def check_writable_root(root: StorePath, *, create: bool = False) -> bool:
    """Raise :class:`UsageError` for a root a run must not write to; return True when the store would be new.

    ``create``: the root is the default location nobody typed (the platform's user data dir): missing parents
    are not a typo there (on a fresh account ``~/.local/share`` does not exist yet) and are made, with the
    store, by the run's first write."""
    if is_s3(root):
        return _check_s3_root(root, writing=True)
    path = Path(os.path.abspath(root.expanduser()))
    if create and not path.exists():
        return True
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise UsageError(f"refusing to use {path} as a store: it is the root of a file system; pass --storage-dir DIR")
    if resolved == Path.home().resolve():
        raise UsageError(f"refusing to use your home directory {path} as a store; pass a directory inside it")
    if not path.parent.is_dir():
        raise UsageError(f"--storage-dir {path}: its parent directory {path.parent} does not exist (a typo?)")
    if not path.exists():
        return True
    if not path.is_dir():
        raise UsageError(f"--storage-dir {path} is a file, not a directory")
    if is_store(path):
        return False
    if any(not name.startswith(".") for name in os.listdir(path)):
        raise UsageError(
            f"{path} is not empty and is not a dataengine store (no metadata/ and no equities_* datasets); "
            "pass an empty or new directory"
        )
    return True


def mark_store(root: StorePath) -> bool:
    """Write ``metadata/store.json`` if the store has none; True when this made a new store."""
    marker = layout.metadata_dir(root) / STORE_FILE
    if marker.is_file():
        return False
    new = not is_store(root)
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {"format_version": FORMAT_VERSION, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    text = json.dumps(record, indent=2) + "\n"
    if is_s3(marker):
        _create_checking_conditions(marker, text.encode())
    else:
        write_text_atomic(marker, text)
    return new


def _create_checking_conditions(marker: S3Path, body: bytes) -> None:
    """Create the marker with ``If-None-Match: *``, then try again: the service must refuse the second create.
    The lock and the commits rely on it; a service that ignores the condition (an old MinIO, some gateways)
    would let two runs write at once, so the store is refused there, once, when it would be created."""
    if marker.client.put(marker.key, body, if_none_match=True) is None:
        return  # another run created it just now
    if marker.client.put(marker.key, body, if_none_match=True) is not None:
        marker.unlink()
        raise StorageError(f"{marker.parent.parent}: this S3 service ignores conditional writes (If-None-Match), "
                           "which the run lock and the coverage commits need; use a service that honours them (AWS S3 does)")


def check_readable_root(root: StorePath) -> StorePath:
    """The root of an existing store, or :class:`UsageError` (nothing here, or a directory that is no store)."""
    if is_s3(root):
        _check_s3_root(root, writing=False)
        return root
    path = root.expanduser()
    if not path.is_dir():
        raise _no_store(path)
    if not is_store(path):
        raise UsageError(f"{path} is not a dataengine store (no metadata/ and no equities_* datasets)")
    return path


def _check_s3_root(root: S3Path, *, writing: bool) -> bool:
    """The bucket must exist (a typo in its name is a one-line error, not a new bucket); a prefix holding other
    things than a store is refused like a non-empty local directory. True when the store would be new."""
    root.client.check_bucket()
    if is_store(root):
        return False
    if not writing:
        raise _no_store(root)
    if next(root.iter_objects(limit=1), None) is not None:
        raise UsageError(f"{root} is not empty and is not a dataengine store; pass an empty or new prefix")
    return True


def _no_store(root: StorePath) -> UsageError:
    return UsageError(f"no store at {root} (nothing ingested yet? set --storage-dir or DATAENGINE_STORAGE_DIR)")
