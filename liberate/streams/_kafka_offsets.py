"""The offsets of sources in a compacted Kafka topic (the KIP-618 idea), read back committed.

Record layout: key = JSON ``[source, partition key]`` (the canonical partition text of
``base.partition_key``), value = the offset as JSON with sorted keys; the last value of a key
wins, which is also what compaction keeps. A source's records and its offset record are
written in one transaction, so reading ``read_committed`` never sees one without the other.

Reading stops at the *last stable offset*: beyond it a transaction is still open (a live
writer between begin and commit, or a killed one the broker has not aborted yet). What the
open transactions hold is not readable yet, so a read tells whether it was complete.

Every read starts from the beginning of the topic. Compaction keeps the topic at about one
record per source partition, and a reader that continued where it stopped would depend on
the broker listing aborted transactions exactly: noida-db 0.2.3 lists ones that ended before
the fetch offset, and librdkafka then skips every later record of that producer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition

from liberate.config.models import KafkaSettings
from liberate.errors import RetriableError
from liberate.records import Primitive, TopicPartition
from liberate.streams._kafka_config import REQUEST_TIMEOUT_S, consumer_config
from liberate.streams._kafka_errors import wrap_kafka_error
from liberate.streams._kafka_topics import LATEST, KafkaTopicAdmin
from liberate.streams.base import SourceOffset

log = logging.getLogger("liberate.kafka")

Offsets = dict[str, dict[str, Mapping[str, Primitive]]]


def offset_record(offset: SourceOffset) -> tuple[bytes, bytes]:
    """The key and value of the record that stores ``offset``."""
    key = json.dumps([offset.source, offset.partition_key], separators=(",", ":"))
    value = json.dumps(dict(offset.offset), sort_keys=True, separators=(",", ":"))
    return key.encode(), value.encode()


class SourceOffsetLog:
    """Reads the offsets topic with one ``read_committed`` consumer, rewound for every read.

    Threading: calls are serialized by a lock.
    """

    def __init__(self, settings: KafkaSettings, admin: KafkaTopicAdmin) -> None:
        self.settings = settings
        self.topic = settings.offsets_topic
        self.admin = admin
        self._consumer: Consumer | None = None
        self._partitions: list[TopicPartition] = []
        self._offsets: Offsets = {}
        self._lock = threading.Lock()

    def ensure_topic(self) -> None:
        """Create the compacted offsets topic unless it exists."""
        self.admin.ensure(self.topic, partitions=1, compacted=True)

    def read(self, source: str) -> tuple[dict[str, Mapping[str, Primitive]], bool]:
        """The committed offsets of ``source`` and whether the read was complete (no open
        transaction beyond what could be read)."""
        with self._lock:
            if not self._rewound():
                return {}, True
            stable = self.admin.offsets(self._partitions, LATEST, committed_only=True)
            high = self.admin.offsets(self._partitions, LATEST)
            if not self._catch_up(stable, time.monotonic() + REQUEST_TIMEOUT_S):
                raise RetriableError(
                    f"Kafka: cannot read the offsets topic {self.topic!r} up to its last stable"
                    " offset",
                    hint=f"check that the brokers at {self.settings.bootstrap_servers} are up",
                )
            complete = all(stable.get(tp, 0) >= high.get(tp, 0) for tp in self._partitions)
            return dict(self._offsets.get(source, {})), complete

    def read_settled(self, source: str, timeout_s: float) -> dict[str, Mapping[str, Primitive]]:
        """The offsets of ``source`` once every transaction open now has ended.

        Waits up to ``timeout_s`` (a killed writer's transaction ends when the broker aborts it
        after ``transaction.timeout.ms``); raises ``RetriableError`` when it did not end.
        """
        with self._lock:
            if not self._rewound():
                return {}
            high = self.admin.offsets(self._partitions, LATEST)
            if not self._catch_up(high, time.monotonic() + timeout_s):
                raise RetriableError(
                    f"Kafka: a transaction on the offsets topic {self.topic!r} stays open",
                    hint="another process writes source offsets and has not committed; if it was"
                    " killed, the broker aborts its transaction after transaction.timeout.ms",
                )
            return dict(self._offsets.get(source, {}))

    def close(self) -> None:
        """Close the reader; idempotent."""
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    # -- internals (callers hold the lock) -------------------------------------------------

    def _rewound(self) -> bool:
        """Point a new reader at the beginning of every partition; False when there is no
        offsets topic yet (no source has stored an offset).

        A new consumer each time: re-assigning the previous one, its ``position()`` could
        still report where the last read ended before the seek to the beginning took effect
        (11 of 30 re-assigns on noida-db), and the read then stopped at once with nothing
        read: ``read_settled`` after ``read`` returned no offsets, and a restarted source
        polled again from the start."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        partitions = self.admin.partitions_of(self.topic)
        if not partitions:
            return False
        group = f"{self.settings.transactional_id_prefix}-offsets-reader"
        try:
            self._consumer = Consumer(consumer_config(self.settings, group, from_beginning=True))
        except Exception as exc:
            raise self._wrap(exc, f"read the offsets topic {self.topic!r}") from exc
        self._partitions = [TopicPartition(self.topic, p) for p in partitions]
        try:
            self._consumer.assign(
                [
                    KafkaTopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)
                    for tp in self._partitions
                ]
            )
        except Exception as exc:
            raise self._wrap(exc, f"read the offsets topic {self.topic!r}") from exc
        self._offsets = {}
        return True

    def _catch_up(self, targets: Mapping[TopicPartition, int], deadline: float) -> bool:
        """Read until every partition's position reaches its target; False at the deadline."""
        consumer = self._consumer
        assert consumer is not None
        while True:
            positions = self._positions(consumer)
            if all(positions.get(tp, 0) >= target for tp, target in targets.items() if target > 0):
                return True
            if time.monotonic() >= deadline:
                return False
            try:
                messages = consumer.consume(10_000, 0.1)
            except Exception as exc:
                raise self._wrap(exc, f"read the offsets topic {self.topic!r}") from exc
            for message in messages:
                error = message.error()
                if error is None:
                    self._apply(message.key(), message.value())
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise self._wrap_error(error)

    def _positions(self, consumer: Consumer) -> dict[TopicPartition, int]:
        try:
            found = consumer.position(
                [KafkaTopicPartition(tp.topic, tp.partition) for tp in self._partitions]
            )
        except Exception as exc:
            raise self._wrap(exc, f"read the offsets topic {self.topic!r}") from exc
        return {TopicPartition(p.topic, p.partition): int(p.offset) for p in found}

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        try:
            source, partition = _decode_key(key)
        except ValueError:
            log.warning("skipping a record of %s that is not a liberate source offset", self.topic)
            return
        partitions = self._offsets.setdefault(source, {})
        if value is None:
            partitions.pop(partition, None)
            return
        try:
            offset = json.loads(value)
        except ValueError:
            log.warning("skipping an offset of source %s that is not JSON", source)
            return
        if isinstance(offset, dict):
            partitions[partition] = offset

    def _wrap(self, exc: BaseException, action: str) -> Exception:
        return wrap_kafka_error(exc, action, self.settings.bootstrap_servers)

    def _wrap_error(self, error: KafkaError) -> Exception:
        return wrap_kafka_error(
            error, f"read the offsets topic {self.topic!r}", self.settings.bootstrap_servers
        )


def _decode_key(key: bytes | None) -> tuple[str, str]:
    if key is None:
        raise ValueError("no key")
    decoded: Any = json.loads(key)
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not all(isinstance(part, str) for part in decoded)
    ):
        raise ValueError("not [source, partition]")
    return decoded[0], decoded[1]


def sources_of(offsets: Sequence[SourceOffset]) -> list[str]:
    """The distinct sources named in ``offsets``, sorted."""
    return sorted({o.source for o in offsets})
