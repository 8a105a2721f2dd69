"""The Kafka stream backend: topics on a Kafka cluster, offsets of sources in a compacted topic.

Guarantees (DESIGN §2, §5):

- *Exactly-once on the source side* with transactions: each source has a transactional
  producer (``<transactional_id_prefix>-<source>``) that writes a batch of records and the
  source's offset records in one transaction, so a reader that reads committed records sees
  both or neither. A restarted source fences its predecessor (same transactional id), which
  aborts whatever that one left open.
- *At-least-once* where the broker cannot do transactions or the run file says
  ``transactional: false``: idempotent producers, records flushed before their offsets. The
  run says so with a warning.
- Sinks read ``read_committed`` and keep their own offsets in the target database.

A restarting source reads its offsets up to the *last stable offset*. If a transaction was
still open then (its own predecessor's, or another process's), the offsets it got are checked
again after its producer fenced the predecessor and every open transaction ended; if they
changed, the append raises ``RetriableError`` and the runtime restarts the source from the
settled offsets. Nothing is written from stale offsets.

Read-only uses (``liberate status``, ``topics``, ``tail``) never create a producer, so they
never fence a running source.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from liberate.config.models import KafkaSettings, SchemaRegistrySettings
from liberate.errors import FatalError, RetriableError
from liberate.records import Primitive, StreamRecord, TopicPartition
from liberate.streams._kafka_consumer import KafkaConsumer
from liberate.streams._kafka_offsets import SourceOffsetLog, offset_record, sources_of
from liberate.streams._kafka_topics import KafkaTopicAdmin
from liberate.streams._kafka_writer import KafkaWriter, TransactionsUnsupported
from liberate.streams.base import (
    AssignCallback,
    Guarantee,
    SourceOffset,
    StreamBackend,
    TopicInfo,
)
from liberate.streams.embedded import validate_topic_name

if TYPE_CHECKING:
    from liberate.schema.confluent import ConfluentRegistry

log = logging.getLogger("liberate.kafka")

# librdkafka's default transaction.timeout.ms: how long a killed writer's transaction may
# stay open before the broker aborts it.
_DEFAULT_TRANSACTION_TIMEOUT_S = 60.0
_OPEN_TIMEOUT_S = 10.0


class KafkaBackend(StreamBackend):
    """Streams on the Kafka cluster of ``kafka``; schemas in the registry of
    ``schema_registry`` (required by ``registry()`` only)."""

    def __init__(
        self, kafka: KafkaSettings, schema_registry: SchemaRegistrySettings | None = None
    ) -> None:
        self.settings = kafka
        self.schema_registry = schema_registry
        self._admin: KafkaTopicAdmin | None = None
        self._offsets: SourceOffsetLog | None = None
        self._transactional = kafka.transactional
        self._guarantee: Guarantee | None = None
        self._writers: dict[str | None, tuple[KafkaWriter, threading.Lock]] = {}
        self._unverified: dict[str, dict[str, Mapping[str, Primitive]]] = {}
        self._consumers: weakref.WeakSet[KafkaConsumer] = weakref.WeakSet()
        self._registry: ConfluentRegistry | None = None
        self._instance = uuid.uuid4().hex[:12]
        self._lock = threading.RLock()

    # -- the guarantee, found out once -------------------------------------------------------

    @property
    def guarantee(self) -> Guarantee:
        """``exactly-once`` when transactions work, else ``at-least-once`` (with a warning).

        Found out on first use by starting a transactional producer of its own id (which
        fences nothing but another such probe).
        """
        if self._guarantee is None:
            self._guarantee = self._probe_transactions()
        return self._guarantee

    @guarantee.setter
    def guarantee(self, value: Guarantee) -> None:
        self._guarantee = value

    def _probe_transactions(self) -> Guarantee:
        if not self._transactional:
            self._warn_at_least_once("streams.kafka.transactional is false")
            return "at-least-once"
        probe = KafkaWriter(
            self.settings, f"{self.settings.transactional_id_prefix}-probe", self._offsets_topic
        )
        try:
            probe.start()
        except TransactionsUnsupported as exc:
            self._fall_back(exc.reason)
            return "at-least-once"
        finally:
            probe.close()
        return "exactly-once"

    def _fall_back(self, reason: str) -> None:
        with self._lock:
            if self._transactional:
                self._transactional = False
                self._warn_at_least_once(f"the broker cannot do transactions: {reason}")
            self._guarantee = "at-least-once"

    def _warn_at_least_once(self, why: str) -> None:
        log.warning(
            "Kafka backend at %s runs AT-LEAST-ONCE, not exactly-once, because %s: after a"
            " crash, records written since the last stored source offset are written again",
            self.settings.bootstrap_servers,
            why,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._admin is not None:
                return
            admin = KafkaTopicAdmin(self.settings)
            try:
                # Reaches the cluster, or says why not (sooner than a request would time out).
                admin.partitions_of(self._offsets_topic, timeout_s=_OPEN_TIMEOUT_S)
            except RetriableError as exc:
                raise FatalError(
                    f"cannot reach the Kafka cluster at {self.settings.bootstrap_servers}:"
                    f" {exc.message}",
                    hint="start the brokers or fix streams.kafka.bootstrap_servers (and the"
                    " security settings under streams.kafka.properties)",
                ) from exc
            self._admin = admin
            self._offsets = SourceOffsetLog(self.settings, admin)

    def close(self) -> None:
        with self._lock:
            for consumer in list(self._consumers):
                consumer.close()
            writers = [writer for writer, _ in self._writers.values()]
            self._writers.clear()
            offsets, self._offsets = self._offsets, None
            registry, self._registry = self._registry, None
            self._admin = None
        for writer in writers:
            writer.close()
        if offsets is not None:
            offsets.close()
        if registry is not None:
            registry.close()

    @property
    def _offsets_topic(self) -> str:
        return self.settings.offsets_topic

    def _opened(self) -> tuple[KafkaTopicAdmin, SourceOffsetLog]:
        admin, offsets = self._admin, self._offsets
        if admin is None or offsets is None:
            raise FatalError(
                f"the Kafka backend at {self.settings.bootstrap_servers} is not open",
                hint="call open() before using the backend (a bug in the caller)",
            )
        return admin, offsets

    # -- writes ------------------------------------------------------------------------------

    def ensure_topic(self, topic: str, *, compacted: bool = False, partitions: int = 1) -> None:
        """Create ``topic`` unless it exists, with at least the configured partitions."""
        admin, _ = self._opened()
        validate_topic_name(topic)
        if partitions < 1:
            raise FatalError(
                f"topic {topic!r} needs at least one partition, not {partitions}",
                hint="set partitions to 1 or more",
            )
        admin.ensure(
            topic, partitions=max(partitions, self.settings.partitions), compacted=compacted
        )

    def append(self, records: Sequence[StreamRecord], offsets: Sequence[SourceOffset]) -> None:
        if not records and not offsets:
            return
        _, offset_log = self._opened()
        # Everything that can be refused is refused before anything is written.
        for topic in {r.topic for r in records}:
            self.ensure_topic(topic)
        if offsets:
            offset_log.ensure_topic()
        self._write(records, [offset_record(o) for o in offsets], sources_of(offsets))

    def _write(
        self,
        records: Sequence[StreamRecord],
        offsets: Sequence[tuple[bytes, bytes | None]],
        sources: Sequence[str],
    ) -> None:
        _, offset_log = self._opened()
        while True:
            writer, lock = self._writer(sources)
            with lock:
                try:
                    writer.start()
                except TransactionsUnsupported as exc:
                    # From now on every writer is idempotent; take that one.
                    self._fall_back(exc.reason)
                    self._forget_writer(writer)
                    continue
                if writer.transactional:
                    self._verify_offsets(offset_log, sources)
                writer.write(records, offsets)
                return

    def reset_source_offsets(
        self, source: str, offsets: Mapping[str, Mapping[str, Primitive]] | None
    ) -> None:
        _, offset_log = self._opened()
        offset_log.ensure_topic()
        wanted = [SourceOffset(source, json.loads(key), offset)
                  for key, offset in (offsets or {}).items()]
        pairs: list[tuple[bytes, bytes | None]] = [offset_record(o) for o in wanted]
        stored = offset_log.read_settled(source, self._transaction_timeout_s())
        for key in sorted(set(stored) - set(offsets or {})):
            # A tombstone: the offsets log forgets the partition (and compaction drops it).
            pairs.append((offset_record(SourceOffset(source, json.loads(key), {}))[0], None))
        self._write([], pairs, [source])

    def _writer(self, sources: Sequence[str]) -> tuple[KafkaWriter, threading.Lock]:
        with self._lock:
            transactional_id = self._transactional_id(sources) if self._transactional else None
            found = self._writers.get(transactional_id)
            if found is None:
                writer = KafkaWriter(self.settings, transactional_id, self._offsets_topic)
                found = self._writers[transactional_id] = (writer, threading.Lock())
            return found

    def _forget_writer(self, writer: KafkaWriter) -> None:
        with self._lock:
            self._writers.pop(writer.transactional_id, None)

    def _transactional_id(self, sources: Sequence[str]) -> str:
        prefix = self.settings.transactional_id_prefix
        if not sources:
            # Records without offsets resume from nothing: no predecessor to fence.
            return f"{prefix}-records-{self._instance}"
        return f"{prefix}-{'+'.join(sources)}"

    def _verify_offsets(self, offset_log: SourceOffsetLog, sources: Sequence[str]) -> None:
        for source in sources:
            with self._lock:
                handed_out = self._unverified.get(source)
            if handed_out is None:
                continue
            settled = offset_log.read_settled(source, self._transaction_timeout_s() + 10.0)
            with self._lock:
                self._unverified.pop(source, None)
            if settled != handed_out:
                raise RetriableError(
                    f"the stored offsets of source {source} changed after it started: a"
                    " transaction of an earlier run was still open; restarting the source"
                    " from the committed offsets",
                    hint="nothing to do: nothing was written from the stale offsets",
                )

    def _transaction_timeout_s(self) -> float:
        configured = self.settings.properties.get("transaction.timeout.ms")
        if isinstance(configured, int | float | str) and str(configured).isdigit():
            return int(str(configured)) / 1000
        return _DEFAULT_TRANSACTION_TIMEOUT_S

    # -- reads -------------------------------------------------------------------------------

    def source_offsets(self, source: str) -> dict[str, Mapping[str, Primitive]]:
        _, offset_log = self._opened()
        offsets, complete = offset_log.read(source)
        with self._lock:
            if complete:
                self._unverified.pop(source, None)
            else:
                self._unverified[source] = offsets
        return offsets

    def topics(self) -> list[TopicInfo]:
        admin, _ = self._opened()
        return admin.describe(exclude=[self._offsets_topic])

    def consumer(
        self,
        group: str,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assign: AssignCallback | None = None,
        from_beginning: bool = True,
    ) -> KafkaConsumer:
        admin, _ = self._opened()
        consumer = KafkaConsumer(
            self.settings,
            admin,
            group,
            topics=topics,
            pattern=pattern,
            on_assign=on_assign,
            from_beginning=from_beginning,
            exclude=frozenset({self._offsets_topic}),
        )
        with self._lock:
            self._consumers.add(consumer)
        return consumer

    def group_offsets(self, group: str) -> dict[TopicPartition, int]:
        admin, _ = self._opened()
        return admin.group_offsets(group)

    def groups(self) -> list[str]:
        admin, _ = self._opened()
        return admin.groups()

    def registry(self) -> ConfluentRegistry:
        """The Confluent-compatible registry of ``streams.schema_registry``."""
        from liberate.schema.confluent import ConfluentRegistry  # only when asked for

        with self._lock:
            if self._registry is None:
                if self.schema_registry is None:
                    raise FatalError(
                        "the Kafka backend needs a schema registry, and none is configured",
                        hint="set streams.schema_registry.url to a Confluent-compatible registry"
                        " (Confluent, Karapace, Apicurio, Redpanda), or run one with"
                        " `liberate registry serve registry.db` (see docs/kafka.md)",
                    )
                self._registry = ConfluentRegistry(self.schema_registry)
            return self._registry

    def __repr__(self) -> str:
        return f"KafkaBackend({self.settings.bootstrap_servers!r})"
