"""When a scheduled source runs its next polling cycle: APScheduler's triggers, one run at a time.

A source with ``schedule:`` polls in cycles (the query source reads every table up to the
bound fixed at the cycle's start, then its ``poll`` returns ``[]``). The first cycle starts at
once; the next ones start at the schedule's fire times: every interval counted from the first
start (APScheduler's ``IntervalTrigger``), or the times of the cron expression
(``CronTrigger``). A cycle runs on the source's own thread, so two cycles of one source never
overlap: fire times that pass while a cycle still runs are skipped and counted, and the next
cycle starts at the first fire time after it ends. That is APScheduler's ``max_instances=1``
with ``coalesce=True``, without handing the source to a scheduler thread: the runtime keeps
the order of commits (DESIGN §2).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from liberate.config.durations import Schedule
from liberate.metrics import METRICS

log = logging.getLogger("liberate.runtime")

#: fire times counted at most when reporting skipped runs (a stalled cron counts no further)
MAX_COUNTED_SKIPS = 10_000

Clock = Callable[[], dt.datetime]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ScheduleClock:
    """The fire times of one source's schedule, from its first cycle on. One thread uses it."""

    def __init__(self, name: str, schedule: Schedule, *, now: Clock = _utc_now) -> None:
        self.name = name
        self.schedule = schedule
        self._now = now
        start = now()
        self._continuous = schedule.interval is not None and schedule.interval <= dt.timedelta(0)
        self._trigger: Any = None if self._continuous else schedule.trigger(start)
        #: the fire time of the cycle that runs now (the first one starts at once)
        self._fired = start
        #: fire times that passed while a cycle ran, since the clock started
        self.skipped = 0

    def seconds_until_next_cycle(self) -> float:
        """Called when a cycle has ended: how long to wait before the next one starts.

        Fire times that passed during the cycle are skipped (counted in ``skipped``, logged);
        the next cycle is at the first fire time after now.
        """
        if self._continuous:
            return 0.0
        now = self._now()
        missed = self._missed_since(self._fired, now)
        if missed:
            self.skipped += missed
            METRICS.skipped(self.name, missed)
            log.info(
                "source %s: a polling cycle outlasted the schedule %s; skipped %d run(s) "
                "rather than run two at once",
                self.name, self.schedule.text, missed,
            )
        upcoming: dt.datetime | None = self._trigger.get_next_fire_time(None, now)
        if upcoming is None:  # a trigger with an end; ours have none, but never spin
            return 3600.0
        if upcoming <= now:  # an interval tick that falls exactly on now: take the one after
            upcoming = self._trigger.get_next_fire_time(upcoming, now)
            assert upcoming is not None
        self._fired = upcoming
        return max(0.0, (upcoming - now).total_seconds())

    def _missed_since(self, fired: dt.datetime, now: dt.datetime) -> int:
        missed = 0
        fire = self._trigger.get_next_fire_time(fired, fired)
        while fire is not None and fire <= now and missed < MAX_COUNTED_SKIPS:
            if fire > fired:
                missed += 1
            fire = self._trigger.get_next_fire_time(fire, fire + dt.timedelta(microseconds=1))
        return missed
