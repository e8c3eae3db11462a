"""Choosing a source: its factory, keys, pace and the plan's limits, from the settings."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pytest

from dataengine.config import Settings
from dataengine.errors import ConfigError
from dataengine.orchestration import sources

TODAY = date(2026, 3, 2)


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.load(env=env, cwd=tmp_path)


def test_each_source_is_paced_at_its_own_declared_or_set_pace(tmp_path: Path) -> None:
    free = settings(tmp_path)
    assert (sources.pace(free, "alpaca"), sources.pace(free, "massive")) == (200, 5)
    assert sources.pace(free, "sample") == sources.UNPACED
    assert sources.pace(settings(tmp_path, DATAENGINE_MASSIVE_PLAN="paid"), "massive") == 6000
    assert sources.pace(settings(tmp_path, DATAENGINE_MASSIVE_REQUESTS_PER_MINUTE="50"), "massive") == 50


def test_the_factory_makes_clients_sharing_the_sources_pacer(tmp_path: Path) -> None:
    make = sources.factory(settings(tmp_path, MASSIVE_API_KEY="k", DATAENGINE_MASSIVE_REQUESTS_PER_MINUTE="7"), "massive")
    first, second = (make(stop=threading.Event(), on_wait=None) for _ in range(2))
    assert first._limiter is second._limiter and first._limiter.per_minute == 7  # type: ignore[attr-defined]
    sample = sources.factory(settings(tmp_path), "sample")(stop=threading.Event(), on_wait=None)
    assert type(sample).__name__ == "SampleSource"
    for client in (first, second, sample):
        client.close()


def test_keys_are_asked_of_the_source_that_needs_them(tmp_path: Path) -> None:
    empty = settings(tmp_path)
    sources.check_keys(empty, "sample")
    with pytest.raises(ConfigError, match="MASSIVE_API_KEY"):
        sources.check_keys(empty, "massive")
    with pytest.raises(ConfigError, match="APCA_API_KEY_ID"):
        sources.check_keys(empty, "alpaca")
    both = settings(tmp_path, MASSIVE_API_KEY="massive-secret", APCA_API_KEY_ID="key-id", APCA_API_SECRET_KEY="alpaca-secret")
    assert sources.secrets(both) == {"massive-secret", "key-id", "alpaca-secret"}


def test_the_free_plan_limits_history_and_today_and_a_paid_plan_neither(tmp_path: Path) -> None:
    free = sources.limits(settings(tmp_path), "massive", TODAY)
    assert (free.earliest, free.delay_minutes, free.today_refused) == (date(2024, 3, 3), 0, True)
    assert sources.history_start(settings(tmp_path), "massive", TODAY) == date(2024, 3, 3)
    paid = sources.limits(settings(tmp_path, DATAENGINE_MASSIVE_PLAN="paid"), "massive", TODAY)
    assert (paid.earliest, paid.delay_minutes, paid.today_refused) == (None, 16, False)
    longer = sources.limits(settings(tmp_path, DATAENGINE_MASSIVE_HISTORY_YEARS="5"), "massive", TODAY)
    assert longer.earliest == date(2021, 3, 3)
    assert sources.history_start(settings(tmp_path), "alpaca", TODAY) == date(2016, 1, 1)


def test_the_source_setting_is_checked_where_it_is_read(tmp_path: Path) -> None:
    assert settings(tmp_path, DATAENGINE_SOURCE=" Sample ").source == "sample"
    with pytest.raises(ConfigError, match="environment variable DATAENGINE_SOURCE: unknown source 'polygon'"):
        settings(tmp_path, DATAENGINE_SOURCE="polygon")
    with pytest.raises(ConfigError, match="DATAENGINE_MASSIVE_PLAN: unknown massive plan 'gold'; choose one of: free, paid"):
        settings(tmp_path, DATAENGINE_MASSIVE_PLAN="gold")


def test_the_free_plan_cuts_today_with_a_note_only_when_bars_were_cut(tmp_path: Path) -> None:
    from datetime import datetime

    from dataengine.orchestration.request import IngestOptions, build_request
    from dataengine.timerange import NEW_YORK

    free = settings(tmp_path)
    options = IngestOptions(source="massive")
    for hour, noted in ((10, True), (1, False)):  # a Monday's session under way; 01:30, before it began
        now = datetime(2026, 3, 2, hour, 30, tzinfo=NEW_YORK)
        request = build_request(["AAPL"], "2026-02-23", None, "minute", options, now=now,
                                limits=sources.limits(free, "massive", now.date()))
        assert request.range.end.astimezone(NEW_YORK).isoformat() == "2026-03-01T23:59:59.999999-05:00"
        assert any("serves a day's bars once the day is over" in n for n in request.range.notes) is noted
    request = build_request(["AAPL"], "2016-01-04", "2024-06-28", "day", options, limits=sources.limits(free, "massive", TODAY))
    assert request.range.start.astimezone(NEW_YORK).date() == date(2024, 3, 3)
    assert request.range.notes == ("start moved to 2024-03-03 New York: " + sources.limits(free, "massive", TODAY).why,)
