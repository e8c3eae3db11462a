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


@pytest.mark.parametrize("bad", ["60min", "24hour", "2day", "5month", "5m", "fortnight"])
def test_a_size_alpaca_does_not_serve_lists_the_choices(bad: str) -> None:
    with pytest.raises(UsageError, match="minute, 5min, 15min"):
        parse_timeframe(bad)


@pytest.mark.parametrize(
    ("given", "label", "wire"),
    [("3min", "3min", "3Min"), ("10min", "10min", "10Min"), ("10Min", "10min", "10Min"), ("10T", "10min", "10Min"),
     ("59min", "59min", "59Min"), ("2hour", "2hour", "2Hour"), ("2H", "2hour", "2Hour"), ("4hour", "4hour", "4Hour"),
     ("23H", "23hour", "23Hour"), ("3month", "3month", "3Month"), ("3M", "3month", "3Month"),
     ("4M", "4month", "4Month"), ("12month", "12month", "12Month"), (TimeFrame(2, TimeFrameUnit.Hour), "2hour", "2Hour")],
)
def test_every_size_alpaca_serves_in_our_and_alpacas_spellings(given: object, label: str, wire: str) -> None:
    tf = parse_timeframe(given)  # type: ignore[arg-type]
    assert (tf.label, tf.wire) == (label, wire)
    assert DatasetKey.of(tf).dirname == f"equities_{label}"
    assert parse_timeframe(tf.label) == tf  # a dataset's label reads back as the same size


def test_dataset_dirs_keep_adjusted_apart() -> None:
    assert DatasetKey.of("day").dirname == "equities_1day"
    assert DatasetKey.of("day", "all").dirname == "equities_1day_all"


@pytest.mark.parametrize("bad", ["SIP2", "nasdaq"])
def test_unknown_feed(bad: str) -> None:
    with pytest.raises(UsageError, match="unknown feed"):
        parse_feed(bad)


@pytest.mark.parametrize("bad", ["splits", "split,bogus", "", ","])
def test_unknown_adjustment(bad: str) -> None:
    with pytest.raises(UsageError, match="unknown adjustment"):
        parse_adjustment(bad)


@pytest.mark.parametrize(
    ("given", "canonical", "dirname"),
    [("spin-off", "spin-off", "equities_1day_spinoff"), ("split,spin-off", "split,spin-off", "equities_1day_split_spinoff"),
     ("spin-off, split", "split,spin-off", "equities_1day_split_spinoff"), ("dividend,split", "split,dividend", "equities_1day_split_dividend"),
     ("split,dividend,spin-off", "all", "equities_1day_all"), ("raw,split", "split", "equities_1day_split")],
)
def test_adjustment_combinations_get_one_predictable_dataset(given: str, canonical: str, dirname: str) -> None:
    from dataengine.storage.layout import describe_dataset

    assert parse_adjustment(given) == canonical
    assert DatasetKey.of("day", given).dirname == dirname
    assert describe_dataset(dirname)["adjustment"] == canonical


def test_boats_is_a_feed_and_delayed_sip_is_stored_as_sip() -> None:
    assert parse_feed("boats") == "boats" and parse_feed("delayed_sip") == "sip"
