"""The S3 client through the fault proxy: a GET whose body is cut short or times out is sent again (botocore
retries the request, never the streamed body), each attempt counted as the request it is."""

from __future__ import annotations

import os
import time

import pytest

from dataengine.errors import LockError, StorageError
from dataengine.storage.s3_client import READ_ATTEMPTS
from dataengine.storage.store import StorePath, open_store
from tests.s3_fault_proxy import FaultProxy, on

BODY = bytes(range(256)) * 40


def hand_clock(root: StorePath) -> list[float]:
    """The S3 client's endpoint watch on a clock moved by hand: ``now[0] += s``."""
    watch = root.store.client.watch
    now = [watch.clock()]
    watch.clock = lambda: now[0]
    return now


def test_a_body_cut_short_is_read_again_and_every_attempt_counted(s3_proxy: FaultProxy, s3_store: str) -> None:
    path = open_store(s3_store) / "metadata/coverage/equities_1min/0000000000.jsonl"
    path.write_bytes(BODY)
    before = path.store.request_counts().get("GET", 0)
    s3_proxy.add("cut", times=2, keep=0.4, match=on("GET"))
    assert path.read_bytes() == BODY
    assert path.store.request_counts()["GET"] - before == 3
    assert [e.fault for e in s3_proxy.exchanges if e.method == "GET"] == ["cut", "cut", None]


def test_a_body_cut_every_time_is_one_line_naming_the_object(s3_proxy: FaultProxy, s3_store: str) -> None:
    path = open_store(s3_store) / "corporate_actions/fetched.json"
    path.write_bytes(BODY)
    s3_proxy.add("cut", match=on("GET"))
    with pytest.raises(StorageError, match=r"cannot read s3://.*/corporate_actions/fetched.json") as raised:
        path.read_bytes()
    assert "\n" not in str(raised.value)
    assert sum(e.method == "GET" for e in s3_proxy.exchanges) == READ_ATTEMPTS


def test_aws_region_is_honoured_as_the_aws_cli_does(monkeypatch: pytest.MonkeyPatch, s3_store: str) -> None:
    """boto3 alone reads only AWS_DEFAULT_REGION; docs/s3.md (like the AWS CLI v2) says AWS_REGION."""
    from dataengine.storage.s3_client import S3Client

    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    client = S3Client("any-bucket")
    assert client.s3.meta.region_name == "eu-west-2"
    assert client.credentials()["region"] == "eu-west-2"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")  # both set: AWS_REGION wins, as in the other SDKs
    assert S3Client("any-bucket").s3.meta.region_name == "eu-west-2"


def test_a_fence_refusing_a_copy_is_a_lock_error_not_a_storage_error(s3_store: str) -> None:
    root = open_store(s3_store)
    (root / "a.parquet").write_bytes(b"x")
    calls = []

    def fence() -> None:  # passes the store's own check, then refuses the request itself
        calls.append(1)
        if len(calls) >= 2:
            raise LockError("the store lock was lost")

    root.store.hold(fence)
    try:
        with pytest.raises(LockError, match="lock was lost"):
            root.store.link("a.parquet", "b.parquet")
    finally:
        root.store.hold(None)
    assert root.store.stat("b.parquet") is None  # the copy was never sent


