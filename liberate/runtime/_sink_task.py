"""One sink's loop: read a batch, decode, write rows and offsets in one target transaction.

Sinks that keep dead letters (they have ``attach_context``) get a ``SinkContext`` before they
open, after Kafka Connect's ``SinkTaskContext``: it hands them the bytes each record was
consumed as, appends their dead letters to the stream backend, and tells whether a record's
value schema is the latest registered one. Such sinks also receive the records that cannot be
decoded, flagged (``SinkRecord.extra[RECORD_ERROR]`` holds the ``RecordError``; key and
value are None, the key is kept when it decodes), so they can dead-letter them and still move
their offsets past them; other sinks stop at them, as before.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from operator import attrgetter
from typing import cast

from liberate.connector import Sink
from liberate.errors import FatalError, LiberateError, RecordError, RetriableError
from liberate.metrics import METRICS
from liberate.records import ConsumedRecord, Headers, SinkRecord, StreamRecord, TopicPartition
from liberate.runtime._retry import Backoff, supervise
from liberate.runtime._stats import ConnectorStats
from liberate.schema.avro import AvroSchema, schema_id_of
from liberate.schema.registry import SchemaRegistry
from liberate.serde import RecordDeserializer
from liberate.streams.base import StreamBackend, StreamConsumer, end_offsets, unread
from liberate.verify.routes import consumes

log = logging.getLogger("liberate.runtime")

POLL_TIMEOUT_S = 0.2
#: how long ``--once`` waits for partitions with records that the group has not assigned to
#: it (a killed member's session running out: Kafka's default session.timeout.ms is 45 s)
ASSIGNMENT_WAIT_S = 60.0
#: ``SinkRecord.extra`` key of the error of a record the runtime could not decode
RECORD_ERROR = "liberate.error"

_Coordinates = tuple[str, int, int]
_PARTITION = attrgetter("topic", "partition")
_OFFSET = attrgetter("offset")
_TOPIC = attrgetter("topic")


class SinkContext:
    """What the runtime offers a sink about the batch it is writing (see the module doc).

    Used from the sink's thread only; ``begin`` is called before each ``write``.
    """

    def __init__(self, backend: StreamBackend, registry: SchemaRegistry) -> None:
        self._backend = backend
        self._registry = registry
        self._batch: Sequence[ConsumedRecord] = ()
        self._index: dict[_Coordinates, ConsumedRecord] | None = None
        self._topics: set[str] = set()
        self._subjects: dict[int, str | None] = {}

    def begin(self, batch: Sequence[ConsumedRecord]) -> None:
        """The consumed records of the next ``write``."""
        self._batch = batch
        self._index = None  # built on first use: most batches never need it

    def raw(self, record: SinkRecord) -> tuple[bytes | None, bytes | None] | None:
        """The key and value bytes ``record`` was consumed as; None when not in the batch."""
        consumed = self._consumed(record)
        return None if consumed is None else (consumed.key, consumed.value)

    def send(self, topic: str, letters: Sequence[tuple[SinkRecord, Headers]]) -> None:
        """Append each record's consumed bytes to ``topic`` with its headers plus the given
        ones; durable on return."""
        records = []
        for record, headers in letters:
            consumed = self._consumed(record)
            if consumed is None:
                raise RetriableError(f"record {record.topic}[{record.partition}]@"
                                     f"{record.offset} is not in the batch being written")
            records.append(StreamRecord(topic, consumed.key, consumed.value,
                                        (*consumed.headers, *headers), consumed.timestamp_ms))
        if topic not in self._topics:
            self._backend.ensure_topic(topic)
            self._topics.add(topic)
        self._backend.append(records, [])

    def is_latest_schema(self, record: SinkRecord) -> bool | None:
        """Whether ``record``'s value schema is the latest version of its subject (the
        topic's value subject when it holds the schema, else any that does)."""
        consumed = self._consumed(record)
        if consumed is None or consumed.value is None:
            return None
        try:
            schema_id = schema_id_of(consumed.value)
            subject = self._subject(schema_id, f"{record.topic}-value")
            if subject is None:
                return None
            versions = self._registry.versions(subject)
        except LiberateError as exc:
            log.debug("cannot tell the age of schema of %s: %s", record.topic, exc)
            return None
        return bool(versions) and versions[-1].schema_id == schema_id

    def _subject(self, schema_id: int, preferred: str) -> str | None:
        if schema_id not in self._subjects:
            found = None
            for subject in [preferred, *self._registry.subjects()]:
                if any(v.schema_id == schema_id for v in self._registry.versions(subject)):
                    found = subject
                    break
            self._subjects[schema_id] = found
        return self._subjects[schema_id]

    def _consumed(self, record: SinkRecord) -> ConsumedRecord | None:
        if self._index is None:
            self._index = {(c.topic, c.partition, c.offset): c for c in self._batch}
        return self._index.get((record.topic, record.partition, record.offset))


