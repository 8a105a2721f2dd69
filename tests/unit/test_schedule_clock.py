"""When scheduled sources start their polling cycles: fire times, and skipped overlapping runs."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from liberate.config.base import SourceConfig
from liberate.config.durations import parse_schedule
from liberate.connector import Source
from liberate.records import Primitive, SourceRecord
from liberate.runtime._schedule import ScheduleClock
from liberate.runtime._source_task import SourceTask
from liberate.serde import RecordSerializer
from liberate.streams.embedded import EmbeddedBackend

START = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


class FakeTime:
    """A clock the test moves by hand."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += dt.timedelta(seconds=seconds)


def test_interval_cycles_start_at_fixed_times_counted_from_the_first_start() -> None:
    now = FakeTime(START)
    clock = ScheduleClock("shop", parse_schedule("30s"), now=now)
    now.advance(10)  # the first cycle took 10 s
    assert clock.seconds_until_next_cycle() == 20
    now.advance(20 + 5)  # the second started on time and took 5 s
    assert clock.seconds_until_next_cycle() == 25
    assert clock.skipped == 0


def test_a_cycle_longer_than_the_interval_skips_the_missed_runs_instead_of_overlapping() -> None:
    now = FakeTime(START)
    clock = ScheduleClock("shop", parse_schedule("30s"), now=now)
    now.advance(75)  # fire times at 30 s and 60 s passed while the cycle ran
    assert clock.seconds_until_next_cycle() == 15  # the next one, at 90 s
    assert clock.skipped == 2


def test_cron_cycles_start_at_the_cron_times_and_skip_those_missed() -> None:
    now = FakeTime(START + dt.timedelta(minutes=3, seconds=30))
    clock = ScheduleClock("shop", parse_schedule("*/5 * * * *"), now=now)
    now.advance(10)
    assert clock.seconds_until_next_cycle() == 80  # at 12:05
    now.advance(80 + 11 * 60)  # the 12:05 cycle ran until 12:16: 12:10 and 12:15 skipped
    assert clock.seconds_until_next_cycle() == 4 * 60
    assert clock.skipped == 2


def test_a_zero_interval_polls_continuously() -> None:
    clock = ScheduleClock("shop", parse_schedule("0s"))
    assert clock.seconds_until_next_cycle() == 0.0


class SlowCycleSource(Source):
    """Each poll is a whole cycle that finds nothing and takes ``CYCLE_S``; notes overlaps."""

    CYCLE_S = 0.25
    config_model: ClassVar[type[SourceConfig]] = SourceConfig

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self.starts: list[float] = []
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        pass

    def poll(self) -> list[SourceRecord]:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.starts.append(time.monotonic())
        time.sleep(self.CYCLE_S)
        with self._lock:
            self.running -= 1
        return []

    def caught_up(self) -> bool:
        return True

    def close(self) -> None:
        pass


def test_a_source_slower_than_its_interval_never_runs_two_cycles_at_once(tmp_path: Path) -> None:
    source = SlowCycleSource(SourceConfig(name="slow", connector="slow"))
    backend = EmbeddedBackend(tmp_path / "streams.db")
    backend.open()
    stop = threading.Event()
    task = SourceTask(source, backend, RecordSerializer(backend.registry()), stop, once=False,
                      schedule=parse_schedule("50ms"), max_retries=0)
    thread = threading.Thread(target=task.run)
    thread.start()
    time.sleep(1.6)
    stop.set()
    thread.join(5)
    backend.close()
    assert not thread.is_alive()
    assert source.most_running == 1
    # Every 50 ms would be ~32 cycles; one at a time, each 250 ms, leaves room for 5 to 7.
    assert 4 <= len(source.starts) <= 7
    gaps = [b - a for a, b in zip(source.starts, source.starts[1:], strict=False)]
    assert min(gaps) >= SlowCycleSource.CYCLE_S
    assert task.clock is not None and task.clock.skipped >= 3 * (len(source.starts) - 1)
