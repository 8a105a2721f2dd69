"""What the Kafka crash cases found on the test broker, pinned small: a consumer that resumes
after a killed source's aborted transaction must read the source's later committed records, or
stop with an error naming them; never pass over them in silence.

noida-db 0.2.3 lists aborted transactions that ended before the fetch offset, and librdkafka
then skips the producer's later committed batches (see liberate/streams/_kafka_aborts.py and
docs/guarantees.md); a correct broker (Apache Kafka) lists only overlapping ones.
"""

from __future__ import annotations

import time
import uuid

import pytest

from liberate.errors import FatalError
from liberate.records import ConsumedRecord, StreamRecord, TopicPartition
from liberate.streams.base import SourceOffset
from liberate.streams.kafka import KafkaBackend
from tests.integration.kafka.conftest import unique_settings
from tests.integration.kafka.test_kafka_backend import close_quietly, open_transaction
from tests.kafka_broker import KafkaBroker


def _read(backend: KafkaBackend, topic: str, start: int) -> list[ConsumedRecord]:
    """Committed records of ``topic`` from ``start`` (as a sink resumes from its offsets),
    until the consumer's position reaches the end."""
    tp = TopicPartition(topic, 0)
    consumer = backend.consumer(f"resume-{uuid.uuid4().hex[:8]}", topics=[topic],
                                on_assign=lambda parts: dict.fromkeys(parts, start))
    (info,) = [t for t in backend.topics() if t.name == topic]  # the broker is shared
    end = info.end_offsets[0]
    got: list[ConsumedRecord] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got += consumer.poll(100, 0.2)
            if consumer.positions().get(tp, -1) >= end:
                return got
        raise AssertionError(f"never reached the end {end}: read {[r.offset for r in got]}")
    finally:
        consumer.close()


def test_a_consumer_resuming_after_an_aborted_transaction_reads_or_names_what_follows(
    kafka_broker: KafkaBroker,
) -> None:
    settings = unique_settings(kafka_broker.bootstrap)
    topic = f"crash.{uuid.uuid4().hex[:12]}"
    source = f"src-{uuid.uuid4().hex[:8]}"
    first_run = KafkaBackend(settings)
    first_run.open()
    try:
        first_run.append([StreamRecord(topic, b"k", b"first")],
                         [SourceOffset(source, {"p": "0"}, {"n": 1})])
    finally:
        first_run.close()
    # A killed run's open transaction, aborted when the restarted source fences it.
    zombie = open_transaction(settings, f"{settings.transactional_id_prefix}-{source}",
                              [(topic, b"k", b"zombie")])
    backend = KafkaBackend(settings)
    backend.open()
    try:
        try:
            backend.append([StreamRecord(topic, b"k", b"second")],
                           [SourceOffset(source, {"p": "0"}, {"n": 2})])
        finally:
            close_quietly(zombie)
        backend.append([StreamRecord(topic, b"k", b"third")],
                       [SourceOffset(source, {"p": "0"}, {"n": 3})])

        everything = _read(backend, topic, 0)
        assert [r.value for r in everything] == [b"first", b"second", b"third"]
        second = everything[1].offset
        try:
            resumed = _read(backend, topic, second)
        except FatalError as exc:  # a broker that lists ended aborts: named, not passed over
            assert f"at offsets {second}.." in exc.message, exc.message
            assert "lists aborted transactions that ended before the fetch offset" in exc.message
            pytest.xfail(f"the broker skips committed records after an abort: {exc.message}")
        assert [r.value for r in resumed] == [b"second", b"third"]
    finally:
        backend.close()
