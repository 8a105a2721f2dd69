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


def test_interval_schedule_fires_every_interval_from_its_start() -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    trigger = parse_schedule("30s").trigger(start)
    assert trigger.get_next_fire_time(start, start) == start + dt.timedelta(seconds=30)


def test_cron_schedule_fires_at_the_next_cron_time() -> None:
    now = dt.datetime(2026, 1, 1, 12, 3, 30, tzinfo=dt.UTC)
    trigger = parse_schedule("*/5 * * * *").trigger(now)
    assert trigger.get_next_fire_time(None, now) == dt.datetime(2026, 1, 1, 12, 5, tzinfo=dt.UTC)


def test_invalid_cron_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_schedule("61 * * * *")
