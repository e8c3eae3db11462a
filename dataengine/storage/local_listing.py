"""A local directory's files with their stat, as the store's protocol names them: one level (:func:`list_dir`)
or the whole tree below it (:func:`walk`), and :func:`stat_of` for one file's. :mod:`.local_store` answers its
listings with these."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dataengine.errors import StorageError
from dataengine.storage.store import Stat

# A directory that is not there (or is a file) lists as empty; one that cannot be read is an error: taken as
# empty, an unreadable partition read as "gone" or "never fetched" and unreadable metadata as "no indices".
_ABSENT = (FileNotFoundError, NotADirectoryError)


def _unreadable(directory: Path | str, exc: OSError) -> StorageError:
    return StorageError(f"cannot read the directory {directory}: {exc.strerror or exc}")

# Windows' directory listing gives no inode or link count (0): a stat by path there, as fingerprints and
# hard-link accounting need them.
_STAT_IN_LISTING = os.name != "nt"


def stat_of(st: os.stat_result) -> Stat:
    blocks = getattr(st, "st_blocks", None)
    disk = blocks * 512 if blocks is not None else st.st_size
    return Stat(st.st_size, f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}", st.st_mtime_ns, st.st_ino, disk, st.st_mtime,
                st.st_nlink)


def _entry_stat(entry: os.DirEntry[str]) -> Stat:
    return stat_of(entry.stat() if _STAT_IN_LISTING else os.stat(entry.path))


def list_dir(directory: Path, prefix: str) -> tuple[list[str], list[tuple[str, Stat]]]:
    """(subdirectory names, (``prefix`` + file name, stat) of each file) of ``directory``, sorted; nothing for a
    directory that is not there; StorageError for one that cannot be read."""
    dirs: list[str] = []
    files: list[tuple[str, Stat]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):  # gone since the listing
                    if entry.is_dir():
                        dirs.append(entry.name)
                    elif entry.is_file():
                        files.append((prefix + entry.name, _entry_stat(entry)))
    except _ABSENT:
        pass
    except OSError as exc:
        raise _unreadable(directory, exc) from None
    return sorted(dirs), sorted(files)


def walk(root: Path, directory: Path) -> list[tuple[str, Stat]]:
    """(key relative to ``root``, stat) of every file below ``directory``, at any depth, sorted; StorageError
    when a directory in it cannot be read."""
    # os.scandir by hand, not os.walk: a store is a directory per partition (6,000 for 500 symbols x a
    # year), and os.walk's islink per directory and a stat by path per file took twice as long; the file
    # type comes with the listing here. As os.walk, a link to a directory is not followed; unlike it,
    # only regular files (and links to them) are listed, never a FIFO or a socket.
    out: list[tuple[str, Stat]] = []
    skip = len(os.path.join(root, ""))  # the root and its separator, as each entry.path begins
    pending = [str(directory)]
    while pending:
        path = pending.pop()
        try:
            entries = os.scandir(path)
        except _ABSENT:  # gone since its parent was listed
            continue
        except OSError as exc:
            raise _unreadable(path, exc) from None
        with entries:
            for entry in entries:
                with contextlib.suppress(OSError):  # gone since the listing
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file():
                        out.append((entry.path[skip:].replace(os.sep, "/"), _entry_stat(entry)))
    return sorted(out)
