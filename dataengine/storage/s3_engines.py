"""What an engine needs to read a store on S3 itself: the credentials and endpoint the bucket's boto3 client
resolved (:meth:`~dataengine.storage.s3_client.S3Client.credentials`), as Polars' ``storage_options`` and as a
pyarrow S3 file system. With them Polars, pyarrow and DuckDB fetch only the columns and row groups a query
needs, straight from the bucket, instead of whole objects through this process. The credentials are passed
on, never logged.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.fs

# pyarrow sets up the AWS SDK lazily, and the SDK's config cache races when S3 file systems are made on several
# threads at once: a segfault in a background thread (apache/arrow#39703). Set up once, and made one at a time.
_ARROW_S3 = threading.Lock()


def polars_options(creds: dict[str, str]) -> dict[str, str]:
    """``storage_options`` for Polars: the credentials and endpoint boto3 resolved."""
    options = {"aws_region": creds["region"]}
    if "access_key" in creds:
        options.update(aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"])
    if "token" in creds:
        options["aws_session_token"] = creds["token"]
    if "endpoint" in creds:
        options["aws_endpoint_url"] = creds["endpoint"]
        options["aws_allow_http"] = str(creds["endpoint"].startswith("http://")).lower()
    return options


def arrow_filesystem(creds: dict[str, str]) -> pyarrow.fs.S3FileSystem:
    """A pyarrow S3 file system with the credentials and endpoint boto3 resolved."""
    import pyarrow.fs

    kwargs: dict[str, Any] = {"region": creds["region"]}
    if "access_key" in creds:
        kwargs.update(access_key=creds["access_key"], secret_key=creds["secret_key"], session_token=creds.get("token"))
    if "endpoint" in creds:
        scheme, _, host = creds["endpoint"].partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    with _ARROW_S3:
        pyarrow.fs.ensure_s3_initialized()
        return pyarrow.fs.S3FileSystem(**kwargs)
