"""``liberate run --once`` never ends "caught up" with records it has not written: when
partitions with such records stay assigned to another member of the sink's consumer group (a
killed member the broker has not expired, or another process running the sink), the sink
waits ``ASSIGNMENT_WAIT_S`` and then fails naming them. The Kafka crash cases once ended
exit 0 there, having written part of their topics."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from liberate.config.models import SchemaRegistrySettings
from liberate.records import SourceRecord
from liberate.runtime import _sink_task
from liberate.runtime._sink_task import SinkTask
from liberate.schema.avro import AvroSchema
from liberate.serde import RecordDeserializer, RecordSerializer
from liberate.streams.kafka import KafkaBackend
from tests.integration.kafka.conftest import unique_settings
from tests.kafka_broker import KafkaBroker
from tests.list_sink import ListSink

KEY = AvroSchema({"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]})


def test_once_fails_naming_partitions_another_group_member_holds(
    kafka_broker: KafkaBroker, schema_registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sink_task, "ASSIGNMENT_WAIT_S", 3.0)
    settings = unique_settings(kafka_broker.bootstrap)
    backend = KafkaBackend(settings, SchemaRegistrySettings(url=schema_registry_url))
    backend.open()
    topic = f"held.{uuid.uuid4().hex[:12]}"
    group = f"sink-{uuid.uuid4().hex[:8]}"
    other_stop = threading.Event()
    holder: threading.Thread | None = None
    try:
        backend.ensure_topic(topic, partitions=2)
        serializer = RecordSerializer(backend.registry())
        backend.append(serializer.serialize([
            SourceRecord(topic, {"id": i}, None, KEY, None, {}, {}) for i in range(40)
        ]), [])
        (info,) = [t for t in backend.topics() if t.name == topic]  # the broker is shared
        assert info.partitions == 2 and all(end > 0 for end in info.end_offsets.values()), info
        # Another live member of the sink's group: with two members each holds a partition.
        other = backend.consumer(group, topics=[topic])

        def hold() -> None:
            while not other_stop.is_set():
                other.poll(10, 0.2)  # reads, never commits, never writes

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        time.sleep(2)
        sink = ListSink(name=group, topic=topic)
        task = SinkTask(sink, backend, RecordDeserializer(backend.registry()), threading.Event(),
                        once=True, sources_done=threading.Event(), batch_size=100,
                        max_retries=0)
        task.sources_done.set()
        runner = threading.Thread(target=task.run, daemon=True)
        runner.start()
        runner.join(120)
        assert not runner.is_alive(), "--once never ended"
        written = {r.partition for r in sink.written}
        if written == {0, 1}:
            pytest.skip("the broker gave the sink both partitions: nothing held elsewhere")
        assert task.stats.error is not None, (
            f"--once ended without error having written only partitions {sorted(written)}"
        )
        assert "stayed assigned to another member" in task.stats.error, task.stats.error
        assert topic in task.stats.error, task.stats.error
    finally:
        other_stop.set()
        if holder is not None:
            holder.join(10)
        backend.close()
