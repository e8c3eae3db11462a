"""``python -m bench.s3_clients [--quick] [--only SECTION ...]``: boto3 vs obstore as dataengine's S3 engine.

Everything runs on 127.0.0.1, never the internet: moto's S3 server (in its own process), the fault proxy of
``tests/s3_fault_proxy.py`` in front of it (ground truth for what went over the wire: every attempt, its
headers, the access key it was signed with), a trivially fast in-memory S3 (``bench/s3_fast_server.py``, its
own process) for per-request client overhead, and a fake EC2 instance-metadata service for instance roles.

Sections (``--only``): ``capabilities`` (what our protocols need, one by one), ``counting`` (HTTP attempts vs
calls), ``credentials`` (env, profiles, credential_process, instance role), ``cuts`` (bodies cut mid-stream),
``weight`` (import time, RSS), ``latency`` (small GET/PUT/HEAD/LIST, 16 parallel 300 KiB PUTs), ``readers``
(Polars, pyarrow and DuckDB on the same credentials). Results go to ``bench/results/s3_clients.{md,json}``;
the decision drawn from them is ``bench/results/s3_clients-decision.md``. Needs ``pip install obstore fsspec``
besides the test extra (neither is a dataengine dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # ``python bench/s3_clients.py``
    sys.path.insert(0, str(ROOT))

from tests.s3_fault_proxy import FaultProxy, on  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REGION = "us-east-1"
KEYS = {"AWS_ACCESS_KEY_ID": "bench-access", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": REGION}
_KIND = {"ListObjectsV2": "LIST", "GetObject": "GET", "HeadObject": "HEAD", "PutObject": "PUT",
         "DeleteObject": "DELETE", "CopyObject": "PUT", "CreateBucket": "PUT"}


# -- servers ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def server_process(code: str) -> Iterator[str]:
    """Run ``code`` (which prints its port, then serves until stdin closes) in a child process."""
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None
        port = child.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"server did not start: {port!r}")
        yield f"http://127.0.0.1:{port}"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def moto() -> contextlib.AbstractContextManager[str]:
    return server_process(
        "import logging, sys\nfrom moto.server import ThreadedMotoServer\n"
        "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start()\n"
        "print(s.get_host_and_port()[1], flush=True); sys.stdin.read(); s.stop()")


def fast_s3() -> contextlib.AbstractContextManager[str]:
    return server_process("import sys\nfrom bench.s3_fast_server import serve\n"
                          "print(serve().server_address[1], flush=True); sys.stdin.read()")


def new_bucket(endpoint: str) -> str:
    import boto3

    name = f"bench-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=name)
    return name


# -- the two clients, behind the one interface our store needs ------------------------------------------------

class ConditionFailed(Exception):
    """A conditional request was refused (HTTP 412, or 409 for a concurrent conditional write)."""


class Boto3Client:
    """boto3 configured as ``dataengine/storage/s3_client.py`` does; counts every HTTP attempt (before-send)."""

    name = "boto3"

    def __init__(self, bucket: str, endpoint: str | None = None, *, max_attempts: int = 5) -> None:
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, max_pool_connections=160,
                        s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=60)
        self.bucket = bucket
        self.s3 = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
        self.counts: Counter[str] = Counter()
        self._guard = threading.Lock()
        self.s3.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str = "", **_: Any) -> None:
        with self._guard:
            self.counts[_KIND.get(event_name.rsplit(".", 1)[-1], "OTHER")] += 1

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def put(self, key: str, data: bytes, mode: str | None = None) -> str:
        """``mode``: None (overwrite), ``"create"`` or an ETag (if-match)."""
        extra = {} if mode is None else {"IfNoneMatch": "*"} if mode == "create" else {"IfMatch": mode}
        try:
            return str(self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)["ETag"])
        except Exception as exc:
            if extra and self._code(exc) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise ConditionFailed(self._code(exc)) from exc
            raise

    def get(self, key: str) -> tuple[bytes, str]:
        answer = self.s3.get_object(Bucket=self.bucket, Key=key)
        return answer["Body"].read(), answer["ETag"]

    def head(self, key: str) -> tuple[int, str]:
        answer = self.s3.head_object(Bucket=self.bucket, Key=key)
        return answer["ContentLength"], answer["ETag"]

    def list(self, prefix: str) -> tuple[list[str], list[str]]:
        dirs: list[str] = []
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            dirs += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
            keys += [o["Key"] for o in page.get("Contents", ())]
            if not page.get("IsTruncated"):
                return dirs, keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, key: str, if_match: str | None = None) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=key, **({"IfMatch": if_match} if if_match else {}))
        except Exception as exc:
            if self._code(exc) == "PreconditionFailed":
                raise ConditionFailed(self._code(exc)) from exc
            raise

    def copy(self, source: str, target: str) -> None:
        self.s3.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})


class ObstoreClient:
    """obstore's S3Store; can count calls only (its retries happen in Rust, out of Python's sight)."""

    name = "obstore"

    def __init__(self, bucket: str, endpoint: str | None = None, **options: Any) -> None:
        from obstore.store import S3Store

        client_options = {"allow_http": True} if (endpoint or os.environ.get("AWS_ENDPOINT_URL", "")).startswith(
            "http://") else {}
        if endpoint is not None:
            options["endpoint"] = endpoint
        self.bucket = bucket
        self.store = S3Store(bucket, client_options=client_options, **options)
        self.counts: Counter[str] = Counter()

    def put(self, key: str, data: bytes, mode: str | None = None) -> str:
        import obstore as obs
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        self.counts["PUT"] += 1
        how: Any = "overwrite" if mode is None else "create" if mode == "create" else {"e_tag": mode}
        try:
            return str(obs.put(self.store, key, data, mode=how)["e_tag"])
        except (AlreadyExistsError, PreconditionError) as exc:
            raise ConditionFailed(type(exc).__name__) from exc

    def get(self, key: str) -> tuple[bytes, str]:
        import obstore as obs

        self.counts["GET"] += 1
        answer = obs.get(self.store, key)
        return bytes(answer.bytes()), str(answer.meta["e_tag"])

    def head(self, key: str) -> tuple[int, str]:
        import obstore as obs

        self.counts["HEAD"] += 1
        meta = obs.head(self.store, key)
        return meta["size"], str(meta["e_tag"])

    def list(self, prefix: str) -> tuple[list[str], list[str]]:
        import obstore as obs

        self.counts["LIST"] += 1
        answer = obs.list_with_delimiter(self.store, prefix.rstrip("/") or None)
        return [p + "/" for p in answer["common_prefixes"]], [o["path"] for o in answer["objects"]]

    def delete(self, key: str, if_match: str | None = None) -> None:
        import obstore as obs

        if if_match is not None:
            raise NotImplementedError("obstore.delete takes no condition")
        self.counts["DELETE"] += 1
        obs.delete(self.store, key)

    def copy(self, source: str, target: str) -> None:
        import obstore as obs

        self.counts["PUT"] += 1
        obs.copy(self.store, source, target)


def clients(bucket: str, endpoint: str) -> list[Any]:
    return [Boto3Client(bucket, endpoint), ObstoreClient(bucket, endpoint)]


def attempt(action: Callable[[], Any]) -> str:
    """What an action did, in one line: ``ok: ...`` or the exception's class and the start of its message."""
    try:
        result = action()
    except Exception as exc:
        message = " ".join(str(exc).split())[:150]
        return f"{type(exc).__name__}: {message}"
    return f"ok: {str(result)[:80]}"


