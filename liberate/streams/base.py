"""The stream backend contract: what the runtime needs from a place that stores streams.

A backend stores topics of partitions of records, consumer-group offsets and the offsets of
sources. ``append`` is the heart of the commit order (DESIGN §2): records and the source
offsets that produced them become durable together (one transaction where the backend can).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from liberate.records import ConsumedRecord, Primitive, StreamRecord, TopicPartition

if TYPE_CHECKING:
    from liberate.schema.registry import SchemaRegistry

Guarantee = Literal["exactly-once", "at-least-once"]


def partition_key(partition: Mapping[str, Primitive]) -> str:
    """The canonical text of a source partition map (sorted keys): how offsets are stored."""
    return json.dumps(dict(partition), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SourceOffset:
    """The offset a source reached in one of its partitions."""

    source: str
    partition: Mapping[str, Primitive]
    offset: Mapping[str, Primitive]

    @property
    def partition_key(self) -> str:
        return partition_key(self.partition)


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What a backend knows of one topic: partitions, record counts and end offsets, and the
    bytes it stores when the backend can tell (the embedded one: its batches' payloads)."""

    name: str
    partitions: int
    records: int
    end_offsets: Mapping[int, int]
    compacted: bool = False
    bytes: int | None = None


def end_offsets(infos: Iterable[TopicInfo]) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``infos`` (as ``StreamBackend.topics`` gives them)."""
    return {
        TopicPartition(info.name, partition): end
        for info in infos
        for partition, end in info.end_offsets.items()
    }


def unread(ends: Mapping[TopicPartition, int], at: Mapping[TopicPartition, int]
           ) -> list[TopicPartition]:
    """The partitions of ``ends`` (end offsets) with records before their end that ``at``
    (next offsets to read; a partition left out is at 0) has not reached."""
    return [tp for tp, end in ends.items() if end > 0 and at.get(tp, 0) < end]


# Called when partitions are assigned to a consumer; returns where to start reading each one
# (the next offset), or omits a partition to start from the group's committed offset or the
# beginning. This is how a sink that keeps its own offsets resumes exactly.
AssignCallback = Callable[[Sequence[TopicPartition]], Mapping[TopicPartition, int]]


class StreamConsumer(ABC):
    """Reads records of a set of topics for one consumer group.

    Threading: one consumer is used by one thread, except ``close`` after that thread is done.
    """

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> list[ConsumedRecord]:
        """Return up to ``max_records`` next records, waiting at most ``timeout_s`` for the first.

        Returns an empty list when nothing is available within the timeout.
        """

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record the group's next offsets (informational for sinks that keep their own)."""

    @abstractmethod
    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer currently reads."""

    @abstractmethod
    def positions(self) -> dict[TopicPartition, int]:
        """The next offset to read of each assigned partition.

        Past Kafka transaction markers, so "caught up" compares this with the end offsets, not
        the last record's offset + 1. Partitions not fetched yet may be left out.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the consumer; idempotent."""


class StreamBackend(ABC):
    """A place that stores streams. Lifecycle: ``open`` once, use, ``close`` once.

    Threading: the runtime may call the backend from several threads (one per connector);
    implementations serialize what they must.
    """

    #: what this backend guarantees for the source side, as the run reports it
    guarantee: Guarantee = "at-least-once"

    @abstractmethod
    def open(self) -> None:
        """Connect or create storage. Raises ConfigError/FatalError with a hint on failure."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release everything; idempotent."""

    @abstractmethod
    def ensure_topic(self, topic: str, *, compacted: bool = False, partitions: int = 1) -> None:
        """Create ``topic`` if it does not exist yet; a no-op when it does."""

    @abstractmethod
    def append(self, records: Sequence[StreamRecord], offsets: Sequence[SourceOffset]) -> None:
        """Make ``records`` and the source ``offsets`` durable, together where possible.

        On return both are durable; on an exception neither is visible (embedded, Kafka with
        transactions) or the records may be visible without the offsets (at-least-once).
        Records of one key keep their order.
        """

    @abstractmethod
    def source_offsets(self, source: str) -> dict[str, Mapping[str, Primitive]]:
        """The stored offsets of ``source``: partition key (see ``partition_key``) -> offset."""

    def reset_source_offsets(
        self, source: str, offsets: Mapping[str, Mapping[str, Primitive]] | None
    ) -> None:
        """Replace every stored offset of ``source`` by ``offsets`` (partition key -> offset),
        or remove them all (``None``: the source starts from the beginning).

        For ``liberate offsets reset``, while the source is not running. Backends that cannot
        do it raise ``FatalError``.
        """
        from liberate.errors import FatalError

        raise FatalError(f"the {type(self).__name__} cannot reset the offsets of a source")

    @abstractmethod
    def topics(self) -> list[TopicInfo]:
        """Every topic with its partitions and end offsets, sorted by name."""

    @abstractmethod
    def consumer(
        self,
        group: str,
        *,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assign: AssignCallback | None = None,
        from_beginning: bool = True,
    ) -> StreamConsumer:
        """A consumer of ``topics`` (or every topic matching ``pattern``) for ``group``."""

    @abstractmethod
    def group_offsets(self, group: str) -> dict[TopicPartition, int]:
        """The committed next offsets of ``group``."""

    @abstractmethod
    def groups(self) -> list[str]:
        """Every consumer group that has committed offsets."""

    @abstractmethod
    def registry(self) -> SchemaRegistry:
        """The schema registry that goes with this backend."""
