"""The runtime side of the SQL sink's dead letters: ``SinkTask`` and its ``SinkContext`` on a
real embedded stream, with real tiny sinks (no database server)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from liberate.connector import Sink
from liberate.errors import RecordError
from liberate.records import SinkRecord, SourceRecord, StreamRecord, TopicPartition
from liberate.runtime._sink_task import RECORD_ERROR, SinkContext, SinkTask
from liberate.schema.avro import AvroSchema
from liberate.serde import RecordDeserializer, RecordSerializer
from liberate.streams.embedded import EmbeddedBackend
from tests.list_sink import ListSink

KEY = AvroSchema({"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]})
V1 = AvroSchema({"type": "record", "name": "Value", "fields": [{"name": "id", "type": "long"}]})
V2 = AvroSchema({"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"}, {"name": "n", "type": ["null", "int"], "default": None}]})


class ContextSink(ListSink):
    """A ``ListSink`` that takes the runtime's context (and so flagged records)."""

    context: SinkContext | None = None

    def attach_context(self, context: SinkContext) -> None:
        self.context = context


class FlakySink(ContextSink):
    """Fails twice more in a row right after its first batch."""

    def write(self, batch: Sequence[SinkRecord]) -> None:
        super().write(batch)
        if len(self.written) == 2:
            self.failures = 2


def stream(tmp_path: Path, values: list[tuple[AvroSchema, int]]) -> EmbeddedBackend:
    backend = EmbeddedBackend(tmp_path / "streams.db")
    backend.open()
    backend.ensure_topic("t")
    serializer = RecordSerializer(backend.registry())
    backend.append(serializer.serialize([
        SourceRecord("t", {"id": i}, {"id": i} if schema is V1 else {"id": i, "n": i}, KEY,
                     schema, {}, {})
        for schema, i in values
    ]), [])
    return backend


def run(task: SinkTask) -> None:
    sources_done = task.sources_done
    sources_done.set()
    thread = threading.Thread(target=task.run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()


def task_for(sink: Sink, backend: EmbeddedBackend, *, max_retries: int | None = 3) -> SinkTask:
    return SinkTask(sink, backend, RecordDeserializer(backend.registry()), threading.Event(),
                    once=True, sources_done=threading.Event(), batch_size=2,
                    max_retries=max_retries)


def test_retriable_failures_are_retried_and_the_count_restarts_after_a_success(
    tmp_path: Path,
) -> None:
    backend = stream(tmp_path, [(V1, i) for i in range(6)])
    sink = FlakySink(failures=2)
    task = task_for(sink, backend, max_retries=2)  # 2 + 2 failures: the count restarted
    try:
        run(task)
    finally:
        backend.close()
    assert task.stats.error is None
    assert [r.offset for r in sink.written] == list(range(6))


def test_an_undecodable_record_reaches_a_context_sink_flagged_with_its_key(
    tmp_path: Path,
) -> None:
    backend = stream(tmp_path, [(V1, 1)])
    try:
        first = backend.consumer("probe", topics=("t",)).poll(1, 1.0)[0]
        assert first.value is not None
        backend.append([StreamRecord("t", first.key, first.value[:5] + b"\xff")], [])
        sink = ContextSink()
        run(task_for(sink, backend))
        plain = ListSink(name="plain")
        stopped = task_for(plain, backend)
        run(stopped)
    finally:
        backend.close()
    flagged = sink.written[1]
    assert (flagged.key, flagged.value) == ({"id": 1}, None)
    assert isinstance(flagged.extra[RECORD_ERROR], RecordError)
    assert stopped.stats.error is not None and "offset 1" in stopped.stats.error


def test_the_context_sends_the_consumed_bytes_with_headers_and_knows_the_latest_schema(
    tmp_path: Path,
) -> None:
    backend = stream(tmp_path, [(V1, 1), (V2, 2)])
    try:
        sink = ContextSink()
        run(task_for(sink, backend))
        context = sink.context
        assert context is not None
        older, newer = sink.written
        context.begin(backend.consumer("again", topics=("t",)).poll(10, 1.0))
        assert context.is_latest_schema(older) is False
        assert context.is_latest_schema(newer) is True
        raw = context.raw(newer)
        assert raw is not None and raw[1] is not None and raw[1][0] == 0
        context.send("t.dlq", [(newer, (("why", b"because"),))])
        [letter] = backend.consumer("dlq", topics=("t.dlq",)).poll(10, 1.0)
    finally:
        backend.close()
    assert (letter.key, letter.value) == raw
    assert letter.headers == (("why", b"because"),)


def test_a_sink_without_offsets_starts_from_the_beginning_whatever_its_group_committed(
    tmp_path: Path,
) -> None:
    backend = stream(tmp_path, [(V1, i) for i in range(4)])
    try:
        run(task_for(ListSink(name="bench"), backend))
        assert backend.group_offsets("bench") == {TopicPartition("t", 0): 4}
        # The same sink on a new target: its offsets are gone, the group's are not.
        fresh = ListSink(name="bench")
        run(task_for(fresh, backend))
    finally:
        backend.close()
    assert [r.offset for r in fresh.written] == [0, 1, 2, 3]
