"""Durations and schedules as the run file writes them: ``500ms``, ``5s``, ``1m``, ``1h``, or a
five-field cron expression (``*/5 * * * *``), evaluated with APScheduler's cron trigger."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | int | float) -> dt.timedelta:
    """``"5s"`` -> 5 seconds; a bare number means seconds. Raises ValueError with the forms."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return dt.timedelta(seconds=float(text))
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration; write e.g. 500ms, 5s, 1m, 1h or 1d")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


def _duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    return parse_duration(value)


def _format_duration(value: dt.timedelta) -> str:
    seconds = value.total_seconds()
    return f"{seconds:g}s"


#: a pydantic field type accepting ``"5s"``-style text and holding a timedelta
Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_duration),
    PlainSerializer(_format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$"}),
]


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a polling source runs again: every ``interval``, or at the times of ``cron``.

    Both are APScheduler triggers (``trigger``); ``liberate.runtime._schedule.ScheduleClock``
    runs them with APScheduler's ``max_instances=1, coalesce=True`` semantics.
    """

    text: str
    interval: dt.timedelta | None = None
    cron: Any = None

    def trigger(self, start: dt.datetime) -> Any:
        """The APScheduler trigger of this schedule; an interval counts from ``start``."""
        if self.interval is None:
            return self.cron
        from apscheduler.triggers.interval import IntervalTrigger

        return IntervalTrigger(seconds=self.interval.total_seconds(), start_date=start,
                               timezone=dt.UTC)


def parse_schedule(value: Any) -> Schedule:
    """An interval (``5s``) or a five-field cron expression; ValueError otherwise."""
    if isinstance(value, Schedule):
        return value
    text = str(value).strip()
    try:
        return Schedule(text=text, interval=parse_duration(text))
    except ValueError:
        pass
    if len(text.split()) == 5:
        from apscheduler.triggers.cron import CronTrigger

        try:
            return Schedule(text=text, cron=CronTrigger.from_crontab(text, timezone=dt.UTC))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid cron expression: {exc}") from exc
    raise ValueError(
        f"{text!r} is neither an interval (5s, 1m) nor a five-field cron expression (*/5 * * * *)"
    )


#: a pydantic field type for ``schedule:`` keys
ScheduleField = Annotated[
    Schedule,
    BeforeValidator(parse_schedule),
    PlainSerializer(lambda s: s.text, return_type=str),
    WithJsonSchema({"type": "string", "description": "an interval (5s, 1m) or a cron expression"}),
]
