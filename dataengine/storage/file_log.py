"""An append-only log in a local file: the coverage ledgers and the run ledger of a local store.

JSON Lines appended with one ``O_APPEND`` write and an fsync each, so concurrent appenders (a run and a run
refused the lock) never interleave lines. A crash or a full disk mid-append leaves a last line without its
newline: before the first append the file is cut back to its last complete line (the cut bytes are kept
in ``metadata/torn/``), so every line stays readable by ``read_json`` and ``pl.read_ndjson``. Compaction
replaces the file atomically (:mod:`.atomic`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from dataengine.errors import StorageError
from dataengine.storage.atomic import cut_torn_tail, write_text_atomic


class FileLog:
    """The lines of one file. Thread-safe; ``fence`` is called before every write."""

    def __init__(self, path: Path, torn_dir: Path, *, fence: Callable[[], None] | None,
                 staging: Callable[[], Path]) -> None:
        self.path = path
        self.torn_dir = torn_dir
        self._fence = fence
        self._staging = staging
        self._tail_checked = False
        self._guard = threading.Lock()

    def lines(self) -> list[str]:
        """Every complete line (see :meth:`entries`)."""
        return [text for _, text in self.entries()]

    def entries(self) -> list[tuple[str, str]]:
        """Every complete line with where it is (``FILE:LINE``). Bytes that are not UTF-8 never raise: they are
        kept as surrogate escapes for the reader to judge; a torn last line (no newline yet) is left out."""
        try:
            text = self.path.read_bytes().decode("utf-8", "surrogateescape")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        lines = text.split("\n")
        lines.pop()  # after the last newline: "" or a torn line
        return [(f"{self.path}:{n}", line) for n, line in enumerate(lines, 1)]

    def tail(self, commits: int, block: int = 64 * 1024) -> list[str]:
        """The last ``commits`` lines, reading only the end of the file."""
        if commits <= 0:
            return []
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by the with below; only the open may fail here
        except FileNotFoundError:
            return []
        with handle:
            pos = handle.seek(0, os.SEEK_END)
            data = b""
            while pos > 0 and data.count(b"\n") <= commits:
                step = min(block, pos)
                pos -= step
                handle.seek(pos)
                data = handle.read(step) + data
        lines = [line for line in data.decode("utf-8", "replace").split("\n") if line.strip()]
        return lines[-commits:]  # with more than n newlines read, a partial first line is never among the last n

    def append(self, text: str, *, retry: bool = False) -> None:
        """Add ``text`` (whole lines) with one write and an fsync. ``retry`` is for the commit-object form of
        a log; a file append never conflicts."""
        if self._fence is not None:
            self._fence()
        data = (text if text.endswith("\n") else text + "\n").encode("utf-8")
        with self._guard:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self._tail_checked:
                    cut_torn_tail(self.path, self.torn_dir)
                    self._tail_checked = True
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def replace(self, text: str) -> None:
        """Make ``text`` the whole log, atomically."""
        if self._fence is not None:
            self._fence()
        with self._guard:
            try:
                write_text_atomic(self.path, text, temp_dir=self._staging())
            except OSError as exc:
                raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from None