# -- 1. capabilities ------------------------------------------------------------------------------------------

def capabilities(moto_url: str, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with FaultProxy(moto_url, seed=1) as proxy:
        bucket = new_bucket(moto_url)
        for client in clients(bucket, proxy.url):
            out[client.name] = _protocol(client, proxy)
        # obstore specifics: what its API offers at all
        import obstore as obs

        out["obstore"]["delete signature"] = f"obstore.delete{inspect.signature(obs.delete)}"
        store = ObstoreClient(bucket, proxy.url)
        out["obstore"]["delete if-match by hand: obstore.sign + urllib (workaround; signature unverified by moto)"] = (
            _presigned_delete(store, bucket))
        out["obstore"]["copy overwrite=False"] = attempt(
            lambda: obs.copy(store.store, "obstore/src", "obstore/dst", overwrite=False))

        # paging and common prefixes: 1,001 objects + 3 "directories" under one prefix
        n = 1001
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: store.put(f"page/f{i:04d}", b"x"), range(n)))
            list(pool.map(lambda d: store.put(f"page/{d}/x", b"x"), ("a", "b", "c")))
        for client in clients(bucket, proxy.url):
            proxy.forget()
            dirs, keys = client.list("page/")
            lists = [e for e in proxy.exchanges if e.method == "GET"]
            out[client.name]["list with delimiter, 1,001 objects + 3 prefixes"] = (
                f"{len(keys)} objects, prefixes {dirs}, in {len(lists)} LIST requests "
                f"(path-style: {lists[0].path!r}, query {lists[-1].query[:60]!r})")

        # 412 vs 409 vs other errors, as the caller sees them
        for client in clients(bucket, proxy.url):
            out[client.name].update(_errors(client, proxy))

    # endpoint and region from AWS_ENDPOINT_URL / AWS_REGION, addressing style: seen by the proxy
    with FaultProxy(moto_url) as proxy:
        bucket = new_bucket(moto_url)
        env = {**KEYS, "AWS_ENDPOINT_URL": proxy.url, "AWS_REGION": "eu-west-3"}
        with _environ(env):
            for client in (Boto3Client(bucket), ObstoreClient(bucket)):
                proxy.forget()
                client.put("env-probe", b"x")
                e = proxy.exchanges[-1]
                scope = e.headers.get("authorization", "").split("Credential=")[1].split(",")[0]
                out[client.name]["endpoint + region from the environment"] = (
                    f"{e.method} {e.path} via AWS_ENDPOINT_URL; credential scope {scope}")
    return out


