"""Massive's answers decoded: an aggregates page into the stored bar schema, an error into dataengine's tree."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dataengine.errors import AuthError, FatalRunError, RequestRejectedError, TransientSourceError
from dataengine.sources.massive_wire import decode_aggs, refusal
from dataengine.sources.pages import FractionalVolumeError, PageDecodeError
from dataengine.storage.layout import BAR_SCHEMA

# Shaped as Massive's published example and its client's recorded answers (values of our own).
PAGE = (b'{"ticker":"AAPL","queryCount":2,"resultsCount":2,"adjusted":false,"results":['
        b'{"v":70790813.0,"vw":131.6292,"o":130.465,"c":130.15,"h":133.41,"l":129.89,"t":1673240400000,"n":645365},'
        b'{"v":63896155,"vw":129.8755,"o":130.26,"c":130.73,"h":131.2636,"l":128.12,"t":1673326800000,"n":554940}],'
        b'"status":"DELAYED","request_id":"a47d1beb","count":2,'
        b'"next_url":"https://api.massive.com/v2/aggs/ticker/AAPL/range/1/day/1673413200000/2023-01-31?cursor=bGltaXQ9Mg"}')


def test_a_page_decodes_exactly_with_ms_as_microseconds() -> None:
    frame, next_url = decode_aggs(PAGE, "AAPL")
    assert dict(frame.schema) == BAR_SCHEMA and next_url is not None and next_url.endswith("cursor=bGltaXQ9Mg")
    first = frame.row(0, named=True)
    assert first["timestamp"] == datetime(2023, 1, 9, 5, tzinfo=timezone.utc)  # midnight New York (EST)
    assert (first["open"], first["high"], first["low"], first["close"], first["vwap"]) == (130.465, 133.41, 129.89, 130.15, 131.6292)
    assert (first["volume"], first["trade_count"], frame["volume"][1]) == (70790813, 645365, 63896155)


def test_no_results_is_an_empty_last_page() -> None:
    frame, next_url = decode_aggs(b'{"ticker":"APPL","queryCount":0,"resultsCount":0,"adjusted":false,"status":"OK","count":0}', "APPL")
    assert frame.is_empty() and dict(frame.schema) == BAR_SCHEMA and next_url is None


def test_a_fractional_volume_is_refused_unless_rounding_is_asked_for() -> None:
    body = b'{"results":[{"v":12.5,"o":1,"h":1,"l":1,"c":1,"t":1673240400000},{"v":7.49,"o":1,"h":1,"l":1,"c":1,"t":1673240460000}],"status":"OK"}'
    with pytest.raises(FractionalVolumeError, match=r"AAPL: fractional volume 12\.5") as caught:
        decode_aggs(body, "AAPL")
    assert caught.value.symbol == "AAPL"
    counted: list[int] = []
    frame, _ = decode_aggs(body, "AAPL", rounded=counted.append)
    assert frame["volume"].to_list() == [13, 7] and counted == [2] and dict(frame.schema) == BAR_SCHEMA


@pytest.mark.parametrize("body", [b"", b"<html>502</html>", b'{"results":[{"t":"x"}]}', b'{"status":"ERROR","error":"x"}'])
def test_a_body_that_is_no_page_is_refused(body: bytes) -> None:
    with pytest.raises(PageDecodeError):
        decode_aggs(body, "AAPL")


@pytest.mark.parametrize("status,body,kind,words", [
    (401, b'{"status":"ERROR","request_id":"r","error":"Unknown API Key"}', AuthError, "Unknown API Key"),
    (403, b'{"status":"NOT_AUTHORIZED","request_id":"r","message":"You are not entitled to this data."}', FatalRunError, "not entitled"),
    (400, b'{"status":"ERROR","request_id":"r","error":"Could not parse the time parameter"}', RequestRejectedError, "Could not parse"),
    (404, b'{"status":"NOT_FOUND","message":"Not Found"}', RequestRejectedError, "Not Found"),
    (429, b'{"status":"ERROR","error":"You\'ve exceeded the maximum requests per minute"}', TransientSourceError, "maximum requests"),
    (502, b"<html>\n<body>Bad Gateway</body></html>", TransientSourceError, "Bad Gateway"),
])
def test_each_refusal_maps_to_the_exception_tree_in_one_line(status: int, body: bytes, kind: type, words: str) -> None:
    exc = refusal(status, body)
    assert type(exc) is kind and words in str(exc) and "\n" not in str(exc)
    assert exc.exit_code == (3 if status in (400, 401, 403, 404) else 1)
