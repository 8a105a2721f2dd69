"""One source's loop: poll, serialize, make durable, confirm (DESIGN §2 commit order)."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence

from liberate.config.durations import Schedule
from liberate.connector import Source
from liberate.errors import RetriableError
from liberate.records import SourceRecord
from liberate.runtime._retry import supervise
from liberate.runtime._stats import ConnectorStats
from liberate.serde import RecordSerializer
from liberate.streams.base import SourceOffset, StreamBackend, partition_key

log = logging.getLogger("liberate.runtime")

#: how long an idle source without a schedule waits before polling again
IDLE_WAIT_S = 0.05


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
        self.max_retries = max_retries
        self.stats = ConnectorStats(source.name)
        self._known_topics: set[str] = set()

    def run(self) -> None:
        """Thread target: loop with retries; records a fatal error in ``stats.error``."""
        supervise(
            f"source {self.source.name}",
            lambda _backoff: self._run_once(),
            stop=self.stop,
            max_retries=self.max_retries,
            stats=self.stats,
        )

    def _run_once(self) -> None:
        self.source.open(self.backend.source_offsets(self.source.name))
        try:
            while not self.stop.is_set():
                records = self.source.poll()
                if records:
                    self._deliver(records)
                    continue
                if self.once and self.source.caught_up():
                    return
                self.stop.wait(self._idle_seconds())
        finally:
            self.source.close()

    def _idle_seconds(self) -> float:
        if self.schedule is None:
            return IDLE_WAIT_S
        return self.schedule.seconds_until_next()

    def _deliver(self, records: Sequence[SourceRecord]) -> None:
        for topic in {r.topic for r in records} - self._known_topics:
            self.backend.ensure_topic(topic, compacted=self.source.compacts(topic))
            self._known_topics.add(topic)
        stream_records = self.serializer.serialize(records)
        offsets = _last_offsets(self.source.name, records)
        self.backend.append(stream_records, offsets)
        try:
            self.source.commit(offsets)
        except RetriableError:
            # Records and offsets are durable; the confirmation is repeated on the next commit.
            log.warning("source %s: confirming positions failed; will retry", self.source.name)
        self.stats.add(Counter(r.topic for r in records))


def _last_offsets(source: str, records: Sequence[SourceRecord]) -> list[SourceOffset]:
    """The offset of the last record of each source partition in ``records``."""
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