def _protocol(client: Any, proxy: FaultProxy) -> dict[str, str]:
    """Each request our protocols make, once, through the proxy: what the client returned or raised."""
    p = f"{client.name}/"
    row: dict[str, str] = {}
    row["put create-only, new key"] = attempt(lambda: client.put(p + "lock", b"a", "create"))
    row["put create-only, key exists"] = attempt(lambda: client.put(p + "lock", b"b", "create"))
    etag = client.head(p + "lock")[1]
    row["put if-match, current ETag"] = attempt(lambda: client.put(p + "lock", b"c", etag))
    row["put if-match, stale ETag"] = attempt(lambda: client.put(p + "lock", b"d", etag))
    row["put if-match, no object"] = attempt(lambda: client.put(p + "gone", b"d", etag))
    row["get returns body and ETag"] = attempt(lambda: client.get(p + "lock"))
    row["head"] = attempt(lambda: client.head(p + "lock"))
    current = client.head(p + "lock")[1]
    row["delete if-match, stale ETag"] = attempt(lambda: client.delete(p + "lock", if_match=etag))
    row["delete if-match, current ETag"] = attempt(lambda: client.delete(p + "lock", if_match=current))
    client.put(p + "src", b"copied")
    proxy.forget()
    row["copy"] = attempt(lambda: client.copy(p + "src", p + "dst"))
    sent = proxy.exchanges
    row["copy is server-side"] = (f"{len(sent)} request(s): " + ", ".join(
        f"{e.method} {e.path} x-amz-copy-source={e.headers.get('x-amz-copy-source')}" for e in sent))
    return row


def _errors(client: Any, proxy: FaultProxy) -> dict[str, str]:
    """409, 403, a lost answer to a create, a 404: what the caller can tell apart."""
    rows: dict[str, str] = {}
    with proxy.faults("fail_before", status=409, code="ConditionalRequestConflict", times=1):
        proxy.forget()
        rows["409 ConditionalRequestConflict on create"] = attempt(
            lambda: client.put(f"{client.name}/c409", b"x", "create")) + f" [{_wire(proxy)}]"
    etag = client.put(f"{client.name}/u409", b"x")
    with proxy.faults("fail_before", status=409, code="ConditionalRequestConflict", times=1):
        proxy.forget()
        rows["409 ConditionalRequestConflict on if-match"] = attempt(
            lambda: client.put(f"{client.name}/u409", b"y", etag)) + f" [{_wire(proxy)}]"
    with proxy.faults("fail_before", status=403, code="AccessDenied", times=1):
        proxy.forget()
        rows["403 AccessDenied"] = attempt(lambda: client.get(f"{client.name}/u409")) + f" [{_wire(proxy)}]"
    with proxy.faults("fail_after", status=500, code="InternalError", times=1, match=on("PUT")):
        proxy.forget()
        rows["create-only whose 200 was lost (500 after the write)"] = attempt(
            lambda: client.put(f"{client.name}/lost", b"x", "create")) + f" [{_wire(proxy)}]"
    proxy.forget()
    rows["404"] = attempt(lambda: client.head(f"{client.name}/nothing"))
    return rows


def _presigned_delete(client: ObstoreClient, bucket: str) -> str:
    """DELETE with If-Match sent by urllib to a URL obstore presigned: stale ETag first, then the current one."""
    import urllib.error
    import urllib.request

    import obstore as obs

    etag = client.put("obstore/presigned", b"x")
    url = obs.sign(client.store, "DELETE", "obstore/presigned", timedelta(minutes=5))
    answers = []
    for tag in ('"stale"', etag):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE", headers={"If-Match": tag})) as r:
                answers.append(str(r.status))
        except urllib.error.HTTPError as exc:
            answers.append(str(exc.code))
    return f"stale ETag -> {answers[0]}, current ETag -> {answers[1]}"


