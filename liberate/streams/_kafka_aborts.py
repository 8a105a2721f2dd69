"""Checks that a ``read_committed`` consumer skipped only aborted records.

A ``read_committed`` consumer (librdkafka) passes over the batches the broker lists as
aborted: each fetch response lists the aborted transactions of its range, and librdkafka
skips a producer's batches from the first listed offset until that producer's abort marker.
A broker must list only the aborted transactions that *overlap* the fetched range (Apache
Kafka: last offset >= fetch offset). noida-db 0.2.3 also lists the ones that ended before
the fetch offset; a consumer that starts (or fetches again) after such an abort then skips
that producer's later *committed* batches until its next abort marker, and its position
moves past them as if they were aborted. A sink would write the records after them and
store its offsets past them: records lost without a word.

So when a consumer's position passes over more than one transaction marker without returning
records, :class:`SkipCheck` looks closer. First, once per cluster and process, it probes the
broker (``lists_ended_aborts``: commit, abort, commit one record each into ``PROBE_TOPIC``,
then read committed from after the abort): on a broker that lists aborts correctly, what
librdkafka passed over was aborted, and nothing more is done. On a broker that lists ended
aborts, it reads the range with ``read_uncommitted`` (no records there: markers only, or
records removed by compaction), then reads the partition committed from its beginning (once
per partition and range; noida-db answers a fetch with everything it has, so that one response
lists every aborted transaction with its abort marker in range): committed records there that
the consumer passed over were skipped, and the consumer raises ``FatalError`` naming them
rather than move past them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from bisect import bisect_left

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from liberate.config.models import KafkaSettings
from liberate.errors import FatalError, LiberateError
from liberate.records import TopicPartition
from liberate.streams._kafka_config import REQUEST_TIMEOUT_S, client_config, producer_config
from liberate.streams._kafka_errors import wrap_kafka_error
from liberate.streams._kafka_topics import KafkaTopicAdmin

log = logging.getLogger("liberate.kafka")

#: where the probe writes (hidden like Kafka's internal topics: liberate lists no ``__`` topic)
PROBE_TOPIC = "__liberate-abort-probe"
#: longest a read of a skipped range or of the probe may take
READ_TIMEOUT_S = 60.0

# Per cluster (bootstrap servers) and process: True when the broker lists ended aborts.
_PROBED: dict[str, bool] = {}
_PROBE_LOCK = threading.Lock()


class SkipCheck:
    """Raises ``FatalError`` when a consumer may have skipped committed records (see the
    module doc); ``check`` costs nothing when the range holds markers only."""

    def __init__(self, settings: KafkaSettings, admin: KafkaTopicAdmin, group: str) -> None:
        self.settings = settings
        self.admin = admin
        self.group = group
        # Per partition: the committed offsets read from the beginning, up to where.
        self._committed: dict[TopicPartition, tuple[int, list[int]]] = {}

    def check(self, tp: TopicPartition, start: int, end: int) -> None:
        """The consumer of ``group`` passed over ``[start, end)`` of ``tp`` returning nothing."""
        if end - start < 2 or not lists_ended_aborts(self.settings, self.admin):
            return
        if not _offsets(self.settings, tp, start, end, committed=False, group=self.group):
            return
        read = self._committed.get(tp)
        if read is None or read[0] < end:
            # Once per partition (again only when the range goes past what was read).
            upto = max(end, self.admin.offsets([tp], "latest").get(tp, end))
            read = (upto, _offsets(self.settings, tp, 0, upto, committed=True,
                                   group=self.group))
            self._committed[tp] = read
        offsets = read[1]
        skipped = offsets[bisect_left(offsets, start):bisect_left(offsets, end)]
        if not skipped:
            log.debug("group %s: aborted records in %s[%d] %d..%d", self.group, tp.topic,
                      tp.partition, start, end - 1)
            return
        raise FatalError(
            f"group {self.group!r} skipped {len(skipped)} committed record(s) of {tp.topic}"
            f"[{tp.partition}] at offsets {skipped[0]}..{skipped[-1]}: the broker at"
            f" {self.settings.bootstrap_servers} lists aborted transactions that ended before"
            " the fetch offset (noida-db 0.2.3 does), and librdkafka's read_committed consumer"
            " passes over a producer's committed records after them; stopping rather than"
            " moving past them",
            hint="use a broker that lists only the aborted transactions overlapping a fetch"
            " (Apache Kafka, Redpanda); see docs/guarantees.md, the crash suite",
        )


def _offsets(
    settings: KafkaSettings, tp: TopicPartition, start: int, end: int, *, committed: bool,
    group: str,
) -> list[int]:
    """Offsets of the records in ``[start, end)`` of ``tp``: committed ones, or every record
    (aborted too) but the transaction markers."""
    config = client_config(settings)
    config.update({
        "group.id": f"liberate-skip-check-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",  # 0 before the log start: from the log start
        "isolation.level": "read_committed" if committed else "read_uncommitted",
    })
    config.pop("group.instance.id", None)
    action = f"check what group {group!r} passed over in {tp.topic}[{tp.partition}]"
    found: list[int] = []
    consumer = _consumer(config, settings, action)
    try:
        consumer.assign([KafkaTopicPartition(tp.topic, tp.partition, start)])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            messages = consumer.consume(10_000, 0.5)
            for message in messages:
                error = message.error()
                if error is not None:
                    if int(error.code()) == KafkaError._PARTITION_EOF:
                        return found
                    raise wrap_kafka_error(error, action, settings.bootstrap_servers)
                offset = message.offset()
                if offset is None or offset >= end:
                    return found
                found.append(offset)
        raise FatalError(
            f"could not {action} ({start}..{end - 1}) within {READ_TIMEOUT_S:.0f} s",
            hint="check the broker; the run stops rather than move past records unchecked",
        )
    finally:
        consumer.close()


def lists_ended_aborts(settings: KafkaSettings, admin: KafkaTopicAdmin) -> bool:
    """Whether the broker lists aborted transactions that ended before the fetch offset
    (probed once per cluster and process; True when the probe cannot run)."""
    key = settings.bootstrap_servers
    with _PROBE_LOCK:
        if key not in _PROBED:
            try:
                _PROBED[key] = _probe(settings, admin)
            except LiberateError as exc:
                # Not allowed to create the probe's topic or transactional id, or no
                # transactions: check every such range by reading it (read-only) instead.
                log.warning("cannot probe how the broker at %s lists aborted transactions"
                            " (%s): checking what consumers pass over by reading it", key,
                            exc.message)
                _PROBED[key] = True
                return True
            if _PROBED[key]:
                log.warning("the broker at %s lists aborted transactions that ended before"
                            " the fetch offset: read_committed consumers skip committed"
                            " records after an abort", key)
        return _PROBED[key]


def _probe(settings: KafkaSettings, admin: KafkaTopicAdmin) -> bool:
    """Commit, abort, commit one record each; read committed from after the abort."""
    admin.ensure(PROBE_TOPIC, partitions=1, compacted=False)
    config = producer_config(settings, f"{settings.transactional_id_prefix}-abort-probe")
    offsets: dict[bytes, int] = {}

    def delivered(err: KafkaError | None, message: object) -> None:
        if err is None:
            offsets[message.value()] = message.offset()  # type: ignore[attr-defined]

    config["on_delivery"] = delivered
    try:
        producer = Producer(config)
        producer.init_transactions(REQUEST_TIMEOUT_S)
        for value, commit in ((b"committed", True), (b"aborted", False), (b"after", True)):
            producer.begin_transaction()
            producer.produce(PROBE_TOPIC, value=value, partition=0)
            producer.flush(REQUEST_TIMEOUT_S)
            if commit:
                producer.commit_transaction(REQUEST_TIMEOUT_S)
            else:
                producer.abort_transaction(REQUEST_TIMEOUT_S)
        producer.flush(REQUEST_TIMEOUT_S)
    except LiberateError:
        raise
    except Exception as exc:
        raise wrap_kafka_error(exc, "probe how the broker lists aborted transactions",
                               settings.bootstrap_servers) from exc
    if b"after" not in offsets or b"aborted" not in offsets:
        raise FatalError(
            "probe of the broker's aborted transactions: no delivery report",
            hint="check the broker",
        )
    config = client_config(settings)
    config.update({
        "group.id": f"liberate-abort-probe-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
    })
    config.pop("group.instance.id", None)
    consumer = _consumer(config, settings, f"read {PROBE_TOPIC}")
    try:
        # From the committed record right after the abort marker: a correct broker returns it.
        consumer.assign([KafkaTopicPartition(PROBE_TOPIC, 0, offsets[b"after"])])
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return message.value() != b"after"
            if int(error.code()) == KafkaError._PARTITION_EOF:
                return True  # passed over the committed record
        return True  # nothing within the timeout: assume the worst
    finally:
        consumer.close()


def _consumer(config: dict[str, object], settings: KafkaSettings, action: str) -> Consumer:
    try:
        return Consumer(config)
    except Exception as exc:
        raise wrap_kafka_error(exc, action, settings.bootstrap_servers) from exc
