"""One sink's loop: read a batch, decode, write rows and offsets in one target transaction."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from liberate.connector import Sink
from liberate.errors import LiberateError, RetriableError
from liberate.records import ConsumedRecord, TopicPartition
from liberate.runtime._retry import Backoff
from liberate.runtime._stats import ConnectorStats
from liberate.serde import RecordDeserializer
from liberate.streams.base import StreamBackend, StreamConsumer

log = logging.getLogger("liberate.runtime")

POLL_TIMEOUT_S = 0.2


class SinkTask:
    """Runs one sink until stopped (or, with ``once``, until it has consumed what the sources
    produced: ``sources_done`` is set and the sink has reached the end of its topics).

    The sink's own offsets table is the source of truth: on (re)assignment the consumer starts
    from ``sink.committed_offsets``. The group offsets committed to the backend afterwards only
    serve ``status`` and lag.
    """

    def __init__(
        self,
        sink: Sink,
        backend: StreamBackend,
        deserializer: RecordDeserializer,
        stop: threading.Event,
        *,
        once: bool,
        sources_done: threading.Event,
        batch_size: int,
        max_retries: int | None,
    ) -> None:
        self.sink = sink
        self.backend = backend
        self.deserializer = deserializer
        self.stop = stop
        self.once = once
        self.sources_done = sources_done
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.stats = ConnectorStats(sink.name)

    def run(self) -> None:
        """Thread target: loop with retries; records a fatal error in ``stats.error``."""
        backoff = Backoff()
        while not self.stop.is_set():
            try:
                self._run_once()
                return
            except RetriableError as exc:
                if self.max_retries is not None and backoff.attempts >= self.max_retries:
                    self.stats.error = f"sink {self.sink.name}: {exc} (gave up after retries)"
                    return
                log.warning("sink %s: %s; retrying", self.sink.name, exc)
                if backoff.wait(self.stop):
                    return
            except LiberateError as exc:
                self.stats.error = f"sink {self.sink.name}: {exc}"
                return
            except Exception as exc:  # an unclassified error is a bug: report it, stop the run
                log.exception("sink %s failed unexpectedly", self.sink.name)
                self.stats.error = f"sink {self.sink.name}: unexpected {exc!r}"
                return

    def _run_once(self) -> None:
        self.sink.open()
        config = self.sink.config
        consumer: StreamConsumer | None = None
        try:
            consumer = self.backend.consumer(
                self.sink.name,
                topics=tuple(config.topics),
                pattern=config.topics_regex,
                on_assign=self.sink.committed_offsets,
            )
            while not self.stop.is_set():
                batch = consumer.poll(self.batch_size, POLL_TIMEOUT_S)
                if batch:
                    self._write(consumer, batch)
                elif self.once and self.sources_done.is_set() and self._reached_end(consumer):
                    return
        finally:
            if consumer is not None:
                consumer.close()
            self.sink.close()

    def _write(self, consumer: StreamConsumer, batch: list[ConsumedRecord]) -> None:
        self.sink.write(self.deserializer.deserialize(batch))
        next_offsets: dict[TopicPartition, int] = {}
        for record in batch:
            next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        consumer.commit(next_offsets)
        self.stats.add(Counter(r.topic for r in batch))

    def _reached_end(self, consumer: StreamConsumer) -> bool:
        """True when the sink is at the end offset of every assigned partition.

        "At" is the larger of the sink's own committed offset and the consumer's position:
        with Kafka transactions the end offset sits past the last commit marker, which only
        the consumer's position moves beyond.
        """
        assigned = consumer.assignment()
        committed = self.sink.committed_offsets(assigned)
        positions = consumer.positions()
        ends = {
            TopicPartition(info.name, partition): end
            for info in self.backend.topics()
            for partition, end in info.end_offsets.items()
        }
        for tp in assigned:
            end = ends.get(tp, 0)
            at = max(committed.get(tp, 0), positions.get(tp, 0))
            if end > 0 and at < end:
                return False
        return True