def _wire(proxy: FaultProxy) -> str:
    return ", ".join(f"{e.method} {e.status}" for e in proxy.exchanges)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- 2. counting ----------------------------------------------------------------------------------------------

def counting(moto_url: str, quick: bool) -> dict[str, Any]:
    """One PUT answered 503 three times before it succeeds, one GET, one LIST: what each client can count."""
    out: dict[str, Any] = {}
    with FaultProxy(moto_url) as proxy:
        bucket = new_bucket(moto_url)
        for client in clients(bucket, proxy.url):
            if isinstance(client, ObstoreClient):
                from obstore.store import S3Store

                client.store = S3Store(bucket, endpoint=proxy.url, client_options={"allow_http": True},
                                       retry_config={"backoff": {"init_backoff": timedelta(milliseconds=20)}})
            proxy.forget()
            with proxy.faults("fail_before", status=503, code="SlowDown", times=3, match=on("PUT")):
                client.put("count/x", b"x" * 1000)
            client.get("count/x")
            client.list("count/")
            wire = Counter(e.method for e in proxy.exchanges)
            out[client.name] = {"client counted": dict(sorted(client.counts.items())),
                                "proxy saw": dict(sorted(wire.items())),
                                "client total": sum(client.counts.values()), "wire total": sum(wire.values())}
    return out


# -- 3. credentials -------------------------------------------------------------------------------------------

_PROBE = """
import json, os, sys, time
sys.path.insert(0, {root!r})
from bench.s3_clients import Boto3Client, ObstoreClient
started = time.monotonic()
try:
    variant = sys.argv[1]
    if variant == "boto3":
        client = Boto3Client(os.environ["BENCH_BUCKET"])
    elif variant == "obstore":
        client = ObstoreClient(os.environ["BENCH_BUCKET"])
    else:
        from obstore.auth.boto3 import Boto3CredentialProvider
        client = ObstoreClient(os.environ["BENCH_BUCKET"], credential_provider=Boto3CredentialProvider())
    client.put("probe/" + variant, b"x")
    result = "ok"
except Exception as exc:
    result = type(exc).__name__ + ": " + " ".join(str(exc).split())[:160]
print(json.dumps({{"result": result, "seconds": round(time.monotonic() - started, 2)}}))
"""


