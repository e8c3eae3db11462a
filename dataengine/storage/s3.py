"""A store on S3 (or an S3-compatible service: MinIO, Cloudflare R2, GCS's S3 API): its paths and its client.

:class:`S3Path` is a store path on S3 with the part of :mod:`pathlib` the store uses (``/``, ``name``,
``parent``, ``exists``, ``read_bytes``, ``write_bytes``, ...), so that the store's layout
(:mod:`dataengine.storage.layout`) names files the same way on both backends. It deliberately has no
``__fspath__``: a local-only call (``os.replace``, ``open``) on an S3 path fails loudly instead of creating a
local directory named ``s3:``.

The client is boto3's: it is the one Python client that sends S3's conditional writes (``If-None-Match: *``
to create only if absent, ``If-Match: ETAG`` to replace only the version read), which the lock, the coverage
commits and the run ledger rely on, and it takes credentials, region and endpoint from the standard AWS
sources (environment, ``~/.aws`` profiles, SSO, instance roles). Those credentials are handed to Polars and
pyarrow for reads (:func:`polars_options`, :func:`arrow_filesystem`) and never logged. Every request is
counted by operation (:attr:`S3Client.counts`), so a run can report what it cost.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dataengine.errors import ConfigError, StorageError, UsageError

if TYPE_CHECKING:
    import pyarrow.fs

SCHEME = "s3://"
# S3's bucket naming rules (3-63 lower-case letters, digits, dots, hyphens); also what MinIO and R2 accept.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# boto3 operation -> the request kind a bill names
_KIND = {"ListObjectsV2": "LIST", "GetObject": "GET", "HeadObject": "HEAD", "PutObject": "PUT",
         "DeleteObject": "DELETE", "HeadBucket": "HEAD", "CopyObject": "PUT"}


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


@dataclass(frozen=True)
class S3Stat:
    """What a HEAD or a LIST says of an object: the fields of ``os.stat_result`` the store reads, plus the ETag.

    ``st_ino`` is a number derived from the ETag: an object rewritten with other bytes gets another one, as a
    local file replaced by rename gets a new inode, so caches keyed on (ino, size) work on both backends."""

    st_size: int
    etag: str
    st_mtime: float

    @property
    def st_ino(self) -> int:
        return int.from_bytes(hashlib.blake2b(self.etag.encode(), digest_size=7).digest(), "big")

    @property
    def st_mtime_ns(self) -> int:
        return 0  # S3 has no settable mtime: identity is the ETag and the size


class S3Client:
    """One thread-safe boto3 client for one bucket, with every request counted by kind (LIST, GET, PUT, ...)."""

    def __init__(self, bucket: str) -> None:
        import boto3  # ~0.3 s; only for a store on S3
        from botocore.config import Config

        self.bucket = bucket
        self._session = boto3.session.Session()
        # Path-style addressing works on every S3-compatible service; retries are boto3's standard ones
        # (throttling and 5xx with backoff), and the pool fits every worker running 16 transfers at once.
        config = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=160,
                        s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=60)
        try:
            self.s3 = self._session.client("s3", config=config)
        except Exception as exc:  # noqa: BLE001 - a bad region or endpoint setting: one line, no traceback
            raise ConfigError(f"cannot set up the S3 client: {exc}") from None
        self.counts: Counter[str] = Counter()
        self.written: dict[str, S3Stat] = {}  # what this process PUT last, by key: its ETag without a HEAD
        self._counts_guard = threading.Lock()
        # once per HTTP request sent, retries included: what the service bills
        self.s3.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._counts_guard:
            self.counts[_KIND.get(operation, operation)] += 1

    def request_counts(self) -> dict[str, int]:
        with self._counts_guard:
            return dict(sorted(self.counts.items()))

    def written_stat(self, key: str) -> S3Stat | None:
        """The stat of the object as this process last PUT it, if it did."""
        with self._counts_guard:
            return self.written.get(key)

    # -- objects -----------------------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, str] | None:
        """(body, ETag) of an object, or None when there is none."""
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=key)
            return answer["Body"].read(), answer["ETag"]
        except Exception as exc:  # noqa: BLE001 - mapped below
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", key, exc) from None

    def head(self, key: str) -> S3Stat | None:
        try:
            answer = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", key, exc) from None
        return S3Stat(answer["ContentLength"], answer["ETag"], answer["LastModified"].timestamp())

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str | None:
        """Write an object whole (S3 replaces an object atomically: readers see the old one or the new one).

        ``if_none_match``: only if no object has the key; ``if_match``: only if the object still has that ETag.
        Returns the new ETag, or None when the condition failed (HTTP 412, or 409 for a concurrent create)."""
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        try:
            etag = str(self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)["ETag"])
            with self._counts_guard:
                self.written[key] = S3Stat(len(data), etag, time.time())
            return etag
        except Exception as exc:  # noqa: BLE001
            if extra and _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return None
            raise self._error("write", key, exc) from None

    def delete(self, key: str, *, if_match: str | None = None) -> bool:
        """Delete an object (only if it still has ETag ``if_match``, if given); False when that condition failed."""
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key, **extra)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("PreconditionFailed", "412"):
                return False
            if _code(exc) in ("NoSuchKey", "404"):
                return True
            raise self._error("delete", key, exc) from None
        return True

    def list(
        self, prefix: str, *, delimiter: bool = True, limit: int | None = None
    ) -> tuple[list[str], list[tuple[str, S3Stat]]]:
        """(sub-"directory" names, objects with their stat) under ``prefix`` (which ends in ``/``), following
        pages. ``delimiter=False`` lists every object below, one request per 1,000 of them; ``limit``: one page
        of at most that many."""
        dirs: list[str] = []
        objects: list[tuple[str, S3Stat]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = "/"
        if limit is not None:
            kwargs["MaxKeys"] = limit
        try:
            while True:
                page = self.s3.list_objects_v2(**kwargs)
                dirs.extend(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", ()))
                objects.extend(
                    (o["Key"], S3Stat(o["Size"], o["ETag"], o["LastModified"].timestamp())) for o in page.get("Contents", ())
                )
                if not page.get("IsTruncated") or limit is not None:
                    return dirs, objects
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except Exception as exc:  # noqa: BLE001
            raise self._error("list", prefix, exc) from None

    def check_bucket(self) -> None:
        """A one-line UsageError when the bucket does not exist (a typo: nothing is created), a StorageError when
        it cannot be reached or refuses these credentials."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("NoSuchBucket", "404"):
                raise UsageError(f"S3 bucket {self.bucket!r} does not exist (a typo? dataengine never creates "
                                 "buckets)") from None
            raise self._error("open", "", exc) from None

    # -- what readers need ---------------------------------------------------------------------------------

    def credentials(self) -> dict[str, str]:
        """Resolved access key, secret, session token, region and endpoint (for Polars and pyarrow)."""
        out: dict[str, str] = {"region": self.s3.meta.region_name or "us-east-1"}
        creds = self._session.get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            out.update(access_key=str(frozen.access_key), secret_key=str(frozen.secret_key))
            if frozen.token:
                out["token"] = frozen.token
        endpoint = self.s3.meta.endpoint_url
        if endpoint and not re.match(r"^https://s3[.-]([a-z0-9-]+\.)?amazonaws\.com", endpoint):
            out["endpoint"] = endpoint
        return out

    def _error(self, action: str, key: str, exc: Exception) -> StorageError:
        code = _code(exc)
        where = f"s3://{self.bucket}/{key}"
        if (code in ("NoSuchBucket", "404") and action == "open") or code == "NoSuchBucket":
            return StorageError(f"S3 bucket {self.bucket!r} does not exist (or is not visible with these credentials)")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return StorageError(f"cannot {action} {where}: access denied ({code}); check the AWS credentials")
        name = type(exc).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError"):
            return StorageError(f"cannot {action} {where}: no AWS credentials (set AWS_ACCESS_KEY_ID and "
                                "AWS_SECRET_ACCESS_KEY, or a profile)")
        message = str(exc).splitlines()[0] if str(exc) else name
        return StorageError(f"cannot {action} {where}: {message}")


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_clients: dict[str, S3Client] = {}
_clients_guard = threading.Lock()


def client_for(bucket: str) -> S3Client:
    """The process's client for ``bucket`` (one per bucket: its counters are the run's)."""
    with _clients_guard:
        client = _clients.get(bucket)
        if client is None:
            client = _clients[bucket] = S3Client(bucket)
        return client


def forget_clients() -> None:
    """Drop the cached clients (tests point the environment at a new endpoint)."""
    with _clients_guard:
        _clients.clear()


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

    def open_bytes(self) -> io.BytesIO:
        return io.BytesIO(self.read_bytes())


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
