"""A trivially fast in-memory S3 subset, so a benchmark times the client rather than the server.

Path-style only; enough of the protocol for PUT (with ``If-None-Match: *`` and ``If-Match``), GET, HEAD,
DELETE, ListObjectsV2 (prefix, delimiter; one page) and CreateBucket. No signature is checked. Run it in its
own process (``python -m bench.s3_fast_server`` prints ``PORT`` and serves until stdin closes), so the
client being measured does not share a GIL with it.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

_MODIFIED_XML = "2026-01-01T00:00:00.000Z"
_MODIFIED_HTTP = formatdate(1767225600, usegmt=True)


class _Store:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.guard = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: _Store
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart (delayed ACK)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        return bucket, key, parse_qs(parts.query, keep_blank_values=True)

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
        self._answer(status, body.encode(), {"Content-Type": "application/xml"})

    def do_PUT(self) -> None:
        bucket, key, _ = self._target()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not key:
            self._answer(200)
            return
        etag = f'"{hashlib.md5(body).hexdigest()}"'
        with self.store.guard:
            current = self.store.objects.get((bucket, key))
            if self.headers.get("If-None-Match") == "*" and current is not None:
                self._error(412, "PreconditionFailed")
                return
            if (wanted := self.headers.get("If-Match")) is not None and (current is None or current[1] != wanted):
                self._error(412 if current is not None else 404, "PreconditionFailed")
                return
            self.store.objects[(bucket, key)] = (body, etag)
        self._answer(200, headers={"ETag": etag})

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if not key:
            self._list(bucket, query)
            return
        found = self.store.objects.get((bucket, key))
        if found is None:
            self._error(404, "NoSuchKey")
            return
        self._answer(200, found[0], {"ETag": found[1], "Last-Modified": _MODIFIED_HTTP,
                                     "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"})

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        bucket, key, _ = self._target()
        with self.store.guard:
            self.store.objects.pop((bucket, key), None)
        self._answer(204)

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        delimiter = query.get("delimiter", [""])[0]
        contents, prefixes = [], set()
        with self.store.guard:
            items = sorted((k, v) for (b, k), v in self.store.objects.items() if b == bucket and k.startswith(prefix))
        for key, (body, etag) in items:
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
                continue
            contents.append(f"<Contents><Key>{escape(key)}</Key><LastModified>{_MODIFIED_XML}</LastModified>"
                            f"<ETag>{escape(etag)}</ETag><Size>{len(body)}</Size>"
                            "<StorageClass>STANDARD</StorageClass></Contents>")
        common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>" for p in sorted(prefixes))
        xml = ("<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
               f"<Name>{bucket}</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(contents) + len(prefixes)}</KeyCount>"
               f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{''.join(contents)}{common}</ListBucketResult>")
        self._answer(200, xml.encode(), {"Content-Type": "application/xml"})


def serve() -> ThreadingHTTPServer:
    """Start the server on 127.0.0.1 in a background thread (in this process) and return it."""
    handler = type("Handler", (_Handler,), {"store": _Store()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    running = serve()
    print(running.server_address[1], flush=True)
    sys.stdin.read()  # until the parent closes our stdin