class _FakeImds(BaseHTTPRequestHandler):
    """EC2 instance metadata (IMDSv2): a token, one role, its temporary credentials."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self._send(200, "imds-token") if self.path == "/latest/api/token" else self._send(404, "")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
            self._send(401, "")
        elif self.path == "/latest/meta-data/iam/security-credentials/":
            self._send(200, "bench-role")
        elif self.path == "/latest/meta-data/iam/security-credentials/bench-role":
            expires = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._send(200, json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "AKIDINSTANCEROLE",
                                        "SecretAccessKey": "s", "Token": "t", "Expiration": expires,
                                        "LastUpdated": expires}))
        else:
            self._send(404, "")


def credentials(moto_url: str, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    imds = ThreadingHTTPServer(("127.0.0.1", 0), _FakeImds)
    threading.Thread(target=imds.serve_forever, daemon=True).start()
    imds_url = f"http://127.0.0.1:{imds.server_address[1]}"
    closed = "http://127.0.0.1:9"  # nothing listens: no instance role, and no waiting for one
    process = json.dumps({"Version": 1, "AccessKeyId": "AKIDPROCESS", "SecretAccessKey": "s"})
    cases: dict[str, tuple[dict[str, str], dict[str, str]]] = {
        "AWS_ACCESS_KEY_ID/SECRET in the environment": (
            {"AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "s"}, {}),
        "AWS_PROFILE=bench in ~/.aws/credentials": (
            {"AWS_PROFILE": "bench"}, {"credentials": "[bench]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n"}),
        "[default] in ~/.aws/credentials, no AWS_PROFILE": (
            {}, {"credentials": "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n"}),
        "profile with credential_process in ~/.aws/config (as SSO, assume-role)": (
            {"AWS_PROFILE": "proc"}, {"creds.py": f"print({process!r})\n",
                                      "config": f"[profile proc]\ncredential_process = {sys.executable} {{aws}}/creds.py\n"}),
        "instance role (IMDSv2)": ({"AWS_EC2_METADATA_SERVICE_ENDPOINT": imds_url, "AWS_METADATA_ENDPOINT": imds_url}, {}),
    }
    try:
        with FaultProxy(moto_url) as proxy:
            bucket = new_bucket(moto_url)
            for case, (env_extra, files) in cases.items():
                row: dict[str, str] = {}
                with tempfile.TemporaryDirectory() as home:
                    (Path(home) / ".aws").mkdir()
                    for name, text in files.items():
                        (Path(home) / ".aws" / name).write_text(text.replace("{aws}", f"{home}/.aws"))
                    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
                    env.update(HOME=home, AWS_ENDPOINT_URL=proxy.url, AWS_REGION=REGION, BENCH_BUCKET=bucket,
                               AWS_EC2_METADATA_SERVICE_ENDPOINT=closed, AWS_METADATA_ENDPOINT=closed,
                               AWS_METADATA_SERVICE_NUM_ATTEMPTS="1", AWS_METADATA_SERVICE_TIMEOUT="1")
                    env.update(env_extra)
                    for variant in ("boto3", "obstore", "obstore+Boto3CredentialProvider"):
                        proxy.forget()
                        try:
                            done = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(ROOT)), variant],
                                                  env=env, capture_output=True, text=True, timeout=90)
                            answer = json.loads(done.stdout.strip().splitlines()[-1])
                        except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as exc:
                            answer = {"result": f"probe failed: {type(exc).__name__}", "seconds": None}
                        keys = sorted({e.access_key or "-" for e in proxy.exchanges if e.method == "PUT"})
                        row[variant] = f"{answer['result']} ({answer['seconds']} s; signed with {', '.join(keys) or 'nothing sent'})"
                out[case] = row
    finally:
        imds.shutdown()
    return out


# -- 4. bodies cut mid-stream ---------------------------------------------------------------------------------

def cuts(moto_url: str, quick: bool) -> dict[str, Any]:
    """GETs (64 KiB objects) and LISTs through a proxy that cuts a share of response bodies mid-stream."""
    import numpy as np

    out: dict[str, Any] = {}
    operations = 150 if quick else 400
    bucket = new_bucket(moto_url)
    seed_client = ObstoreClient(bucket, moto_url)
    payloads = {f"cut/o{i:02d}": np.random.default_rng(i).bytes(64 * 1024) for i in range(20)}
    for key, data in payloads.items():
        seed_client.put(key, data)
    for rate in (0.02, 0.20):
        for make in (lambda: Boto3Client(bucket, proxy.url), lambda: ObstoreClient(bucket, proxy.url)):
            with FaultProxy(moto_url, seed=11) as proxy:
                client = make()
                proxy.add("cut", rate=rate)
                failures: Counter[str] = Counter()
                wrong = 0
                for i in range(operations):
                    key = f"cut/o{i % 20:02d}"
                    try:
                        if i % 10 == 9:
                            client.list("cut/")
                        elif client.get(key)[0] != payloads[key]:
                            wrong += 1
                    except Exception as exc:
                        failures[("LIST " if i % 10 == 9 else "GET ") + type(exc).__name__] += 1
                sent = proxy.exchanges
                out[f"{client.name} @ {rate:.0%}"] = {
                    "operations": operations, "cut": sum(e.fault == "cut" for e in sent),
                    "of which LIST": sum(e.fault == "cut" and "list-type" in e.query for e in sent), "attempts": len(sent),
                    "failed": dict(failures), "wrong bodies": wrong,
                    "resumed with Range": sum("range" in e.headers for e in sent)}
    out.update({f"obstore, a cut GET resumed with Range, {k}": v for k, v in _torn_resume(moto_url).items()})
    return out


def _torn_resume(moto_url: str) -> dict[str, str]:
    """A GET cut half way; obstore resumes with a Range request (held 0.6 s by the proxy). Once as is, once with
    the object replaced (by another client) while the resume is held: is a body of two versions ever returned?"""
    out = {}
    for replaced in (False, True):
        bucket = new_bucket(moto_url)
        direct = ObstoreClient(bucket, moto_url)
        direct.put("torn", b"A" * 200_000)
        with FaultProxy(moto_url) as proxy:
            client = ObstoreClient(bucket, proxy.url)
            proxy.add("cut", times=1, match=on("GET"))
            proxy.add("delay", seconds=0.6, match=lambda r: "range" in r.headers)
            if replaced:
                threading.Timer(0.3, lambda d=direct: d.put("torn", b"B" * 200_000)).start()
            try:
                body = client.get("torn")[0]
                result = f"returned {body.count(b'A')} x A + {body.count(b'B')} x B"
            except Exception as exc:
                result = f"raised {type(exc).__name__} ({' '.join(str(exc).split())[:70]})"
            time.sleep(0.7)
            wire = "; ".join(f"{e.method} {e.status} {e.headers.get('range', '')}".strip() for e in proxy.exchanges)
        out["object replaced during the resume" if replaced else "object unchanged"] = f"{result} [wire: {wire}]"
    return out


# -- 5. weight and speed --------------------------------------------------------------------------------------

_SNIPPETS = {
    "python -c pass": "pass",
    "import boto3": "import boto3",
    "import obstore": "import obstore, obstore.store",
    "boto3: import + S3 client": "import boto3; boto3.session.Session().client('s3', region_name='us-east-1')",
    "obstore: import + S3Store": "from obstore.store import S3Store; S3Store('b', region='us-east-1')",
    "pyarrow: import + S3FileSystem": "import pyarrow.fs; pyarrow.fs.S3FileSystem(region='us-east-1')",
}
_READERS = "import polars, pyarrow, pyarrow.dataset, duckdb"


_DELTA = """
import json, time
{base}
def rss():
    return int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS")).split()[1]) / 1024
