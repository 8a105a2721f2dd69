"""Topic and group administration of the Kafka backend, through one ``AdminClient``.

Topics are created on first use with the configured partitions and replication factor,
entity topics with ``cleanup.policy=compact``. What exists is remembered, so the runtime's
``ensure_topic`` before every new topic costs one request per topic and process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType

from liberate.config.models import KafkaSettings
from liberate.errors import LiberateError
from liberate.records import TopicPartition
from liberate.streams._kafka_config import REQUEST_TIMEOUT_S, admin_config
from liberate.streams._kafka_errors import error_code, wrap_kafka_error
from liberate.streams.base import TopicInfo

# Kafka's own topics; never shown as streams.
_INTERNAL_PREFIX = "__"
EARLIEST: Literal["earliest"] = "earliest"
LATEST: Literal["latest"] = "latest"


class KafkaTopicAdmin:
    """Creates and describes topics, reads watermarks and consumer groups.

    Threading: every method may be called from any thread (``AdminClient`` is thread-safe;
    the set of known topics is guarded by a lock).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.admin = AdminClient(admin_config(settings))
        self._known: set[str] = set()
        self._lock = threading.Lock()

    # -- topics ------------------------------------------------------------------------------

    def ensure(self, topic: str, *, partitions: int, compacted: bool) -> None:
        """Create ``topic`` with ``partitions`` unless it exists; wait until the cluster's
        metadata shows it."""
        with self._lock:
            if topic in self._known:
                return
        config = {"cleanup.policy": "compact"} if compacted else {}
        new = NewTopic(topic, partitions, self.settings.replication_factor, config=config)
        futures = self.admin.create_topics([new], request_timeout=REQUEST_TIMEOUT_S)
        try:
            futures[topic].result()
        except Exception as exc:
            if error_code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
                raise self._wrap(exc, f"create topic {topic!r}") from exc
        else:
            self._wait_visible(topic)
        with self._lock:
            self._known.add(topic)

    def _wait_visible(self, topic: str) -> None:
        # Creation returns when the controller accepted it; producers and consumers look the
        # topic up in metadata, which a multi-broker cluster propagates a moment later.
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while time.monotonic() < deadline:
            metadata = self._metadata(topic)
            found = metadata.topics.get(topic)
            if found is not None and found.error is None and found.partitions:
                return
            time.sleep(0.05)

    def partitions_of(self, topic: str, timeout_s: float = REQUEST_TIMEOUT_S) -> list[int]:
        """The partition ids of an existing ``topic`` (empty when it does not exist)."""
        found = self._metadata(topic, timeout_s).topics.get(topic)
        if found is None or found.error is not None:
            return []
        return sorted(found.partitions)

    def matching(self, wanted: Callable[[str], bool]) -> list[str]:
        """Names of every non-internal topic for which ``wanted(name)`` is true, sorted."""
        return sorted(name for name in self._topic_names() if wanted(name))

    def describe(self, exclude: Iterable[str] = ()) -> list[TopicInfo]:
        """Every topic but Kafka's internal ones and ``exclude``, with sizes, sorted by name."""
        skip = set(exclude)
        metadata = self._metadata(None)
        names = sorted(
            name
            for name, topic in metadata.topics.items()
            if topic.error is None and name not in skip and not name.startswith(_INTERNAL_PREFIX)
        )
        if not names:
            return []
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(metadata.topics[name].partitions)
        ]
        starts = self.offsets(partitions, EARLIEST)
        ends = self.offsets(partitions, LATEST)
        compacted = self._compacted(names)
        infos: list[TopicInfo] = []
        for name in names:
            own = [tp for tp in partitions if tp.topic == name]
            end_offsets = {tp.partition: ends.get(tp, 0) for tp in own}
            records = sum(max(0, ends.get(tp, 0) - starts.get(tp, 0)) for tp in own)
            infos.append(TopicInfo(name, len(own), records, end_offsets, name in compacted))
        return infos

    def offsets(
        self,
        partitions: Sequence[TopicPartition],
        spec: Literal["earliest", "latest"],
        *,
        committed_only: bool = False,
    ) -> dict[TopicPartition, int]:
        """Offsets per partition for ``spec``: earliest, or latest (the high watermark, or the
        last stable offset with ``committed_only``)."""
        if not partitions:
            return {}
        level = IsolationLevel.READ_COMMITTED if committed_only else IsolationLevel.READ_UNCOMMITTED
        kind: Any = OffsetSpec  # the spec factories are untyped
        offset_spec = kind.earliest() if spec == EARLIEST else kind.latest()
        request = {KafkaTopicPartition(tp.topic, tp.partition): offset_spec for tp in partitions}
        try:
            futures = self.admin.list_offsets(
                request, isolation_level=level, request_timeout=REQUEST_TIMEOUT_S
            )
            return {
                TopicPartition(ktp.topic, ktp.partition): int(future.result().offset)
                for ktp, future in futures.items()
            }
        except Exception as exc:
            raise self._wrap(exc, "read offsets of topics") from exc

    def _compacted(self, names: Sequence[str]) -> set[str]:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        try:
            futures = self.admin.describe_configs(resources, request_timeout=REQUEST_TIMEOUT_S)
            compacted: set[str] = set()
            for resource, future in futures.items():
                entry = future.result().get("cleanup.policy")
                if entry is not None and "compact" in str(entry.value or ""):
                    compacted.add(resource.name)
            return compacted
        except Exception as exc:
            raise self._wrap(exc, "describe topic configs") from exc

    def _topic_names(self) -> list[str]:
        metadata = self._metadata(None)
        return [
            name
            for name, topic in metadata.topics.items()
            if topic.error is None and not name.startswith(_INTERNAL_PREFIX)
        ]

    def _metadata(self, topic: str | None, timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
        try:
            return self.admin.list_topics(topic=topic, timeout=timeout_s)
        except Exception as exc:
            raise self._wrap(exc, "read cluster metadata") from exc

    # -- groups ------------------------------------------------------------------------------

    def group_offsets(self, group: str) -> dict[TopicPartition, int]:
        """The committed next offsets of ``group`` (empty for an unknown group)."""
        request = [ConsumerGroupTopicPartitions(group)]
        try:
            futures = self.admin.list_consumer_group_offsets(
                request, request_timeout=REQUEST_TIMEOUT_S
            )
            result = futures[group].result()
        except Exception as exc:
            if error_code(exc) in (KafkaError.GROUP_ID_NOT_FOUND, KafkaError._UNKNOWN_GROUP):
                return {}
            raise self._wrap(exc, f"read the offsets of group {group!r}") from exc
        return _committed(result.topic_partitions or ())

    def groups(self) -> list[str]:
        """Every consumer group that has committed offsets, sorted."""
        try:
            listing = self.admin.list_consumer_groups(request_timeout=REQUEST_TIMEOUT_S).result()
        except Exception as exc:
            raise self._wrap(exc, "list consumer groups") from exc
        # Groups that only joined (tail, readers) are listed too; the contract wants the ones
        # with positions, which needs one offsets request per group.
        names = sorted({g.group_id for g in listing.valid if g.group_id})
        return [name for name in names if self.group_offsets(name)]

    def _wrap(self, exc: BaseException, action: str) -> LiberateError:
        return wrap_kafka_error(exc, action, self.settings.bootstrap_servers)


def _committed(partitions: Iterable[Any]) -> dict[TopicPartition, int]:
    return {
        TopicPartition(str(p.topic), int(p.partition)): int(p.offset)
        for p in partitions
        if p.error is None and int(p.offset) >= 0
    }


def topic_partitions(offsets: Mapping[TopicPartition, int]) -> list[KafkaTopicPartition]:
    """confluent-kafka's TopicPartitions of our ``offsets``."""
    return [KafkaTopicPartition(tp.topic, tp.partition, int(o)) for tp, o in offsets.items()]
