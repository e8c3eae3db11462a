from datetime import date, datetime, timedelta, timezone

import pytest

from dataengine.calendar import with_sip_note
from dataengine.errors import UsageError
from dataengine.timerange import month_starts, parse_bound, resolve_range

UTC = timezone.utc
NOW = datetime(2025, 6, 2, 18, 0, tzinfo=UTC)


def test_bare_dates_are_new_york_days_inclusive() -> None:
    rng = resolve_range("2024-01-01", "2024-01-31", now=NOW)
    assert rng.start == datetime(2024, 1, 1, 5, tzinfo=UTC)  # midnight EST
    assert rng.end == datetime(2024, 2, 1, 4, 59, 59, 999999, tzinfo=UTC)


def test_summer_dates_use_edt() -> None:
    assert parse_bound("2024-07-01", is_end=False, name="start") == datetime(2024, 7, 1, 4, tzinfo=UTC)


def test_datetimes_with_offsets_are_kept() -> None:
    assert parse_bound("2024-03-08T09:30:00-05:00", is_end=False, name="s") == datetime(2024, 3, 8, 14, 30, tzinfo=UTC)
    assert parse_bound("2024-03-08T14:30:00Z", is_end=True, name="e") == datetime(2024, 3, 8, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2024-13-01", "2024-02-30", "yesterday", "2024/01/01"])
def test_impossible_dates_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match=bad.replace("/", ".")):
        resolve_range(bad, None, now=NOW)


def test_start_after_end() -> None:
    with pytest.raises(UsageError, match="after end"):
        resolve_range("2024-02-01", "2024-01-01", now=NOW)


def test_a_range_inside_the_sip_delay_is_empty_not_an_error() -> None:
    """--days 1 at 00:05 New York (a cron line) asks for nothing yet: the same line at 00:20 gets bars."""
    five_past_midnight = datetime(2025, 6, 3, 4, 5, tzinfo=UTC)  # 00:05 EDT
    rng = resolve_range("2025-06-03", None, feed="sip", now=five_past_midnight)
    assert rng.empty and rng.start == rng.end == datetime(2025, 6, 3, 4, tzinfo=UTC)
    assert rng.notes == ("nothing to fetch yet: the range starts at 2025-06-03 New York, within the last 16 minutes, "
                         "whose SIP bars are not asked for (sip_delay_minutes)",)
    assert not resolve_range("2025-06-03", None, feed="sip", now=five_past_midnight + timedelta(minutes=15)).empty
    assert not resolve_range("2025-06-03", None, feed="iex", now=five_past_midnight).empty  # IEX has no delay
    # a start and end both typed inside the delay: empty too; typed in the wrong order: still a usage error
    assert resolve_range("2025-06-02T13:50", "2025-06-02T13:55", now=NOW).empty
    with pytest.raises(UsageError, match="after end"):
        resolve_range("2025-06-02T13:55", "2025-06-02T13:50", now=NOW)


def test_defaults_and_recent_sip_clamp() -> None:
    rng = with_sip_note(resolve_range(None, None, feed="sip", now=NOW))
    assert rng.start == datetime(2016, 1, 1, 5, tzinfo=UTC)
    assert rng.end == datetime(2025, 6, 2, 17, 44, tzinfo=UTC)
    assert rng.notes and "15 minutes" in rng.notes[0]


@pytest.mark.parametrize(
    ("now", "said"),
    [
        (datetime(2025, 6, 1, 18, 0, tzinfo=UTC), False),  # Sunday: no bar was cut away
        (datetime(2025, 6, 2, 7, 0, tzinfo=UTC), False),  # Monday 03:00 New York: before the extended session
        (datetime(2025, 6, 2, 8, 10, tzinfo=UTC), True),  # Monday 04:10 New York: 04:00-04:10 cut
        (datetime(2025, 6, 3, 0, 10, tzinfo=UTC), True),  # Monday 20:10 New York: 19:54-20:00 cut
        (datetime(2025, 6, 3, 0, 20, tzinfo=UTC), False),  # Monday 20:20 New York: the session is over
        (datetime(2025, 7, 4, 18, 0, tzinfo=UTC), False),  # Independence Day
    ],
)
def test_the_sip_note_is_said_only_when_the_delay_cut_bars_away(now: datetime, said: bool) -> None:
    rng = with_sip_note(resolve_range("2025-05-01", None, feed="sip", now=now))
    assert rng.end == now - timedelta(minutes=16)  # the end is pulled back all the same
    assert bool(rng.notes) is said
    assert not with_sip_note(resolve_range("2025-05-01", None, feed="sip", now=now, sip_delay_minutes=0)).notes


def test_iex_is_not_clamped_and_old_ends_are_untouched() -> None:
    assert resolve_range(None, None, feed="iex", now=NOW).end == NOW
    assert not resolve_range("2024-01-01", "2024-01-02", feed="sip", now=NOW).notes


def test_month_starts_follow_new_york() -> None:
    starts = month_starts(datetime(2024, 1, 15, tzinfo=UTC), datetime(2024, 3, 1, 5, tzinfo=UTC))
    assert [s.month for s in starts] == [1, 2, 3]
    assert starts[-1] == datetime(2024, 3, 1, 5, tzinfo=UTC)


def test_date_objects_accepted() -> None:
    assert resolve_range(date(2024, 1, 2), date(2024, 1, 2), now=NOW).start == datetime(2024, 1, 2, 5, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("2024-01-31T15:30:00Z", datetime(2024, 1, 31, 15, 30, tzinfo=UTC)),
    ("2024-01-31T15:30:00.123Z", datetime(2024, 1, 31, 15, 30, 0, 123000, tzinfo=UTC)),
    ("2024-01-31T15:30:00.5+00:00", datetime(2024, 1, 31, 15, 30, 0, 500000, tzinfo=UTC)),
    ("2024-01-31 10:30", datetime(2024, 1, 31, 15, 30, tzinfo=UTC)),  # no offset: New York
])
def test_iso_datetimes_read_the_same_on_every_supported_python(text: str, expected: datetime) -> None:
    """Python 3.10's fromisoformat refuses a "Z" and a fraction of other than 3 or 6 digits; --start, --end,
    --as-of and as_of= take them on 3.10 as on 3.11 (the CI runs this file under both)."""
    from dataengine.read.pins import pin

    assert parse_bound(text, is_end=False, name="start") == expected
    assert pin(as_of=text).as_of == expected