before, started = rss(), time.perf_counter()
{code}
print(json.dumps({{"ms": (time.perf_counter() - started) * 1000, "rss": rss() - before}}))
"""


def weight(moto_url: str, quick: bool) -> dict[str, Any]:
    """Whole processes (wall, max RSS by /usr/bin/time), and what each step adds inside a process that has
    already imported the readers (time and VmRSS around the step): medians of several runs."""
    runs = 3 if quick else 7
    out: dict[str, Any] = {}
    env = {**os.environ, **KEYS, "AWS_EC2_METADATA_DISABLED": "true"}
    rows = {}
    for label, code in _SNIPPETS.items():
        walls, rss = [], []
        for _ in range(runs):
            started = time.perf_counter()
            done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-c", code], env=env,
                                  capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - started)
            rss.append(int(done.stderr.strip().splitlines()[-1]) / 1024)
        rows[label] = {"process wall ms": round(statistics.median(walls) * 1000),
                       "process max RSS MiB": round(statistics.median(rss), 1)}
    out["whole process, bare interpreter"] = rows
    rows = {}
    for label, code in _SNIPPETS.items():
        if code == "pass":
            continue
        samples = []
        for _ in range(runs):
            done = subprocess.run([sys.executable, "-c", _DELTA.format(base=_READERS, code=code)], env=env,
                                  capture_output=True, text=True, check=True)
            samples.append(json.loads(done.stdout))
        rows[label] = {"added ms": round(statistics.median(x["ms"] for x in samples)),
                       "added RSS MiB": round(statistics.median(x["rss"] for x in samples), 1)}
    out["added to a process that has imported polars, pyarrow, duckdb"] = rows
    importtime = {}
    for package in ("boto3", "obstore"):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {package}"], env=env,
                              capture_output=True, text=True, check=True)
        line = next(x for x in done.stderr.splitlines() if x.rstrip().endswith(f"| {package}"))
        modules = sum(1 for x in done.stderr.splitlines() if x.startswith("import time:")) - 1
        importtime[package] = {"cumulative ms (-X importtime)": round(int(line.split("|")[1]) / 1000), "modules": modules}
    out["-X importtime"] = importtime
    return out


def _percentiles(samples: list[float]) -> str:
    samples = sorted(samples)
    return f"{statistics.median(samples) * 1000:.2f} / {samples[int(len(samples) * 0.9)] * 1000:.2f}"


def latency(moto_url: str, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with fast_s3() as fast_url:
        for server, url, n in (("fast in-memory S3", fast_url, 100 if quick else 300), ("moto", moto_url, 30 if quick else 80)):
            bucket = new_bucket(url)
            rows = {}
            for client in clients(bucket, url):
                rows[client.name] = _latency_of(client, n)
            out[f"{server}: median / p90 per request, n={n}"] = rows
            out[f"{server}: 16 concurrent PUTs of 300 KiB"] = _parallel(url, rounds=3 if quick else 6)
    return out


def _latency_of(client: Any, n: int) -> dict[str, str]:
    """Median / p90 wall and mean CPU of n sequential small requests of each kind."""
    timing: dict[str, list[float]] = {"PUT": [], "GET": [], "HEAD": [], "LIST": []}
    body = os.urandom(1024)
    for i in range(10):
        client.put(f"{client.name}/warm{i}", body)  # connections, credentials, first-call costs
    client.list(f"{client.name}/")
    for kind, action in (("PUT", lambda i: client.put(f"{client.name}/k{i % 20}", body)),
                         ("GET", lambda i: client.get(f"{client.name}/k{i % 20}")),
                         ("HEAD", lambda i: client.head(f"{client.name}/k{i % 20}")),
                         ("LIST", lambda i: client.list(f"{client.name}/"))):
        cpu = time.process_time()
        for i in range(n):
            started = time.perf_counter()
            action(i)
            timing[kind].append(time.perf_counter() - started)
        timing[kind + " cpu"] = [(time.process_time() - cpu) / n]
    return {kind: _percentiles(v) + f" ms; CPU {timing[kind + ' cpu'][0] * 1000:.2f} ms"
            for kind, v in timing.items() if not kind.endswith("cpu")}


def _parallel(url: str, rounds: int) -> dict[str, str]:
    bucket = new_bucket(url)
    data = [os.urandom(300 * 1024) for _ in range(16)]
    result = {}
    boto = Boto3Client(bucket, url)
    ob = ObstoreClient(bucket, url)

    async def gather() -> None:
        import obstore as obs

        await asyncio.gather(*(obs.put_async(ob.store, f"async/{i}", d) for i, d in enumerate(data)))

    contestants: dict[str, Callable[[], None]] = {
        "boto3, 16 threads": lambda: list(pool.map(lambda i: boto.put(f"b/{i}", data[i]), range(16))),
        "obstore, 16 threads": lambda: list(pool.map(lambda i: ob.put(f"o/{i}", data[i]), range(16))),
        "obstore, asyncio.gather of put_async": lambda: asyncio.run(gather()),
    }
    with ThreadPoolExecutor(16) as pool:
        for name, run in contestants.items():
            run()  # warm
            walls, cpus = [], []
            for _ in range(rounds):
                started, cpu = time.perf_counter(), time.process_time()
                run()
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu)
            wall = statistics.median(walls)
            result[name] = (f"{wall * 1000:.0f} ms per 16 ({16 * 300 / 1024 / wall:.0f} MiB/s), "
                            f"CPU {statistics.median(cpus) * 1000:.0f} ms")
    return result


# -- 6. readers on the same credentials -------------------------------------------------------------------------

def readers(moto_url: str, quick: bool) -> dict[str, Any]:
    """Eight Parquet files read by each reader path: timed against moto, then through a proxy that cuts 20 % of
    GET bodies (what a flaky S3 does to DuckDB and Polars)."""
    import io

    import polars as pl

    out: dict[str, Any] = {}
    bucket = new_bucket(moto_url)
    writer = ObstoreClient(bucket, moto_url)
    files = [f"bars/symbol=S{i}/data.parquet" for i in range(8)]
    for i, key in enumerate(files):
        buffer = io.BytesIO()
        pl.DataFrame({"timestamp": range(i * 5000, (i + 1) * 5000), "close": [float(i)] * 5000}).write_parquet(buffer)
        writer.put(key, buffer.getvalue())
    rows = f"ok: {8 * 5000}"
    for name, action in _reader_paths(bucket, files, moto_url).items():
        times, results = [], []
        for _ in range(3):
            started = time.perf_counter()
            results.append(attempt(action))
            times.append(time.perf_counter() - started)
        out[name] = {"result": results[-1] if results[-1] != rows else "right row count",
                     "median ms": round(statistics.median(times) * 1000)}
    reads = 5 if quick else 12
    with FaultProxy(moto_url, seed=5) as proxy:
        proxy.add("cut", rate=0.2, match=on("GET"))
        for name, action in _reader_paths(bucket, files, proxy.url).items():
            proxy.forget()
            outcomes = Counter("right" if (r := attempt(action)) == rows else r.split(":")[0] for _ in range(reads))
            cut = sum(e.fault == "cut" for e in proxy.exchanges)
            out[name][f"{reads} reads, 20 % of GET bodies cut"] = f"{dict(outcomes)} ({cut} bodies cut)"
    return out


def _reader_paths(bucket: str, files: list[str], url: str) -> dict[str, Callable[[], Any]]:
    """Each way a reader can get at the files, with credentials from one provider callable where it can."""
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds
    import pyarrow.fs
    from obstore.fsspec import FsspecStore

    def provider() -> dict[str, Any]:  # an obstore S3CredentialProvider: the one place credentials come from
        return {"access_key_id": KEYS["AWS_ACCESS_KEY_ID"], "secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
                "token": None, "expires_at": None}

    def polars_provider() -> tuple[dict[str, str], int | None]:  # the same, in Polars' shape
        creds = provider()
        return {"aws_access_key_id": creds["access_key_id"], "aws_secret_access_key": creds["secret_access_key"]}, None

    urls = [f"s3://{bucket}/{key}" for key in files]
    endpoint = {"aws_endpoint_url": url, "aws_allow_http": "true", "aws_region": REGION}
    fsspec_store = FsspecStore("s3", config={"endpoint": url, "region": REGION},
                               client_options={"allow_http": True}, credential_provider=provider)
    arrow_obstore = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fsspec_store))
    arrow_s3 = pyarrow.fs.S3FileSystem(region=REGION, access_key=KEYS["AWS_ACCESS_KEY_ID"],
                                       secret_key=KEYS["AWS_SECRET_ACCESS_KEY"], endpoint_override=url.split("://")[1],
                                       scheme="http")

    def duck(filesystem: Any) -> int:
        con = duckdb.connect()
        con.register("bars", ds.dataset([f"{bucket}/{k}" for k in files], filesystem=filesystem, format="parquet"))
        return int(con.execute("select count(*) from bars").fetchone()[0])  # type: ignore[index]

    def duck_registered() -> int:
        con = duckdb.connect()
        con.register_filesystem(fsspec_store)
        return int(con.execute(f"select count(*) from read_parquet({urls!r})").fetchone()[0])  # type: ignore[index]

    return {
        "Polars scan_parquet, storage_options (today: keys copied from boto3)": lambda: pl.scan_parquet(
            urls, storage_options={**endpoint, "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
                                   "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"]}).select(pl.len()).collect().item(),
        "Polars scan_parquet, credential_provider = the one provider (adapted)": lambda: pl.scan_parquet(
            urls, storage_options=endpoint, credential_provider=polars_provider).select(pl.len()).collect().item(),
        "DuckDB over pyarrow S3FileSystem (today)": lambda: duck(arrow_s3),
        "DuckDB over pyarrow PyFileSystem(FSSpecHandler(obstore FsspecStore))": lambda: duck(arrow_obstore),
        "DuckDB register_filesystem(obstore FsspecStore), read_parquet('s3://...')": duck_registered,
    }


# -- the report -------------------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[str, bool], dict[str, Any]]] = {
    "capabilities": capabilities, "counting": counting, "credentials": credentials, "cuts": cuts,
    "weight": weight, "latency": latency, "readers": readers,
}


def _markdown(results: dict[str, Any], header: str) -> str:
    """A section's value that is a dict of dicts is a table of its own; a dict with some plain values is a row
    of the section's table; a plain value is a bullet. Capabilities: one row per capability, clients as columns."""
    lines = ["# boto3 vs obstore as dataengine's S3 engine", "", header, ""]
    for section, data in results.items():
        lines += [f"## {section}", ""]
        if section == "capabilities":
            keys = list(dict.fromkeys(k for v in data.values() for k in v))
            data = {k: {n: data[n].get(k, "") for n in data} for k in keys}
            lines += [*_table(data, "capability"), ""]
            continue
        rows = {n: v for n, v in data.items() if isinstance(v, dict) and not all(isinstance(x, dict) for x in v.values())}
        if rows:
            lines += [*_table(rows), ""]
        for name, value in data.items():
            if isinstance(value, dict) and value and all(isinstance(x, dict) for x in value.values()):
                lines += [f"### {name}", "", *_table(value), ""]
        lines += [f"- **{n}**: {_cell(v)}" for n, v in data.items() if not isinstance(v, dict)] + [""]
    return "\n".join(lines)


