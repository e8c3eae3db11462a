"""The entries of a version table's Delta log, one file at a time: what each is called and where it lives,
which commits and checkpoints the log holds, and one commit read (whole, its ``commitInfo`` alone, or what
the readable lines of a damaged one still say).

Replaying versions (:mod:`.log`), writing commits (:mod:`.log_write`) and mending the log (:mod:`.log_repair`)
all name and read entries through here, so a commit is parsed one way: a commit dataengine wrote that holds
fewer actions than its ``commitInfo`` counts is damaged, never read as a smaller commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from dataengine.storage import digests
from dataengine.storage.versions.model import DamagedLogError, VersionError, VersionTable, decode_path

LOG_DIR = "_delta_log"
LAST_CHECKPOINT = "_last_checkpoint"  # deltalake's hint naming the newest checkpoint
_COMMIT = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.parquet$")


class _Add(msgspec.Struct):
    path: str
    size: int
    stats: str | None = None
    tags: dict[str, str | None] | None = None


class _Remove(msgspec.Struct):
    path: str


class _Txn(msgspec.Struct):
    appId: str
    version: int


class _Action(msgspec.Struct):
    add: _Add | None = None
    remove: _Remove | None = None
    txn: _Txn | None = None
    commitInfo: dict[str, Any] | None = None


class _Stats(msgspec.Struct):
    numRecords: int | None = None


_ACTION = msgspec.json.Decoder(_Action)
_STATS = msgspec.json.Decoder(_Stats)


@dataclass(frozen=True)
class LogListing:
    """The versions a table's log holds (sorted), and those with a (single-file) checkpoint."""

    commits: tuple[int, ...]
    checkpoints: tuple[int, ...]

    @property
    def latest(self) -> int | None:
        return self.commits[-1] if self.commits else None


@dataclass(frozen=True)
class Commit:
    """One commit, parsed: its ``commitInfo``, the paths it added (with size and rows) and removed, its txns, and
    the digest of each added file's bytes where it records one (by path)."""

    version: int
    info: dict[str, Any]
    adds: list[tuple[str, int, int | None]]
    removes: list[str]
    txns: dict[str, int]
    sha256: dict[str, str] = field(default_factory=dict)


def log_path(table: VersionTable, name: str = "") -> str:
    return f"{table.path}/{LOG_DIR}/{name}" if name else f"{table.path}/{LOG_DIR}"


def commit_name(version: int) -> str:
    return f"{version:020d}.json"


def checkpoint_name(version: int) -> str:
    return f"{version:020d}.checkpoint.parquet"


def list_log(table: VersionTable) -> LogListing:
    commits, checkpoints = [], []
    prefix = log_path(table)
    for info in table.files.list(prefix):
        name = info.path[len(prefix) + 1 :]
        if match := _COMMIT.match(name):
            commits.append(int(match.group(1)))
        elif match := _CHECKPOINT.match(name):
            checkpoints.append(int(match.group(1)))
    commits.sort()
    checkpoints.sort()
    return LogListing(tuple(commits), tuple(checkpoints))


def read_commit(table: VersionTable, version: int) -> Commit:
    """Commit ``version`` parsed; DamagedLogError when its file cannot be read whole (see :func:`parse_commit`)."""
    path = log_path(table, commit_name(version))
    try:
        data = table.files.read(path)
    except FileNotFoundError:
        raise VersionError(f"version {version} of {table.dataset} does not exist") from None
    return parse_commit(table, version, data)


def parse_commit(table: VersionTable, version: int, data: bytes) -> Commit:
    """The bytes of commit ``version`` parsed. Raises DamagedLogError naming the file when a line is not a Delta
    action (bytes cut or flipped), the file is empty, or a commit of dataengine's holds fewer ``add`` or
    ``remove`` actions than its ``commitInfo`` counts (cut at a line's end)."""
    path = log_path(table, commit_name(version))
    info: dict[str, Any] = {}
    adds: list[tuple[str, int, int | None]] = []
    removes: list[str] = []
    txns: dict[str, int] = {}
    sha256: dict[str, str] = {}
    if not data.strip():
        raise DamagedLogError(table.files.uri(path), path, "empty")
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            action = _ACTION.decode(line)
        except msgspec.DecodeError as exc:
            raise DamagedLogError(table.files.uri(path), path, f"line {number}: {exc}") from None
        if action.add is not None:
            adds.append((decode_path(action.add.path), action.add.size, _rows(action.add.stats)))
            if action.add.tags and (digest := action.add.tags.get(digests.TAG)):
                sha256[adds[-1][0]] = digest
        elif action.remove is not None:
            removes.append(decode_path(action.remove.path))
        elif action.txn is not None:
            txns[action.txn.appId] = action.txn.version
        elif action.commitInfo is not None:
            info = action.commitInfo
    missing = _missing_actions(info, len(adds), len(removes))
    if missing:
        raise DamagedLogError(table.files.uri(path), path, f"cut short: {missing}")
    return Commit(version, info, adds, removes, txns, sha256)


