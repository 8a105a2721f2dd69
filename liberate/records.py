"""The records that flow through liberate.

A source returns :class:`SourceRecord` values (Python objects plus their Avro schemas, the
source partition and the offset reached). The runtime serializes them into
:class:`StreamRecord` bytes for the stream backend; a sink receives :class:`SinkRecord` values
decoded again, with the stream coordinates it must commit.

Partitions and offsets are small maps of primitives, as in Kafka Connect: the offset of a
record is the position *after* it, so storing it and resuming from it never replays it.

The per-record classes are plain slotted dataclasses, not frozen ones: a frozen dataclass costs
about 1 µs more per construction, which is a tenth of the whole per-record budget. Treat them
as immutable all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from liberate.schema.avro import AvroSchema

Primitive = str | int | float | bool | None
Headers = tuple[tuple[str, bytes], ...]


@dataclass(slots=True)
class SourceRecord:
    """One event produced by a source, before serialization.

    ``value`` None is a tombstone. ``partition`` names the source partition (for example
    ``{"table": "orders"}``) and ``offset`` the position reached once this record is durable.
    """

    topic: str
    key: Mapping[str, Any] | None
    value: Mapping[str, Any] | None
    key_schema: AvroSchema | None
    value_schema: AvroSchema | None
    partition: Mapping[str, Primitive]
    offset: Mapping[str, Primitive]
    headers: Headers = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """A partition of a topic in the stream backend."""

    topic: str
    partition: int = 0


@dataclass(slots=True)
class StreamRecord:
    """A serialized record as the stream backend stores it (Confluent wire format bytes)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None


@dataclass(slots=True)
class ConsumedRecord:
    """A record read back from the stream backend, with its coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None


@dataclass(slots=True)
class SinkRecord:
    """A consumed record decoded for a sink: Python values plus the Avro schemas they came with.

    ``offset`` is the stream offset of this record; a sink that commits it stores ``offset + 1``
    as the next position to read.
    """

    topic: str
    partition: int
    offset: int
    key: Mapping[str, Any] | None
    value: Mapping[str, Any] | None
    key_schema: AvroSchema | None
    value_schema: AvroSchema | None
    headers: Headers = ()
    timestamp_ms: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
