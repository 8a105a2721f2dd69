"""One source's loop: poll, serialize, make durable, confirm (DESIGN §2 commit order)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter

from liberate.config.durations import Schedule
from liberate.connector import Source
from liberate.errors import RecordTooLargeError, RetriableError
from liberate.metrics import METRICS
from liberate.records import SourceRecord
from liberate.runtime._retry import Backoff, supervise
from liberate.runtime._schedule import ScheduleClock
from liberate.runtime._stats import ConnectorStats
from liberate.serde import RecordSerializer
from liberate.streams.base import SourceOffset, StreamBackend, partition_key

log = logging.getLogger("liberate.runtime")

#: how long an idle source without a schedule waits before polling again
IDLE_WAIT_S = 0.05
# The per-record loops of a batch run in C (``map``): a batch holds up to tens of thousands.
_topic = attrgetter("topic")
_partition = attrgetter("partition")


class SourceTask:
    """Runs one source until stopped (or, with ``once``, until it has caught up).

    Order of durability, never reordered: records and their source offsets are appended to
    the backend together; only then is ``source.commit`` told, so a crash anywhere replays and
    never skips.
    """

    def __init__(
        self,
        source: Source,
        backend: StreamBackend,
        serializer: RecordSerializer,
        stop: threading.Event,
        *,
        once: bool,
        schedule: Schedule | None,
        max_retries: int | None,
    ) -> None:
        self.source = source
        self.backend = backend
        self.serializer = serializer
        self.stop = stop
        self.once = once
        self.schedule = schedule
        self.clock = ScheduleClock(source.name, schedule) if schedule is not None else None
        self.max_retries = max_retries
        self.stats = ConnectorStats(source.name)
        self._known_topics: set[str] = set()

    def run(self) -> None:
        """Thread target: loop with retries; records a fatal error in ``stats.error``."""
        supervise(
            f"source {self.source.name}",
            self._run_once,
            stop=self.stop,
            max_retries=self.max_retries,
            stats=self.stats,
        )

    def _run_once(self, backoff: Backoff) -> None:
        self.source.open(self.backend.source_offsets(self.source.name))
        try:
            while not self.stop.is_set():
                polled_at = time.perf_counter()
                records = self.source.poll()
                if records:
                    self._deliver(records)
                # Retries count consecutive failures, not a lifetime's: progress is a poll
                # whose records are durable (a poll that then fails to append is no progress).
                backoff.reset()
                if records:
                    METRICS.source_batch(self.source.name, self.source.config.connector,
                                         records, time.perf_counter() - polled_at)
                    continue
                if self.once and self.source.caught_up():
                    return
                self.stop.wait(self._idle_seconds())
        finally:
            self.source.close()

    def _idle_seconds(self) -> float:
        if self.clock is None:
            return IDLE_WAIT_S
        return self.clock.seconds_until_next_cycle()

    def _deliver(self, records: Sequence[SourceRecord]) -> None:
        topics = list(map(_topic, records))
        for topic in set(topics) - self._known_topics:
            self.backend.ensure_topic(topic, compacted=self.source.compacts(topic))
            self._known_topics.add(topic)
        stream_records = self.serializer.serialize(records)
        offsets = _last_offsets(self.source.name, records)
        try:
            self.backend.append(stream_records, offsets)
        except RecordTooLargeError as exc:
            record = records[exc.index]
            key = dict(record.key) if record.key is not None else None
            raise RecordTooLargeError(
                f"{exc.message}: the record with key {key}", index=exc.index, hint=exc.hint
            ) from exc
        try:
            self.source.commit(offsets)
        except RetriableError:
            # Records and offsets are durable; the confirmation is repeated on the next commit.
            log.warning("source %s: confirming positions failed; will retry", self.source.name)
        self.stats.add(Counter(topics))


def _last_offsets(source: str, records: Sequence[SourceRecord]) -> list[SourceOffset]:
    """The offset of the last record of each source partition in ``records``."""
    if records and len(set(map(id, map(_partition, records)))) == 1:
        # One partition map for all (the common case): the last record's offset.
        record = records[-1]
        return [SourceOffset(source, record.partition, record.offset)]
    last: dict[str, SourceOffset] = {}
    # Sources reuse one partition map per partition: skip by identity, then key by content.
    seen: set[int] = set()
    for record in reversed(records):
        if id(record.partition) in seen:
            continue
        seen.add(id(record.partition))
        key = partition_key(record.partition)
        if key not in last:
            last[key] = SourceOffset(source, record.partition, record.offset)
    return list(last.values())