def _missing_actions(info: dict[str, Any], adds: int, removes: int) -> str:
    """What a commit dataengine wrote lacks against the counts in its ``commitInfo`` ("" when whole, or when
    another writer's commit does not say)."""
    metrics = info.get("operationMetrics") if isinstance(info.get("dataengine"), dict) else None
    if not isinstance(metrics, dict):
        return ""
    try:
        want_adds, want_removes = int(metrics["numFiles"]), int(metrics["numRemovedFiles"])
    except (KeyError, TypeError, ValueError):
        return ""
    if (adds, removes) == (want_adds, want_removes):
        return ""
    return f"{adds} of {want_adds} add and {removes} of {want_removes} remove actions"


@dataclass
class Salvaged:
    """What the readable lines of a (possibly damaged) commit say, by partition directory: ``adds`` the file it
    added (path, size, rows), ``removes`` the file it removed (path, size: None when the action does not say);
    ``table`` its ``protocol``/``metaData`` actions as written; ``whole`` whether every line was readable and
    nothing is missing against its ``commitInfo``'s counts."""

    info: dict[str, Any] | None = None
    table: list[dict[str, Any]] = field(default_factory=list)
    txns: dict[str, int] = field(default_factory=dict)
    adds: dict[str, tuple[str, int, int | None]] = field(default_factory=dict)
    removes: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    whole: bool = True
    sha256: dict[str, str] = field(default_factory=dict)  # the digest each readable add recorded, by path

    @property
    def touched(self) -> set[str]:
        return set(self.adds) | set(self.removes)


def salvage_commit(data: bytes) -> Salvaged:
    """Every action of a commit's bytes that can still be read, line by line; never raises."""
    found = Salvaged(whole=bool(data.strip()))
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            action = msgspec.json.decode(line)
            kind, body = next(iter(action.items())) if isinstance(action, dict) and len(action) == 1 else ("", None)
            if not isinstance(body, dict):
                raise ValueError("not one Delta action")
            if kind == "commitInfo":
                found.info = body
            elif kind in ("protocol", "metaData"):
                found.table.append(action)
            elif kind == "txn":
                found.txns[str(body["appId"])] = int(body["version"])
            elif kind == "add":
                path = decode_path(str(body["path"]))
                found.adds[path.rsplit("/", 1)[0]] = (path, int(body["size"]), _rows(body.get("stats")))
                tags = body.get("tags")
                if isinstance(tags, dict) and isinstance(tags.get(digests.TAG), str):
                    found.sha256[path] = tags[digests.TAG]
            elif kind == "remove":
                path = decode_path(str(body["path"]))
                size = body.get("size")
                found.removes[path.rsplit("/", 1)[0]] = (path, int(size) if size is not None else None)
        except (msgspec.DecodeError, ValueError, KeyError, TypeError):
            found.whole = False
    if found.info is not None and _missing_actions(found.info, len(found.adds), len(found.removes)):
        found.whole = False
    return found


def read_commit_info(table: VersionTable, version: int) -> dict[str, Any]:
    """A commit's ``commitInfo``, reading only the head of the file (:mod:`.log_write` writes it first)."""
    path = log_path(table, commit_name(version))
    try:
        head = table.files.read(path, limit=64 * 1024)
    except FileNotFoundError:
        raise VersionError(f"version {version} of {table.dataset} does not exist") from None
    first, newline, _ = head.partition(b"\n")
    if newline or len(head) < 64 * 1024:
        try:
            action = _ACTION.decode(first)
        except msgspec.DecodeError as exc:
            raise DamagedLogError(table.files.uri(path), path, f"line 1: {exc}") from None
        if action.commitInfo is not None:
            return action.commitInfo
    return read_commit(table, version).info  # written by someone else: commitInfo may be anywhere


def _rows(stats: str | None) -> int | None:
    if not stats:
        return None
    try:
        return _STATS.decode(stats).numRecords
    except msgspec.DecodeError:
        return None