def _table(rows: dict[str, dict[str, Any]], corner: str = "") -> list[str]:
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    return ([f"| {corner} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
            + [f"| {name} | " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for name, row in rows.items()])


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.s3_clients", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute)")
    ap.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for s3_clients.{md,json}")
    args = ap.parse_args(argv)
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[name]  # a developer's AWS settings never reach a measurement
    os.environ.update(KEYS)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    from importlib.metadata import version

    versions = {p: version(p) for p in ("boto3", "botocore", "obstore", "moto", "polars", "pyarrow", "duckdb")}
    header = (f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores (shared: trust "
              f"ratios over absolute times), load {os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}; "
              + ", ".join(f"{k} {v}" for k, v in versions.items()) + ". Command: `python -m bench.s3_clients "
              + " ".join(argv if argv is not None else sys.argv[1:]) + "`.")
    results: dict[str, Any] = {}
    with moto() as moto_url:
        for name, section in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            started = time.monotonic()
            print(f"{name} ...", file=sys.stderr, flush=True)
            results[name] = section(moto_url, args.quick)
            print(f"{name}: {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "s3_clients" if not args.only else "s3_clients-" + "-".join(sorted(args.only))
    (args.out / f"{stem}.json").write_text(json.dumps({"header": header, "results": results}, indent=1, default=str))
    text = _markdown(results, header)
    (args.out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
