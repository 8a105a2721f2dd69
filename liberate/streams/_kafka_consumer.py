"""The consumer of the Kafka backend: a consumer-group member that reads committed records.

Partitions are balanced between the members of a group by the broker (librdkafka's default
eager assignor). On every assignment the consumer starts each partition where ``on_assign``
says (a sink's own offsets table, the source of truth), else at the group's committed offset,
else at the beginning or the end. Group offsets are committed only when asked.

Where the consumer's position passes over more than one transaction marker without returning a
record, :class:`~liberate.streams._kafka_aborts.SkipCheck` makes sure it skipped no committed
record (a broker defect; see that module): on a correct broker this costs one probe per
process, at the first such gap.

Topics are matched here, with Python's ``re.fullmatch`` like the embedded backend and
``liberate status``, and the consumer subscribes to the list of existing topics that match
(librdkafka's own regex dialect lacks ``\\d``, ``\\w`` and friends). The list is refreshed
every ``REFRESH_S`` while topics may still appear (a pattern, or named topics that do not
exist yet): a source may create them after the sink started.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from liberate.config.models import KafkaSettings
from liberate.errors import FatalError, LiberateError
from liberate.records import ConsumedRecord, Headers, TopicPartition
from liberate.streams._kafka_aborts import SkipCheck
from liberate.streams._kafka_config import REQUEST_TIMEOUT_S, consumer_config
from liberate.streams._kafka_errors import error_code, wrap_kafka_error
from liberate.streams._kafka_topics import LATEST, KafkaTopicAdmin
from liberate.streams.base import AssignCallback, StreamConsumer

log = logging.getLogger("liberate.kafka")

REFRESH_S = 2.0
# librdkafka reports an unreachable broker as an event on every poll: say it once a while.
_WARN_EVERY_S = 30.0

_UNKNOWN_TOPIC = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
# Committing group offsets is informational (sinks keep their own): these only mean "later".
_COMMIT_LATER = frozenset(
    {
        KafkaError._NO_OFFSET,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
    }
)


class KafkaConsumer(StreamConsumer):
    """Reads ``topics`` (or every topic whose whole name matches ``pattern``) for ``group``.

    Where a partition starts, first rule that applies: the offset ``on_assign`` returns; the
    position this consumer had reached (partitions move away and back when the subscription
    grows) or the group's committed offset, whichever is further; with ``from_beginning``
    False, the end the partition had when the consumer was created; the beginning (or, for a
    topic created later, its end).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        admin: KafkaTopicAdmin,
        group: str,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assign: AssignCallback | None = None,
        from_beginning: bool = True,
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        if not group:
            # confluent-kafka aborts the whole process on an empty group.id.
            raise FatalError(
                "a Kafka consumer needs a non-empty group name",
                hint="name the sink (its name is its consumer group)",
            )
        if not topics and pattern is None:
            raise FatalError(
                f"consumer of group {group!r} names no topics",
                hint="give topics or a topics pattern",
            )
        try:
            self._pattern = re.compile(pattern) if pattern is not None else None
        except re.error as exc:
            raise FatalError(
                f"invalid topics pattern {pattern!r}: {exc}",
                hint="topics_regex is a Python regular expression matched against whole names",
            ) from exc
        self.group = group
        self.settings = settings
        self._admin = admin
        self._exclude = exclude
        self._topics = frozenset(topics)
        self._on_assign = on_assign
        self._from_beginning = from_beginning
        self._subscribed: tuple[str, ...] = ()
        self._positions: dict[TopicPartition, int] = {}
        self._start_ends: dict[TopicPartition, int] = {}
        self._next_refresh = 0.0
        self._returned: dict[tuple[str, int], int] = {}
        # The next offset each partition should return (its start, then the last record + 1).
        self._next: dict[tuple[str, int], int] = {}
        self._skips = SkipCheck(settings, admin, group)
        self._warned_at: dict[int, float] = {}
        self._lock = threading.Lock()
        # Incremental (cooperative) rebalancing only when the run file asks for it; the
        # default eager protocol is what every broker here handles.
        strategy = str(settings.properties.get("partition.assignment.strategy", ""))
        self._cooperative = "cooperative" in strategy or (
            settings.properties.get("group.protocol") == "consumer"
        )
        try:
            self._consumer: Consumer | None = Consumer(
                consumer_config(settings, group, from_beginning=from_beginning)
            )
        except Exception as exc:
            raise self._wrap(exc, f"create a consumer of group {group!r}") from exc
        if not from_beginning:
            # "Only new records" means new from now, not from whenever the group is joined.
            existing = self._admin.matching(self._wants)
            partitions = [TopicPartition(t, p) for t in existing for p in admin.partitions_of(t)]
            self._start_ends = admin.offsets(partitions, LATEST)

    # -- StreamConsumer ----------------------------------------------------------------------

    def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        consumer = self._open()
        while True:
            self._refresh_subscription(consumer)
            remaining = deadline - time.monotonic()
            if not self._subscribed:
                if remaining <= 0:
                    return []
                time.sleep(min(remaining, 0.1))
                continue
            try:
                messages = consumer.consume(max_records, 0)
                if not messages and remaining > 0:
                    first = consumer.poll(min(remaining, self._wait_limit()))
                    if first is not None:
                        messages = [first]
                        if max_records > 1:
                            messages += consumer.consume(max_records - 1, 0)
            except LiberateError:
                raise  # from our own on_assign callback (a sink reading its offsets)
            except Exception as exc:
                raise self._wrap(exc, f"read records for group {self.group!r}") from exc
            records = self._records(messages)
            if records or time.monotonic() >= deadline:
                return records

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        consumer = self._open()
        parts = self._commit_positions(consumer, offsets)
        try:
            consumer.commit(offsets=parts, asynchronous=False)
        except Exception as exc:
            err = wrap_kafka_error(exc, f"commit offsets of group {self.group!r}", self._servers)
            if error_code(exc) in _COMMIT_LATER or not isinstance(err, FatalError):
                log.warning("group %s: %s (the next commit catches up)", self.group, err.message)
                return
            raise err from exc

    def assignment(self) -> list[TopicPartition]:
        consumer = self._open()
        try:
            assigned = consumer.assignment()
        except Exception as exc:
            raise self._wrap(exc, f"read the assignment of group {self.group!r}") from exc
        return sorted(
            (TopicPartition(p.topic, p.partition) for p in assigned),
            key=lambda tp: (tp.topic, tp.partition),
        )

    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each assigned partition, past transaction markers
        (partitions not fetched yet are left out)."""
        consumer = self._open()
        try:
            found = consumer.position(consumer.assignment())
        except Exception as exc:
            raise self._wrap(exc, f"read the positions of group {self.group!r}") from exc
        positions = {
            TopicPartition(p.topic, p.partition): int(p.offset) for p in found if p.offset >= 0
        }
        for tp, position in positions.items():
            expected = self._next.get((tp.topic, tp.partition))
            if expected is not None and position > expected + 1:
                self._skips.check(tp, expected, position)
                self._next[(tp.topic, tp.partition)] = position
        return positions

    def close(self) -> None:
        with self._lock:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # leaving the group is best effort at this point
                log.debug("closing the consumer of group %s: %s", self.group, exc)

    # -- subscription and rebalancing --------------------------------------------------------

    def _wants(self, topic: str) -> bool:
        if topic in self._exclude:
            return False
        if topic in self._topics:
            return True
        return self._pattern is not None and self._pattern.fullmatch(topic) is not None

    def _settled(self) -> bool:
        """True when no wanted topic can still appear (every named topic exists, no pattern)."""
        return self._pattern is None and set(self._subscribed) == self._topics

    def _wait_limit(self) -> float:
        return float("inf") if self._settled() else REFRESH_S

    def _refresh_subscription(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if self._settled() or now < self._next_refresh:
            return
        self._next_refresh = now + REFRESH_S
        found = tuple(self._admin.matching(self._wants))
        if found == self._subscribed:
            return
        try:
            consumer.subscribe(
                list(found),
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._revoked,
            )
        except Exception as exc:
            raise self._wrap(exc, f"subscribe group {self.group!r} to {list(found)}") from exc
        self._subscribed = found

    def _assigned(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = [TopicPartition(p.topic, p.partition) for p in partitions]
        chosen: Mapping[TopicPartition, int] = {}
        if self._on_assign is not None and tps:
            chosen = self._on_assign(tps)
        undecided = [tp for tp in tps if tp not in chosen]
        committed: dict[TopicPartition, int] = {}
        if undecided and (self._positions or self._start_ends):
            committed = self._committed(consumer, undecided)
        for p, tp in zip(partitions, tps, strict=True):
            start = chosen.get(tp)
            if start is None:
                start = self._start_of(tp, committed)
            if start is not None:
                p.offset = max(0, int(start))
                self._next[(p.topic, p.partition)] = p.offset
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _start_of(self, tp: TopicPartition, committed: Mapping[TopicPartition, int]) -> int | None:
        known = [o for o in (self._positions.get(tp), committed.get(tp)) if o is not None]
        if known:
            return max(known)
        if tp in self._start_ends:
            return self._start_ends[tp]
        return None  # librdkafka's choice: the committed offset, else auto.offset.reset

    def _committed(
        self, consumer: Consumer, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int]:
        wanted = [KafkaTopicPartition(tp.topic, tp.partition) for tp in partitions]
        found = consumer.committed(wanted, timeout=REQUEST_TIMEOUT_S)
        return {TopicPartition(p.topic, p.partition): int(p.offset) for p in found if p.offset >= 0}

    def _revoked(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        try:
            for p in consumer.position(partitions):
                if p.offset >= 0:
                    self._positions[TopicPartition(p.topic, p.partition)] = int(p.offset)
        except Exception as exc:  # positions are an optimization; the group's offsets remain
            log.debug("group %s: positions of revoked partitions: %s", self.group, exc)
        for p in partitions:
            self._returned.pop((p.topic, p.partition), None)
            self._next.pop((p.topic, p.partition), None)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    # -- records and errors ------------------------------------------------------------------

    def _records(self, messages: list[Message]) -> list[ConsumedRecord]:
        records: list[ConsumedRecord] = []
        append = records.append
        returned = self._returned
        expected = self._next
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(error)
                continue
            # A message without an error always has its topic, partition and offset.
            topic: Any = message.topic()
            partition: Any = message.partition()
            offset: Any = message.offset()
            key = (topic, partition)
            if offset > expected.get(key, offset) + 1:
                # Passed over more than a transaction marker: aborted records, or a broker
                # defect that skips committed ones (raises then, before anything is returned).
                self._skips.check(TopicPartition(topic, partition), expected[key], offset)
            expected[key] = offset + 1
            kind, timestamp = message.timestamp()
            headers: Any = message.headers()
            append(
                ConsumedRecord(
                    topic,
                    partition,
                    offset,
                    message.key(),
                    message.value(),
                    _headers(headers) if headers else (),
                    None if kind == TIMESTAMP_NOT_AVAILABLE else timestamp,
                )
            )
            returned[key] = offset
        return records

    def _on_error(self, error: KafkaError) -> None:
        code = int(error.code())
        if code == KafkaError._PARTITION_EOF:
            return
        if code in _UNKNOWN_TOPIC:
            log.debug("group %s: %s", self.group, error.str())
            return
        err = wrap_kafka_error(error, f"read records for group {self.group!r}", self._servers)
        if error.fatal() or isinstance(err, FatalError):
            raise err
        # librdkafka reconnects by itself; polling on is how it recovers.
        now = time.monotonic()
        if now - self._warned_at.get(code, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._warned_at[code] = now
            log.warning("group %s: %s", self.group, err.message)

    def _commit_positions(
        self, consumer: Consumer, offsets: Mapping[TopicPartition, int]
    ) -> list[KafkaTopicPartition]:
        wanted = [KafkaTopicPartition(tp.topic, tp.partition) for tp in offsets]
        try:
            positions = {(p.topic, p.partition): int(p.offset) for p in consumer.position(wanted)}
        except Exception:
            positions = {}
        parts: list[KafkaTopicPartition] = []
        for tp, offset in offsets.items():
            at = int(offset)
            last = self._returned.get((tp.topic, tp.partition))
            position = positions.get((tp.topic, tp.partition), -1)
            # Between the last record returned and the position there are only transaction
            # markers (or aborted records): committing the position keeps the lag at 0.
            if last is not None and at == last + 1 and position > at:
                at = position
            parts.append(KafkaTopicPartition(tp.topic, tp.partition, at))
        return parts

    # -- helpers -----------------------------------------------------------------------------

    @property
    def _servers(self) -> str:
        return self.settings.bootstrap_servers

    def _open(self) -> Consumer:
        consumer = self._consumer
        if consumer is None:
            raise FatalError(
                f"consumer of group {self.group!r} is closed",
                hint="create a new consumer (a bug in the caller)",
            )
        return consumer

    def _wrap(self, exc: BaseException, action: str) -> LiberateError:
        return wrap_kafka_error(exc, action, self._servers)


def _headers(headers: list[tuple[str, bytes | None]]) -> Headers:
    return tuple((name, b"" if value is None else value) for name, value in headers)