def test_an_endpoint_that_stops_answering_costs_one_operation_its_retries_then_the_rest_fail_at_once(
    s3_proxy: FaultProxy, s3_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung S3 (a proxy that takes requests and never answers) kept a run going for minutes: every operation,
    the run's clean-up included, waited through retries of its own. Now the first one's failure is everyone's
    for SILENT_S; then the endpoint is asked again."""
    from dataengine.storage.s3_client import forget_clients
    from dataengine.storage.s3_endpoint_watch import PROBE_S, SILENT_S

    monkeypatch.setenv("DATAENGINE_S3_TIMEOUT", "0.2")
    forget_clients()
    root = open_store(s3_store)
    path = root / "metadata/runs/one.json"
    path.write_bytes(b"{}")
    now = hand_clock(root)
    s3_proxy.add("delay", seconds=1.0)  # longer than the read timeout: no byte comes back in time
    with pytest.raises(StorageError, match=r"cannot write s3://.*/metadata/runs/one.json: Read timeout"):
        path.write_bytes(b"[]")
    time.sleep(1.5)  # the proxy records each held attempt when its 1 s delay ends: let the last one be counted
    sent = len(s3_proxy.exchanges)
    methods = [e.method for e in s3_proxy.exchanges]
    assert set(methods) == {"PUT"} and len(methods) > 1  # one operation, and all its attempts
    for step in (path.read_bytes, lambda: path.write_bytes(b"{}"), lambda: root.store.delete(path.key)):
        with pytest.raises(StorageError, match=r"the S3 endpoint stopped answering \(Read timeout.*asked again every"):
            step()
    assert len(s3_proxy.exchanges) == sent  # failed at once: nothing sent
    s3_proxy.clear()
    now[0] += PROBE_S  # one request asks; it is answered, and every one after it goes out again
    assert path.read_bytes() == b"[]"  # the slow PUTs did land (after the client gave up on them)
    # both GETs went out (clear() forgot the earlier exchanges; a slow PUT the proxy was still holding may be
    # recorded after it, as CI once saw: count the GETs)
    assert path.read_bytes() == b"[]" and [e.method for e in s3_proxy.exchanges].count("GET") == 2
    s3_proxy.add("delay", seconds=1.0)
    with pytest.raises(StorageError, match="Read timeout"):
        path.read_bytes()
    s3_proxy.clear()
    now[0] += SILENT_S  # silent again, and nobody asked for the whole window: back to normal after it
    assert path.read_bytes() == b"[]"


def test_how_long_the_endpoint_has_left_requests_unanswered_is_known_while_they_wait(
    s3_proxy: FaultProxy, s3_store: str
) -> None:
    """What a run's progress line says while S3 does not answer (its retries take minutes to fail a write): the
    time since the first request sent after the last answer, 0 again at the next answer."""
    import threading

    root = open_store(s3_store)
    path = root / "metadata/runs/slow.json"
    path.write_bytes(b"{}")
    now = hand_clock(root)
    assert root.store.unanswered_s() == 0.0
    s3_proxy.add("delay", seconds=1.0, times=1)
    reader = threading.Thread(target=path.read_bytes)
    reader.start()
    deadline = time.monotonic() + 5
    while root.store.unanswered_s() == 0.0:  # time passes on the watch's clock until the GET is on the wire
        now[0] += 1.0
        assert time.monotonic() < deadline, "the GET was never sent"
        time.sleep(0.01)
    now[0] += 45
    assert root.store.unanswered_s() >= 45
    reader.join()
    assert root.store.unanswered_s() == 0.0  # answered


def test_a_503_is_an_answer_not_silence(s3_proxy: FaultProxy, s3_store: str) -> None:
    """A PUT answered 503 SlowDown twice, then 200: the endpoint answered every attempt, so the time it has left
    requests unanswered starts again at each one (it was hooked on the operation's end, after its retries, so a
    storm of 503s read as S3 not answering, as a review found)."""
    root = open_store(s3_store)
    now = hand_clock(root)
    seen: list[float] = []

    def slow_down(request: object) -> bool:  # at each attempt's arrival: what the watch says, then 30 s pass
        seen.append(root.store.unanswered_s())
        now[0] += 30
        return True

    s3_proxy.add("fail_before", status=503, code="SlowDown", times=2, match=lambda r: r.method == "PUT" and slow_down(r))
    (root / "metadata/runs/busy.json").write_bytes(b"{}")
    assert seen == [0.0, 0.0] and root.store.unanswered_s() == 0.0  # the second was sent after an answer


def test_a_refused_connection_is_left_to_the_retries(s3_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal (an endpoint restarting) fails in an instant and may be over a second later: no window."""
    from dataengine.storage.s3_client import forget_clients

    root = open_store(s3_store)
    path = root / "metadata/runs/two.json"
    path.write_bytes(b"{}")
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    forget_clients()
    refused = open_store(s3_store) / "metadata/runs/two.json"
    with pytest.raises(StorageError, match="Could not connect"):
        refused.read_bytes()
    with pytest.raises(StorageError, match="Could not connect"):  # asked again, not 'stopped answering'
        refused.read_bytes()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
