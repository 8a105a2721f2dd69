"""What only the Kafka backend does: balanced consumer groups, Java-compatible partitioning,
aborted transactions, fencing, the at-least-once fallback, and lag at the end of a topic."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import Producer

from liberate.config.models import KafkaSettings
from liberate.errors import LiberateError, RetriableError
from liberate.records import ConsumedRecord, StreamRecord, TopicPartition
from liberate.streams._embedded_codec import partition_for_key
from liberate.streams._kafka_offsets import offset_record
from liberate.streams.base import SourceOffset, StreamConsumer
from liberate.streams.kafka import KafkaBackend
from tests.integration.kafka.conftest import unique_settings
from tests.kafka_broker import KafkaBroker

POLL_TIMEOUT_S = 10.0


def drain(
    consumer: StreamConsumer, expected: int, timeout_s: float = POLL_TIMEOUT_S
) -> list[ConsumedRecord]:
    got: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        got += consumer.poll(500, 0.2)
    return got


def read_values(backend: KafkaBackend, topic: str, expected: int) -> list[bytes | None]:
    consumer = backend.consumer(f"reader-{uuid.uuid4().hex[:8]}", topics=[topic])
    try:
        got = drain(consumer, expected)
        got += consumer.poll(100, 0.5)
    finally:
        consumer.close()
    return [r.value for r in got]


def open_transaction(
    settings: KafkaSettings, transactional_id: str, records: list[tuple[str, bytes, bytes]]
) -> Producer:
    """A raw producer of ``transactional_id`` with ``records`` (topic, key, value) sent to the
    broker in a transaction it leaves open."""
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "transactional.id": transactional_id}
    )
    producer.init_transactions(10)
    producer.begin_transaction()
    for topic, key, value in records:
        producer.produce(topic, value, key)
    producer.flush(10)
    return producer


def close_quietly(producer: Producer) -> None:
    """Release a raw producer of a test without waiting (``close()`` would try to abort its
    transaction, and a fenced producer on Tansu waits for that forever)."""
    producer.purge()
    producer.flush(0)


def test_two_consumers_of_one_group_split_the_partitions_and_one_takes_over_when_the_other_leaves(
    backend: KafkaBackend, topic: str
) -> None:
    backend.ensure_topic(topic, partitions=4)
    backend.append([StreamRecord(topic, f"k{i}".encode(), b"v") for i in range(40)], [])
    group = f"split-{uuid.uuid4().hex[:8]}"
    first = backend.consumer(group, topics=[topic])
    second = backend.consumer(group, topics=[topic])
    try:
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while time.monotonic() < deadline:
            for consumer in (first, second):
                records = consumer.poll(100, 0.1)
                consumer.commit(
                    {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
                )
            if first.assignment() and second.assignment():
                break
        split = (set(first.assignment()), set(second.assignment()))
        second.close()
        deadline = time.monotonic() + POLL_TIMEOUT_S
        while len(first.assignment()) < 4 and time.monotonic() < deadline:
            first.poll(100, 0.1)
        taken_over = set(first.assignment())
    finally:
        first.close()
        second.close()

    assert split[0] and split[1] and not split[0] & split[1]
    assert split[0] | split[1] == {TopicPartition(topic, p) for p in range(4)}
    assert taken_over == {TopicPartition(topic, p) for p in range(4)}


def test_keys_land_in_the_partition_java_clients_and_the_embedded_backend_choose(
    backend: KafkaBackend, topic: str
) -> None:
    backend.ensure_topic(topic, partitions=6)
    keys = [f"customer-{i}".encode() for i in range(30)]
    backend.append([StreamRecord(topic, key, b"v") for key in keys], [])

    consumer = backend.consumer(f"reader-{uuid.uuid4().hex[:8]}", topics=[topic])
    try:
        got = drain(consumer, 30)
    finally:
        consumer.close()

    assert len(got) == 30
    assert {(r.key, r.partition) for r in got} == {(key, partition_for_key(key, 6)) for key in keys}


def test_an_append_that_fails_midway_writes_neither_records_nor_offsets(
    backend: KafkaBackend, topic: str
) -> None:
    source = f"src-{uuid.uuid4().hex[:8]}"
    too_large = b"x" * 2_000_000  # over librdkafka's message.max.bytes: fails mid-transaction
    with pytest.raises(LiberateError):
        backend.append(
            [StreamRecord(topic, b"k", b"lost-1"), StreamRecord(topic, b"k", too_large)],
            [SourceOffset(source, {"p": "0"}, {"n": 2})],
        )

    backend.append(
        [StreamRecord(topic, b"k", b"kept")], [SourceOffset(source, {"p": "0"}, {"n": 3})]
    )

    assert read_values(backend, topic, 1) == [b"kept"]
    assert list(backend.source_offsets(source).values()) == [{"n": 3}]


def test_records_of_a_fenced_predecessors_open_transaction_are_never_read(
    backend: KafkaBackend, topic: str, kafka_settings: KafkaSettings
) -> None:
    source = f"src-{uuid.uuid4().hex[:8]}"
    backend.ensure_topic(topic)
    zombie = open_transaction(
        kafka_settings,
        f"{kafka_settings.transactional_id_prefix}-{source}",
        [(topic, b"k", f"zombie-{n}".encode()) for n in range(3)],
    )  # on the broker, in a transaction nobody will commit
    try:
        backend.append(
            [StreamRecord(topic, b"k", b"kept")], [SourceOffset(source, {"p": "0"}, {"n": 1})]
        )
    finally:
        close_quietly(zombie)

    assert read_values(backend, topic, 1) == [b"kept"]


def test_reading_offsets_topics_and_groups_never_fences_a_running_writer(
    backend: KafkaBackend, topic: str, kafka_settings: KafkaSettings
) -> None:
    source = f"src-{uuid.uuid4().hex[:8]}"
    backend.append([StreamRecord(topic, b"k", b"1")], [SourceOffset(source, {"p": "0"}, {"n": 1})])
    observer = KafkaBackend(kafka_settings)
    observer.open()
    try:
        assert observer.guarantee == "exactly-once"
        assert list(observer.source_offsets(source).values()) == [{"n": 1}]
        assert topic in {info.name for info in observer.topics()}
        observer.groups()
    finally:
        observer.close()

    backend.append([StreamRecord(topic, b"k", b"2")], [SourceOffset(source, {"p": "0"}, {"n": 2})])

    assert list(backend.source_offsets(source).values()) == [{"n": 2}]


def test_a_restarted_source_never_writes_from_offsets_an_open_transaction_hid(
    kafka_settings: KafkaSettings, topic: str
) -> None:
    source = f"src-{uuid.uuid4().hex[:8]}"
    partition = {"p": "0"}
    setup = KafkaBackend(kafka_settings)
    setup.open()
    setup.append([StreamRecord(topic, b"k", b"0")], [SourceOffset(source, partition, {"n": 1})])
    setup.close()
    offsets_topic = kafka_settings.offsets_topic
    # A killed predecessor of the source left a transaction open ...
    zombie = open_transaction(
        kafka_settings,
        f"{kafka_settings.transactional_id_prefix}-{source}",
        [(offsets_topic, *offset_record(SourceOffset(source, partition, {"n": 99})))],
    )
    # ... and another process stored a newer offset of it behind that transaction.
    other = open_transaction(
        kafka_settings,
        f"other-{uuid.uuid4()}",
        [(offsets_topic, *offset_record(SourceOffset(source, partition, {"n": 5})))],
    )
    other.commit_transaction(10)

    restarted = KafkaBackend(kafka_settings)
    restarted.open()
    try:
        hidden = restarted.source_offsets(source)
        with pytest.raises(RetriableError, match="changed after it started"):
            restarted.append(
                [StreamRecord(topic, b"k", b"stale")], [SourceOffset(source, partition, {"n": 2})]
            )
        settled = restarted.source_offsets(source)
        restarted.append(
            [StreamRecord(topic, b"k", b"6")], [SourceOffset(source, partition, {"n": 6})]
        )
        final = restarted.source_offsets(source)
        values = read_values(restarted, topic, 2)
    finally:
        restarted.close()
        close_quietly(zombie)
        close_quietly(other)

    assert list(hidden.values()) == [{"n": 1}]
    assert list(settled.values()) == [{"n": 5}]
    assert list(final.values()) == [{"n": 6}]
    assert values == [b"0", b"6"]


def test_without_transactions_the_backend_says_at_least_once_with_a_warning(
    kafka_broker: KafkaBroker, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = unique_settings(kafka_broker.bootstrap, transactional=False)
    backend = KafkaBackend(settings)
    backend.open()
    try:
        with caplog.at_level(logging.WARNING, logger="liberate.kafka"):
            guarantee = backend.guarantee
        source = f"src-{uuid.uuid4().hex[:8]}"
        backend.append(
            [StreamRecord(topic, b"k", b"v")], [SourceOffset(source, {"p": "0"}, {"n": 1})]
        )
        offsets = backend.source_offsets(source)
        values = read_values(backend, topic, 1)
    finally:
        backend.close()

    assert guarantee == "at-least-once"
    assert "AT-LEAST-ONCE" in caplog.text and "transactional is false" in caplog.text
    assert list(offsets.values()) == [{"n": 1}]
    assert values == [b"v"]


def test_a_group_that_read_to_the_end_of_a_transactional_topic_has_no_lag(
    backend: KafkaBackend, topic: str
) -> None:
    for batch in range(3):
        backend.append([StreamRecord(topic, b"k", str(batch).encode())], [])
    group = f"lag-{uuid.uuid4().hex[:8]}"
    consumer = backend.consumer(group, topics=[topic])
    try:
        records = drain(consumer, 3)
        consumer.commit({TopicPartition(topic, 0): records[-1].offset + 1})
        positions = consumer.positions()
    finally:
        consumer.close()

    (info,) = [i for i in backend.topics() if i.name == topic]
    # Commit markers follow each record; the group stands past the last one.
    assert info.end_offsets[0] > records[-1].offset + 1
    assert backend.group_offsets(group) == {TopicPartition(topic, 0): info.end_offsets[0]}
    assert positions == {TopicPartition(topic, 0): info.end_offsets[0]}


def test_an_empty_group_name_is_refused_before_it_reaches_librdkafka(
    backend: KafkaBackend, topic: str
) -> None:
    with pytest.raises(LiberateError, match="non-empty group"):
        backend.consumer("", topics=[topic])


def test_the_offsets_topic_is_compacted_and_not_listed_as_a_stream(
    backend: KafkaBackend, topic: str, kafka_settings: KafkaSettings
) -> None:
    backend.append([StreamRecord(topic, b"k", b"v")], [SourceOffset("s", {"p": "0"}, {"n": 1})])

    names = {info.name for info in backend.topics()}
    described = backend._opened()[0].describe()

    assert topic in names and kafka_settings.offsets_topic not in names
    assert {i.name: i.compacted for i in described}[kafka_settings.offsets_topic] is True
