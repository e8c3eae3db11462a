"""The fault proxy in front of the S3 test server: each fault does what it says, and nothing else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest

from tests.s3_fault_proxy import FaultProxy, on

KEY = "dir/object.bin"
BODY = bytes(range(256)) * 64  # 16 KiB


def _client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})  # every fault visible
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="proxy-test",
                        aws_secret_access_key="secret", config=config)


@pytest.fixture
def direct(s3_endpoint: str) -> Any:
    """A client that talks to the S3 server itself: what really happened."""
    return _client(s3_endpoint)


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint, seed=7) as started:
        yield started


@pytest.fixture
def bucket(direct: Any) -> str:
    name = f"proxy-{uuid.uuid4().hex[:12]}"
    direct.create_bucket(Bucket=name)
    return name


def test_without_rules_every_request_passes_and_is_recorded(proxy: FaultProxy, bucket: str) -> None:
    s3 = _client(proxy.url)
    s3.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == BODY
    assert s3.head_object(Bucket=bucket, Key=KEY)["ContentLength"] == len(BODY)
    assert [(e.method, e.status, e.fault, e.access_key) for e in proxy.exchanges] == [
        ("PUT", 200, None, "proxy-test"), ("GET", 200, None, "proxy-test"), ("HEAD", 200, None, "proxy-test")]


def test_cut_sends_part_of_the_body_then_closes(proxy: FaultProxy, bucket: str, direct: Any) -> None:
    from botocore.exceptions import IncompleteReadError, ResponseStreamingError

    direct.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    s3 = _client(proxy.url)
    proxy.add("cut", match=on("GET"), times=1, keep=0.25)
    answer = s3.get_object(Bucket=bucket, Key=KEY)  # the status and headers arrive whole
    assert answer["ContentLength"] == len(BODY)
    with pytest.raises((IncompleteReadError, ResponseStreamingError)):
        answer["Body"].read()
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == BODY  # times=1: the next one is whole
    assert [e.fault for e in proxy.exchanges] == ["cut", None]


def test_cut_leaves_responses_without_a_body_alone(proxy: FaultProxy, bucket: str, direct: Any) -> None:
    direct.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    rule = proxy.add("cut")
    assert _client(proxy.url).head_object(Bucket=bucket, Key=KEY)["ContentLength"] == len(BODY)
    assert rule.fired == 0


def test_fail_before_never_reaches_the_server(proxy: FaultProxy, bucket: str, direct: Any) -> None:
    from botocore.exceptions import ClientError

    proxy.add("fail_before", match=on("PUT"), status=503, code="SlowDown")
    with pytest.raises(ClientError) as error:
        _client(proxy.url).put_object(Bucket=bucket, Key=KEY, Body=BODY)
    assert (error.value.response["Error"]["Code"], error.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "SlowDown", 503)
    assert "Contents" not in direct.list_objects_v2(Bucket=bucket)
    assert [(e.status, e.upstream_status, e.fault) for e in proxy.exchanges] == [(503, None, "fail_before")]


def test_fail_after_applies_the_write_then_answers_an_error(proxy: FaultProxy, bucket: str, direct: Any) -> None:
    from botocore.exceptions import ClientError

    proxy.add("fail_after", match=on("PUT"), status=500, code="InternalError")
    with pytest.raises(ClientError, match="InternalError"):
        _client(proxy.url).put_object(Bucket=bucket, Key=KEY, Body=BODY)
    assert direct.get_object(Bucket=bucket, Key=KEY)["Body"].read() == BODY
    assert [(e.status, e.upstream_status, e.fault) for e in proxy.exchanges] == [(500, 200, "fail_after")]


def test_status_and_code_are_the_callers(proxy: FaultProxy, bucket: str) -> None:
    from botocore.exceptions import ClientError

    proxy.add("fail_before", status=409, code="ConditionalRequestConflict")
    with pytest.raises(ClientError) as error:
        _client(proxy.url).put_object(Bucket=bucket, Key=KEY, Body=BODY, IfNoneMatch="*")
    assert error.value.response["Error"]["Code"] == "ConditionalRequestConflict"


def test_delay_holds_the_request_then_forwards_it(proxy: FaultProxy, bucket: str, direct: Any) -> None:
    direct.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    proxy.add("delay", seconds=0.3, match=on("GET"))
    started = time.monotonic()
    assert _client(proxy.url).get_object(Bucket=bucket, Key=KEY)["Body"].read() == BODY
    assert time.monotonic() - started >= 0.3
    assert proxy.exchanges[0].fault is None


def test_delay_after_answers_late_with_what_the_server_said_before(proxy: FaultProxy, bucket: str, direct: Any) -> None:
    import threading

    answered = threading.Event()

    def listing(request: Any) -> bool:
        if request.method == "GET" and "list-type=2" in request.query:
            answered.set()  # asked once the server has answered
            return True
        return False

    proxy.add("delay_after", seconds=0.5, match=listing)
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(
        _client(proxy.url).list_objects_v2(Bucket=bucket).get("KeyCount", 0)))
    reader.start()
    assert answered.wait(5)
    direct.put_object(Bucket=bucket, Key=KEY, Body=BODY)  # lands while the answer is held back
    reader.join(5)
    assert seen == [0] and direct.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_rate_is_a_seeded_draw(s3_endpoint: str, bucket: str, direct: Any) -> None:
    from botocore.exceptions import ClientError

    direct.put_object(Bucket=bucket, Key=KEY, Body=BODY)
    patterns = []
    for _ in range(2):
        with FaultProxy(s3_endpoint, seed=3) as proxy:
            proxy.add("fail_before", rate=0.5, status=500, code="InternalError")
            s3 = _client(proxy.url)
            for _ in range(30):
                with suppress(ClientError):
                    s3.head_object(Bucket=bucket, Key=KEY)
            patterns.append([e.fault for e in proxy.exchanges])
    assert patterns[0] == patterns[1]
    assert 5 < patterns[0].count("fail_before") < 25


def test_a_rule_can_be_scoped_to_a_block(proxy: FaultProxy, bucket: str) -> None:
    from botocore.exceptions import ClientError

    s3 = _client(proxy.url)
    with proxy.faults("fail_before", status=500, code="InternalError") as rule, pytest.raises(ClientError):
        s3.list_objects_v2(Bucket=bucket)
    s3.list_objects_v2(Bucket=bucket)
    assert rule.fired == 1