class SinkTask:
    """Runs one sink until stopped (or, with ``once``, until it has consumed what the sources
    produced: ``sources_done`` is set and the sink has reached the end of its topics).

    The sink's own offsets table is the source of truth: on (re)assignment the consumer starts
    from ``sink.committed_offsets``, or from the beginning of a partition the sink never wrote.
    The group offsets committed to the backend afterwards only serve ``status`` and lag.
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
        self._partial_since: float | None = None
        self._context: SinkContext | None = None
        # Sinks that write some batches from the consumed bytes (the SQL sink on PostgreSQL)
        # offer ``transcode(batch, schema_of)`` and ``write_transcoded(prepared, decode)``.
        transcode = getattr(sink, "transcode", None)
        write_transcoded = getattr(sink, "write_transcoded", None)
        both = callable(transcode) and callable(write_transcoded)
        self._transcode: _Transcode | None = transcode if both else None
        self._write_transcoded: _WriteTranscoded | None = write_transcoded if both else None
        attach = getattr(sink, "attach_context", None)
        if callable(attach):
            self._context = SinkContext(backend, deserializer.registry)
            attach(self._context)

    def run(self) -> None:
        """Thread target: loop with retries; records a fatal error in ``stats.error``."""
        supervise(
            f"sink {self.sink.name}",
            self._run_once,
            stop=self.stop,
            max_retries=self.max_retries,
            stats=self.stats,
        )

    def _run_once(self, backoff: Backoff) -> None:
        self.sink.open()
        config = self.sink.config
        consumer: StreamConsumer | None = None
        writer: _Writer | None = None
        try:
            consumer = self.backend.consumer(
                self.sink.name,
                topics=tuple(config.topics),
                pattern=config.topics_regex,
                on_assign=self._start_positions,
            )
            writer = _Writer(self, read_ahead=bool(getattr(self.sink, "read_ahead", False)))
            while not self.stop.is_set():
                batch = self._poll(consumer)
                if batch:
                    written = writer.submit(batch, self._prepared(batch))
                    if written:
                        self._committed(consumer, written)
                        backoff.reset()  # retries count consecutive failures, not a lifetime's
                    continue
                written = writer.drain()
                if written:
                    self._committed(consumer, written)
                    backoff.reset()
                elif self.once and self.sources_done.is_set() and self._reached_end(consumer):
                    return
            written = writer.drain()  # stopping: finish the write in flight, then commit it
            if written:
                self._committed(consumer, written)
        finally:
            if writer is not None:
                writer.close()
            if consumer is not None:
                consumer.close()
            self.sink.close()

    def _poll(self, consumer: StreamConsumer) -> list[ConsumedRecord]:
        """Up to ``batch_size`` records: what one poll returns, topped up with what is ready
        at once (a backend returns what it has read; a fuller batch shares the sink's cost
        of a transaction among more records)."""
        batch = consumer.poll(self.batch_size, POLL_TIMEOUT_S)
        while batch and len(batch) < self.batch_size:
            more = consumer.poll(self.batch_size - len(batch), 0.0)
            if not more:
                break
            batch += more
        return batch

    def _start_positions(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """Where assigned partitions start: the sink's own next offset, else the beginning.

        Never the group's committed offset: a sink whose target has no offsets for a
        partition (a new target database) has written none of it, whatever the group says.
        """
        stored = self.sink.committed_offsets(partitions)
        return {tp: stored.get(tp, 0) for tp in partitions}

    def _prepared(self, batch: list[ConsumedRecord]) -> list[SinkRecord] | _Transcoded:
        """The batch as the sink writes it: transcoded by the sink when it can (its own form,
        from the consumed bytes), else decoded."""
        if self._transcode is not None:
            prepared = self._transcode(batch, self.deserializer.schema)
            if prepared is not None:
                return _Transcoded(prepared)
        return self._decoded(batch)

    def _write(self, batch: list[ConsumedRecord],
               records: list[SinkRecord] | _Transcoded) -> None:
        """Write one batch (on the writer's thread when reading ahead)."""
        if self._context is not None:
            self._context.begin(batch)
        started = time.perf_counter()
        if isinstance(records, _Transcoded):
            assert self._write_transcoded is not None
            self._write_transcoded(records.batch, self._decoded)
            # The metrics read the topic of each record only, which consumed records have.
            written: Sequence[SinkRecord] = cast(Sequence[SinkRecord], batch)
        else:
            self.sink.write(records)
            written = records
        METRICS.sink_batch(self.sink.name, written, time.perf_counter() - started)

    def _committed(self, consumer: StreamConsumer, batch: list[ConsumedRecord]) -> None:
        """Commit the group offsets past a written batch (for status and lag only)."""
        # The last offset of each partition wins; built without a Python loop per record.
        last = dict(zip(map(_PARTITION, batch), map(_OFFSET, batch), strict=True))
        consumer.commit({TopicPartition(*tp): offset + 1 for tp, offset in last.items()})
        self.stats.add(Counter(map(_TOPIC, batch)))

    def _decoded(self, batch: Sequence[ConsumedRecord]) -> list[SinkRecord]:
        try:
            return self.deserializer.deserialize(batch)
        except RecordError:
            if self._context is None:
                raise
        # One record is undecodable: decode one by one, flagging the ones that fail.
        return [self._decoded_one(record) for record in batch]

    def _decoded_one(self, record: ConsumedRecord) -> SinkRecord:
        try:
            return self.deserializer.deserialize([record])[0]
        except RecordError as exc:
            error = exc
        key, key_schema = None, None
        if record.key is not None:
            keyed = ConsumedRecord(record.topic, record.partition, record.offset, record.key,
                                   None, record.headers, record.timestamp_ms)
            try:
                decoded = self.deserializer.deserialize([keyed])[0]
                key, key_schema = decoded.key, decoded.key_schema
            except RecordError:
                pass
        return SinkRecord(record.topic, record.partition, record.offset, key, None, key_schema,
                          None, record.headers, record.timestamp_ms, {RECORD_ERROR: error})

    def _reached_end(self, consumer: StreamConsumer) -> bool:
        """True when the sink is at the end offset of every assigned partition, and no
        partition with records it has not written is held elsewhere (waited for at most
        ``ASSIGNMENT_WAIT_S``, then ``FatalError``: ``--once`` never ends with records it
        has not written).

        "At" is the larger of the sink's own committed offset and the consumer's position:
        with Kafka transactions the end offset sits past the last commit marker, which only
        the consumer's position moves beyond.
        """
        assigned = consumer.assignment()
        committed = self.sink.committed_offsets(assigned)
        positions = consumer.positions()
        ends = end_offsets(self.backend.topics())
        elsewhere = [tp for tp, end in ends.items()
                     if end > 0 and tp not in assigned and consumes(self.sink.config, tp.topic)]
        stored = self.sink.committed_offsets(elsewhere) if elsewhere else {}
        behind_elsewhere = [tp for tp in elsewhere if stored.get(tp, 0) < ends[tp]]
        if behind_elsewhere:
            # Partitions with records we do not hold, as while a Kafka group waits out the
            # session of a killed member or is part way through a rebalance: wait for them,
            # for a bounded time (another live member of the group may hold them for good).
            now = time.monotonic()
            if self._partial_since is None:
                self._partial_since = now
            if now - self._partial_since < ASSIGNMENT_WAIT_S:
                return False
            # Never "done" with records left unwritten: say which, and fail the run.
            held = ", ".join(f"{tp.topic}[{tp.partition}] ({stored.get(tp, 0)} of {ends[tp]})"
                             for tp in behind_elsewhere[:5])
            raise FatalError(
                f"sink {self.sink.name}: --once cannot finish: {len(behind_elsewhere)}"
                f" partition(s) with records it has not written stayed assigned to another"
                f" member of its consumer group for {ASSIGNMENT_WAIT_S:.0f} s: {held}",
                hint="stop the other process that runs this sink, or wait until the broker"
                " expires a killed member's session (set group.instance.id under"
                " streams.kafka.properties so a restarted sink takes over at once)",
            )
        else:
            self._partial_since = None
        if not assigned:
            return True  # and nothing is behind elsewhere (see above)
        if any(tp not in ends for tp in assigned):
            return False  # the backend did not describe one this time: its end is unknown
        at = {tp: max(committed.get(tp, 0), positions.get(tp, 0)) for tp in assigned}
        return not unread({tp: ends[tp] for tp in assigned}, at)


_Transcode = Callable[[Sequence[ConsumedRecord], Callable[[int], AvroSchema]], object | None]
_WriteTranscoded = Callable[[object, Callable[[Sequence[ConsumedRecord]], list[SinkRecord]]],
                            None]


class _Transcoded:
    """A batch a sink made ready from the consumed bytes (see ``SinkTask._prepared``)."""

    __slots__ = ("batch",)

    def __init__(self, batch: object) -> None:
        self.batch = batch


class _Writer:
    """Runs ``SinkTask._write``: inline, or with ``read_ahead`` on one background thread, so
    the next batch is polled and decoded while the sink writes the current one (its database
    works meanwhile). One write is in flight at most; the consumer stays on the task's thread.

    Sinks opt in with a true ``read_ahead`` attribute: their ``committed_offsets`` may then
    run while a write is in flight (when partitions are reassigned during a poll).
    """

    def __init__(self, task: SinkTask, *, read_ahead: bool) -> None:
        self._task = task
        self._pool = ThreadPoolExecutor(1, f"sink-write:{task.sink.name}") if read_ahead \
            else None
        # A sink whose writing thread mostly waits on its database may ask for a shorter GIL
        # switch interval (``switch_interval_s``): back from a round trip, that thread then
        # waits less for the reading thread to let go of the GIL (Python's default: 5 ms).
        interval = getattr(task.sink, "switch_interval_s", None)
        if read_ahead and isinstance(interval, float) and sys.getswitchinterval() > interval:
            sys.setswitchinterval(interval)  # process-wide, kept
        self._flight: tuple[list[ConsumedRecord], Future[None]] | None = None

    def submit(self, batch: list[ConsumedRecord], records: list[SinkRecord] | _Transcoded
               ) -> list[ConsumedRecord] | None:
        """Write ``batch``; returns the batch whose write finished (this one when inline, the
        one before when reading ahead), or None. Raises what the write raised."""
        if self._pool is None:
            self._task._write(batch, records)
            return batch
        done = self.drain()
        self._flight = (batch, self._pool.submit(self._task._write, batch, records))
        return done

    def drain(self) -> list[ConsumedRecord] | None:
        """Wait for the write in flight; returns its batch (None when there was none)."""
        if self._flight is None:
            return None
        batch, future = self._flight
        self._flight = None
        future.result()
        return batch

    def close(self) -> None:
        """Wait for any write in flight (its error, if any, is already reported or moot)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
