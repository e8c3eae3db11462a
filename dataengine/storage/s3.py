"""A store on S3 (or an S3-compatible service: MinIO, Cloudflare R2, GCS's S3 API): its paths.

:class:`S3Path` is a store path on S3 with the part of :mod:`pathlib` the store uses (``/``, ``name``,
``parent``, ``exists``, ``read_bytes``, ``write_bytes``, ...), so that the store's layout
(:mod:`dataengine.storage.layout`) names files the same way on both backends. It deliberately has no
``__fspath__``: a local-only call (``os.replace``, ``open``) on an S3 path fails loudly instead of creating a
local directory named ``s3:``. Requests go through the bucket's client (:mod:`dataengine.storage.s3_client`),
whose resolved credentials are handed to Polars and pyarrow for reads (:func:`polars_options`,
:func:`arrow_filesystem`) and never logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dataengine.errors import ConfigError
from dataengine.storage.s3_client import S3Client, S3Stat, client_for

if TYPE_CHECKING:
    import pyarrow.fs

SCHEME = "s3://"
# S3's bucket naming rules (3-63 lower-case letters, digits, dots, hyphens); also what MinIO and R2 accept.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# boto3 operation -> the request kind a bill names


def parse_url(text: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix``); a malformed URL is a ConfigError."""
    rest = text[len(SCHEME) :] if text.startswith(SCHEME) else None
    bucket, _, prefix = (rest or "").partition("/")
    if rest is None or not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"storage dir {text!r}: not an S3 URL of the form s3://bucket/prefix (nothing was written)")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(f"storage dir {text!r}: empty, '.' or '..' segments in the prefix (nothing was written)")
    return bucket, prefix


class S3Path:
    """A path in a store on S3: ``s3://bucket/key``. A "directory" is a key prefix; it exists when an object
    is under it. Equal, hashable and ordered like a path, so dicts and sorts over paths work the same."""

    __slots__ = ("bucket", "key")

    def __init__(self, bucket: str, key: str = "") -> None:
        self.bucket = bucket
        self.key = key.strip("/")

    @classmethod
    def from_url(cls, text: str) -> S3Path:
        return cls(*parse_url(text))

    @property
    def client(self) -> S3Client:
        return client_for(self.bucket)

    # -- names ---------------------------------------------------------------------------------------------

    def __truediv__(self, name: str) -> S3Path:
        return S3Path(self.bucket, f"{self.key}/{name}" if self.key else str(name))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> S3Path:
        return S3Path(self.bucket, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def relative_to(self, other: S3Path) -> str:
        if other.bucket != self.bucket or not (self.key + "/").startswith(other.key + "/" if other.key else ""):
            raise ValueError(f"{self} is not under {other}")
        return self.key[len(other.key) :].lstrip("/")

    def expanduser(self) -> S3Path:
        return self

    def resolve(self) -> S3Path:
        return self

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Path({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, S3Path) and (self.bucket, self.key) == (other.bucket, other.key)

    def __lt__(self, other: S3Path) -> bool:
        return (self.bucket, self.key) < (other.bucket, other.key)

    def __hash__(self) -> int:
        return hash((self.bucket, self.key))

    # -- I/O -------------------------------------------------------------------------------------------------

    def _dir_prefix(self) -> str:
        return f"{self.key}/" if self.key else ""

    def read_bytes(self) -> bytes:
        found = self.client.get(self.key)
        if found is None:
            raise FileNotFoundError(2, "no such object", str(self))
        return found[0]

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        self.client.put(self.key, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def stat(self) -> S3Stat:
        found = self.client.head(self.key)
        if found is None:
            raise FileNotFoundError(2, "no such object", str(self))
        return found

    def written_stat(self) -> S3Stat:
        """The stat of the object as this process last wrote it (no request), else as S3 has it now."""
        known = self.client.written_stat(self.key)
        return known if known is not None else self.stat()

    def is_file(self) -> bool:
        return self.client.head(self.key) is not None

    def is_dir(self) -> bool:
        return next(self.iter_objects(limit=1), None) is not None

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: S3 has no directories, a prefix exists once an object is under it."""

    def unlink(self, missing_ok: bool = False) -> None:
        self.client.delete(self.key)

    def listdir(self) -> list[str]:
        """Names of the objects and "sub-directories" right under this prefix (one LIST per 1,000)."""
        dirs, objects = self.client.list(self._dir_prefix())
        return dirs + [key.rsplit("/", 1)[-1] for key, _ in objects]

    def subdirs(self) -> list[str]:
        """Names of the "sub-directories" right under this prefix (prefixes with an object below them)."""
        return self.client.list(self._dir_prefix())[0]

    def iter_objects(self, limit: int | None = None) -> Iterator[tuple[S3Path, S3Stat]]:
        """Every object below this prefix, at any depth, with its stat (one LIST per 1,000 objects; ``limit``:
        at most that many, in one LIST)."""
        _, objects = self.client.list(self._dir_prefix(), delimiter=False, limit=limit)
        for key, stat in objects:
            yield S3Path(self.bucket, key), stat


def polars_options(path: S3Path) -> dict[str, str]:
    """``storage_options`` for ``pl.scan_parquet("s3://...")``: the credentials and endpoint boto3 resolved."""
    creds = path.client.credentials()
    options = {"aws_region": creds["region"]}
    if "access_key" in creds:
        options.update(aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"])
    if "token" in creds:
        options["aws_session_token"] = creds["token"]
    if "endpoint" in creds:
        options["aws_endpoint_url"] = creds["endpoint"]
        options["aws_allow_http"] = str(creds["endpoint"].startswith("http://")).lower()
    return options


def arrow_filesystem(path: S3Path) -> pyarrow.fs.S3FileSystem:
    """pyarrow's S3 file system with boto3's credentials: what DuckDB scans a store on S3 through (DuckDB's own
    httpfs extension cannot be downloaded in every environment)."""
    import pyarrow.fs

    creds = path.client.credentials()
    kwargs: dict[str, Any] = {"region": creds["region"]}
    if "access_key" in creds:
        kwargs.update(access_key=creds["access_key"], secret_key=creds["secret_key"], session_token=creds.get("token"))
    if "endpoint" in creds:
        scheme, _, host = creds["endpoint"].partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    return pyarrow.fs.S3FileSystem(**kwargs)
