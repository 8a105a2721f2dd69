"""Durations and schedules as run files write them."""

from __future__ import annotations

import datetime as dt

import pytest

from liberate.config.durations import parse_duration, parse_schedule


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5), ("2m", 120), ("1h", 3600), ("1d", 86400), ("7", 7), (3, 3)],
)
def test_durations_parse_with_units(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5 parsecs", "-1s", "fast"])
def test_bad_durations_say_which_forms_are_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="500ms, 5s"):
        parse_duration(text)


def test_interval_schedule_waits_its_interval() -> None:
    assert parse_schedule("30s").seconds_until_next() == 30


def test_cron_schedule_waits_until_the_next_fire_time() -> None:
    schedule = parse_schedule("*/5 * * * *")
    now = dt.datetime(2026, 1, 1, 12, 3, 30, tzinfo=dt.UTC)
    assert schedule.seconds_until_next(now) == 90


def test_invalid_cron_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_schedule("61 * * * *")
