"""The one storage interface: a store's root and every path under it is a local :class:`pathlib.Path` or an
:class:`~dataengine.storage.s3.S3Path`, and the few operations that differ between the two are here.

Both kinds share the pathlib surface the store uses (``/``, ``name``, ``exists``, ``read_bytes``, ...). What a
local file system does with a call and S3 with a request (list a directory, read a Parquet file or its
footer, hand files to Polars) dispatches here, so the modules above never ask which backend they are on;
what differs in *guarantees* (the lock, append-only logs, atomic replace) is owned by the module of that
concept, which picks its form by :func:`is_s3`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dataengine.storage.s3 import S3Path, polars_options

if TYPE_CHECKING:
    import polars as pl
    import pyarrow.parquet
    from typing_extensions import TypeIs  # only for the checker: importing it costs every run ~15 ms

StorePath = Path | S3Path
T = TypeVar("T")
R = TypeVar("R")


def is_s3(path: object) -> TypeIs[S3Path]:
    return isinstance(path, S3Path)


def storage_request_counts(root: StorePath) -> dict[str, int]:
    """Requests sent to the store's service so far by this process, by kind (S3: LIST, GET, HEAD, PUT,
    DELETE); {} for a local store."""
    return root.client.request_counts() if is_s3(root) else {}


def each_file(root: StorePath, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``work`` on every item, in order: one after the other locally, where each is a fast system call, and
    sixteen at a time on S3, where each is a round trip (a page of daily bars touches ~500 partitions)."""
    if not is_s3(root) or len(items) < 2:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="s3") as pool:
        return list(pool.map(work, items))


def listdir(path: StorePath) -> list[str]:
    """Names right under a directory (a prefix on S3); [] when there is nothing."""
    if is_s3(path):
        return path.listdir()
    try:
        return os.listdir(path)
    except OSError:
        return []


def as_store_path(text: str) -> StorePath:
    """A path as :func:`str` wrote it (reports keep paths as text) back as a store path."""
    return S3Path.from_url(text) if text.startswith("s3://") else Path(text)


def relative_name(path: StorePath, root: StorePath) -> str:
    """``path`` relative to ``root``, as text (``equities_1min/symbol=A/...``)."""
    if is_s3(path) and is_s3(root):
        return path.relative_to(root)
    if isinstance(path, Path) and isinstance(root, Path):
        return str(path.relative_to(root))
    raise ValueError(f"{path} is not under {root}")


def move_aside(source: StorePath, target: StorePath) -> None:
    """Move a file out of the way, keeping it (a damaged partition to quarantine): a rename locally; on S3 a
    copy then a delete."""
    if is_s3(source):
        target.write_bytes(source.read_bytes())
        source.unlink()
        return
    assert isinstance(target, Path)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def read_parquet(path: StorePath, **kwargs: Any) -> pl.DataFrame:
    """One Parquet file whole (one GET on S3)."""
    import polars as pl

    if is_s3(path):
        return pl.read_parquet(io.BytesIO(path.read_bytes()), **kwargs)
    return pl.read_parquet(path, **kwargs)


def parquet_metadata(path: StorePath | str) -> pyarrow.parquet.FileMetaData:
    """A Parquet file's footer (on S3: one GET of the object; partitions are a few hundred KiB)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(path, str):
        path = as_store_path(path)
    if is_s3(path):
        return pq.read_metadata(pa.BufferReader(path.read_bytes()))
    return pq.read_metadata(path)


def scan_parquet(paths: Sequence[StorePath], **kwargs: Any) -> pl.LazyFrame:
    """A lazy scan of these files: local paths, or ``s3://`` URLs read by Polars itself with the store's
    credentials (one object per file, only the columns and row groups a query needs)."""
    import polars as pl

    if paths and is_s3(paths[0]):
        return pl.scan_parquet([str(p) for p in paths], storage_options=polars_options(paths[0]), **kwargs)
    return pl.scan_parquet([p for p in paths if isinstance(p, Path)], **kwargs)
