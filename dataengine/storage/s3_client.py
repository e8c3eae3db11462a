"""The S3 client of a store on S3: boto3, one per bucket and process, every HTTP request counted by kind.

boto3 is the one Python client that sends S3's conditional writes (``If-None-Match: *`` to create only if
absent, ``If-Match: ETAG`` to replace only the version read), which the lock, the coverage commits and the run
ledger rely on, and it takes credentials, region and endpoint from the standard AWS sources (environment,
``~/.aws`` profiles, SSO, instance roles). Errors become one-line :class:`StorageError` (or UsageError for a
bucket that does not exist), never a traceback; credentials are never put in a message.

Flaky networks are survived here, in one place. botocore retries a request that fails (5xx, throttling, a
connection reset, a LIST body cut short, which it reads itself), but not the body of a GET, which the caller
streams: :meth:`S3Client.get` reads it whole and sends the GET again when it is cut short or times out. Every
attempt is one HTTP request, counted as such. A write may carry a **fence** (the run lock's check): it is
called right before each attempt goes on the wire, retries included, so a run that lost its lock while a
request was backing off never sends it. An endpoint that stops answering is watched by
:mod:`dataengine.storage.s3_endpoint_watch`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from dataengine.errors import ConfigError, LockError, StorageError, UsageError
from dataengine.storage.s3_endpoint_watch import PROBE_S, EndpointSilent, EndpointWatch

_KIND = {"ListObjectsV2": "LIST", "GetObject": "GET", "HeadObject": "HEAD", "PutObject": "PUT",
         "DeleteObject": "DELETE", "HeadBucket": "HEAD", "CopyObject": "PUT"}
READ_ATTEMPTS = 6  # GETs whose body was cut short or timed out, sent again (botocore retries the rest itself)
_READ_BACKOFF_S = 0.05  # doubled after each cut read: 0.05, 0.1, 0.2, ... (a few seconds in all)
_CONDITION_FAILED = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
# How long a request may wait for the endpoint's next bytes (DATAENGINE_S3_TIMEOUT): boto3's 60 s, times seven
# attempts, kept a run on a hung endpoint going for seven minutes per operation.
READ_TIMEOUT_S = 20.0


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
        import hashlib

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
        # Path-style addressing works on every S3-compatible service; retries are boto3's standard ones
        # (throttling and 5xx with backoff), and the pool fits every worker running 16 transfers at once.
        config = Config(retries={"max_attempts": 6, "mode": "standard"}, max_pool_connections=160,
                        s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=_read_timeout())
        try:
            # boto3 reads only AWS_DEFAULT_REGION; AWS_REGION (what the AWS CLI v2, the other SDKs and this
            # README use) wins over it and over a profile's region, as in those
            self._session = boto3.session.Session(region_name=os.environ.get("AWS_REGION") or None)
            self.s3 = self._session.client("s3", config=config)
        except Exception as exc:  # noqa: BLE001 - a bad region, endpoint, AWS_PROFILE or ~/.aws/config: one line
            raise ConfigError(f"cannot set up the S3 client: {_setup_problem(exc)}") from None
        self._counts: Counter[str] = Counter()
        self._written: dict[str, S3Stat] = {}  # what this process PUT last, by key: its ETag without a HEAD
        self._counts_guard = threading.Lock()
        self._local = threading.local()  # the fence of the write this thread is sending, if any
        self.watch = EndpointWatch()
        # right before each HTTP request goes out, retries included: first the fence, then the count of what
        # the service bills (a request the fence stops is never sent, nor counted)
        self.s3.meta.events.register("before-send.s3", lambda **_: self.watch.check())
        # every HTTP answer, retried ones included (a 503 SlowDown is an answer): after-call came once an operation
        # and its retries were over, so a storm of 503s read as silence (a review found it)
        self.s3.meta.events.register("response-received.s3", self._answered)
        self.s3.meta.events.register("before-send.s3", self._check_fence)
        self.s3.meta.events.register("before-send.s3", self._count)

    def _answered(self, response_dict: Any = None, **_: Any) -> None:
        if response_dict is not None:  # None: the attempt failed with no answer (a timeout, a reset)
            self.watch.answered()

    def _check_fence(self, **_: Any) -> None:
        fence = getattr(self._local, "fence", None)
        if fence is not None:
            fence()

    def _count(self, event_name: str = "", **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._counts_guard:
            self._counts[_KIND.get(operation, operation)] += 1
        self.watch.sent()

    def request_counts(self) -> dict[str, int]:
        with self._counts_guard:
            return dict(sorted(self._counts.items()))

    def written_stat(self, key: str) -> S3Stat | None:
        """The stat of the object as this process last PUT it, if it did."""
        with self._counts_guard:
            return self._written.get(key)

    # -- objects -----------------------------------------------------------------------------------------

    def get(self, key: str, *, limit: int | None = None) -> tuple[bytes, str] | None:
        """(body, ETag) of an object (only its first ``limit`` bytes, if given), or None when there is none. A
        body cut short (the connection dropped mid-stream) or timed out is read again with a new GET, up to
        :data:`READ_ATTEMPTS` in all."""
        extra: dict[str, Any] = {"Range": f"bytes=0-{limit - 1}"} if limit is not None else {}
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                answer = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)
            except Exception as exc:  # noqa: BLE001 - mapped below
                if _code(exc) in ("NoSuchKey", "404"):
                    return None
                raise self._error("read", key, exc) from None
            try:
                body = answer["Body"].read()
            except Exception as exc:  # noqa: BLE001 - a cut body, a timeout: the GET is sent again
                if attempt == READ_ATTEMPTS or not _cut_short(exc):
                    raise self._error("read", key, exc) from None
                time.sleep(_READ_BACKOFF_S * 2 ** (attempt - 1))
                continue
            return body, answer["ETag"]
        raise AssertionError("unreachable")  # the loop returns or raises

    def head(self, key: str) -> S3Stat | None:
        try:
            answer = self.s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._error("read", key, exc) from None
        return S3Stat(answer["ContentLength"], answer["ETag"], answer["LastModified"].timestamp())

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None,
            fence: Callable[[], None] | None = None) -> str | None:
        """Write an object whole (S3 replaces an object atomically: readers see the old one or the new one).

        ``if_none_match``: only if no object has the key; ``if_match``: only if the object still has that ETag
        (and exists). Returns the new ETag, or None when the condition failed (HTTP 412, or 409 for a
        concurrent create). A condition can also fail because this very write landed and only its answer was
        lost (a 5xx after the write, then the retry's 412): callers that care recognise their own object.
        ``fence`` is called before every attempt (LockError passes through)."""
        extra: dict[str, Any] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        if if_match is not None:
            extra["IfMatch"] = if_match
        try:
            with self._fenced(fence):
                etag = str(self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)["ETag"])
            with self._counts_guard:
                self._written[key] = S3Stat(len(data), etag, time.time())
            return etag
        except LockError:
            raise
        except Exception as exc:  # noqa: BLE001
            code = _code(exc)
            if extra and (code in _CONDITION_FAILED or (if_match is not None and code in ("NoSuchKey", "404"))):
                return None
            raise self._error("write", key, exc) from None

    def copy(self, source: str, target: str, *, size: int, fence: Callable[[], None] | None = None) -> bool:
        """A server-side copy of ``source`` (``size`` bytes) to ``target``; False when ``source`` does not exist.
        ``fence``: as for :meth:`put`."""
        try:
            with self._fenced(fence):
                answer = self.s3.copy_object(Bucket=self.bucket, Key=target,
                                             CopySource={"Bucket": self.bucket, "Key": source})
        except LockError:
            raise
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("NoSuchKey", "404"):
                return False
            raise self._error("copy", source, exc) from None
        result = answer.get("CopyObjectResult") or {}
        if "ETag" in result:  # the copy's own answer names it: no HEAD needed
            modified = result.get("LastModified")
            with self._counts_guard:
                self._written[target] = S3Stat(size, str(result["ETag"]),
                                               modified.timestamp() if modified is not None else time.time())
        return "CopyObjectResult" in answer

    def delete(self, key: str, *, if_match: str | None = None, fence: Callable[[], None] | None = None) -> bool:
        """Delete an object (only if it still has ETag ``if_match``, if given); False when that condition failed.
        An object already gone counts as deleted. ``fence``: as for :meth:`put`."""
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match is not None else {}
        try:
            with self._fenced(fence):
                self.s3.delete_object(Bucket=self.bucket, Key=key, **extra)
        except LockError:
            raise
        except Exception as exc:  # noqa: BLE001
            if _code(exc) in ("PreconditionFailed", "412"):
                return False
            if _code(exc) in ("NoSuchKey", "404"):
                self._forget_written(key)
                return True
            raise self._error("delete", key, exc) from None
        self._forget_written(key)
        return True

    def _forget_written(self, key: str) -> None:
        with self._counts_guard:
            self._written.pop(key, None)

    @contextmanager
    def _fenced(self, fence: Callable[[], None] | None) -> Iterator[None]:
        """``fence`` is checked before each attempt this thread sends inside the block."""
        self._local.fence = fence
        try:
            yield
        finally:
            self._local.fence = None

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

    def connection(self) -> dict[str, str]:
        """Endpoint, region and where the credentials came from (boto3's name for it: ``env``,
        ``shared-credentials-file``, ``sso``, ``iam-role``...), never the credentials themselves."""
        try:
            creds = self._session.get_credentials()
            credentials = f"from {creds.method}" if creds is not None else "none found"
        except Exception as exc:  # noqa: BLE001 - a credentials file or process that fails: said, not raised
            credentials = f"unusable: {_setup_problem(exc)}"
        return {"endpoint": self.s3.meta.endpoint_url or "(AWS default)",
                "region": self.s3.meta.region_name or "us-east-1", "credentials": credentials}

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
        if isinstance(exc, EndpointSilent):
            return StorageError(f"cannot {action} {where}: the S3 endpoint stopped answering ({message}); it is "
                                f"asked again every {PROBE_S:.0f} s until it answers")
        if _silent(exc):
            self.watch.timed_out(message)
        return StorageError(f"cannot {action} {where}: {message}")


def _cut_short(exc: Exception) -> bool:
    """A body that stopped before its end, or a read that timed out: worth a new GET."""
    from botocore.exceptions import ConnectionClosedError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return isinstance(exc, (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError,
                            Urllib3Error, ConnectionError, TimeoutError))


def _silent(exc: Exception) -> bool:
    """Every attempt timed out: the endpoint took no connection or sent no bytes in time. (A refused or reset
    connection fails in an instant: its retries cost nothing worth saving, and it may be a restart.)"""
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    return isinstance(exc, (ReadTimeoutError, ConnectTimeoutError))


def _read_timeout() -> float:
    text = os.environ.get("DATAENGINE_S3_TIMEOUT", "").strip()
    try:
        seconds = float(text) if text else READ_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"environment variable DATAENGINE_S3_TIMEOUT: {text[:40]!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"environment variable DATAENGINE_S3_TIMEOUT: must be more than 0 seconds, got {text}")
    return seconds


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_clients: dict[str, S3Client] = {}
_clients_guard = threading.Lock()


def _setup_problem(exc: Exception) -> str:
    """botocore's words for a set-up problem, with the setting to look at."""
    hints = {"ProfileNotFound": ": check AWS_PROFILE and ~/.aws/config",
             "ConfigParseError": ": fix or move that file (AWS_CONFIG_FILE names another)"}
    return (str(exc).splitlines()[0] if str(exc) else type(exc).__name__) + hints.get(type(exc).__name__, "")


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
