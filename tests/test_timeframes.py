import pytest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from dataengine.datasets import DatasetKey, parse_adjustment, parse_feed
from dataengine.errors import UsageError
from dataengine.timeframes import parse_timeframe


@pytest.mark.parametrize(
    ("given", "label"),
    [("minute", "1min"), ("5min", "5min"), ("15Min", "15min"), ("hour", "1hour"), ("day", "1day"),
     ("1Day", "1day"), ("week", "1week"), ("month", "1month"), (TimeFrame.Minute, "1min"),
     (TimeFrame(15, TimeFrameUnit.Minute), "15min"), (TimeFrame.Day, "1day")],
)
def test_timeframes_accept_our_names_and_alpaca_objects(given: object, label: str) -> None:
    assert parse_timeframe(given).label == label  # type: ignore[arg-type]


def test_unknown_timeframe_lists_choices() -> None:
    with pytest.raises(UsageError, match="choose one of: minute, 5min"):
        parse_timeframe("2min")


def test_dataset_dirs_keep_adjusted_apart() -> None:
    assert DatasetKey.of("day").dirname == "equities_1day"
    assert DatasetKey.of("day", "all").dirname == "equities_1day_all"


@pytest.mark.parametrize("bad", ["SIP2", "nasdaq"])
def test_unknown_feed(bad: str) -> None:
    with pytest.raises(UsageError, match="unknown feed"):
        parse_feed(bad)


def test_unknown_adjustment() -> None:
    with pytest.raises(UsageError, match="unknown adjustment"):
        parse_adjustment("spin-off")
