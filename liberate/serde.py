"""The runtime's serializer and deserializer: records to Confluent wire-format bytes and back.

``RecordSerializer`` turns a source's ``SourceRecord`` values into ``StreamRecord`` bytes,
registering each key and value schema under its subject; ``RecordDeserializer`` turns
consumed bytes back into ``SinkRecord`` values with the schemas they were written with.

Speed matters here (every record of every source passes through): the registry is asked once
per (subject, schema), encoders are found by the schema object's identity (and reused from the
previous record, since sources emit runs of one table), and decoders by the 5-byte wire header,
so a record costs little more than the Avro encoding itself (benchmarks/serde_encode.py; a
``dict`` key or value, what CDC sources emit, goes straight to its schema's generated writer).
A key or value that is a ``RowView`` of the record's own schema is encoded straight from its
driver row (``liberate.schema.rows``), with no mapping lookups. An ``EncodedRecord`` of the
record's own schema (Avro-encoded already, by a source that encodes in worker processes:
connectors/query/_parallel_bulk.py) gets its wire header and is never decoded or encoded again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from liberate.errors import ConfigError, FatalError, RecordError
from liberate.records import ConsumedRecord, SinkRecord, SourceRecord, StreamRecord
from liberate.schema._avro_reader import Read, compile_reader
from liberate.schema.avro import AvroSchema, decode, schema_id_of, wire_header
from liberate.schema.registry import SchemaRegistry
from liberate.schema.rows import RowView

SubjectStrategy = Literal["topic", "record", "topic_record"]
SUBJECT_STRATEGIES: tuple[SubjectStrategy, ...] = ("topic", "record", "topic_record")

# (schema, topic, wire header, writer); holding the schema keeps its id() from being reused
# by another object while the entry is cached.
_Encoder = tuple[AvroSchema | None, str | None, bytes, Callable[[bytearray, Any], None]]
# Sources build a schema once per table; past this many schema objects one is being built
# per record, and the identity cache is dropped rather than grown without bound.
_MAX_ENCODERS = 4096


def _no_writer(out: bytearray, datum: Any) -> None:
    raise AssertionError("placeholder encoder used")


# Matches no record: its topic is None, and every record has a topic.
_NO_ENCODER: _Encoder = (None, None, b"", _no_writer)


class EncodedRecord(Mapping[str, Any]):
    """A record already Avro-encoded with ``schema``: its binary body, without wire header.

    The serializer passes the body through; read as a mapping (by tools, in error messages)
    it is the decoded record, decoded on first use. Treat it as immutable.
    """

    __slots__ = ("_decoded", "body", "schema")

    def __init__(self, body: bytes, schema: AvroSchema) -> None:
        self.body = body
        self.schema = schema
        self._decoded: Mapping[str, Any] | None = None

    def _record(self) -> Mapping[str, Any]:
        if self._decoded is None:
            self._decoded = decode(wire_header(0) + self.body, self.schema)
        return self._decoded

    def __getitem__(self, name: str) -> Any:
        return self._record()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._record())

    def __len__(self) -> int:
        return len(self._record())

    def __repr__(self) -> str:
        return f"EncodedRecord({dict(self._record())!r})"


def subject_name(strategy: SubjectStrategy, topic: str, schema: AvroSchema, *, is_key: bool) -> str:
    """The registry subject of a key or value schema under ``strategy`` (Confluent's names).

    ``topic``: ``<topic>-key`` / ``<topic>-value``; ``record``: the record's full name;
    ``topic_record``: ``<topic>-<record full name>``.
    """
    if strategy == "topic":
        return f"{topic}-key" if is_key else f"{topic}-value"
    name = schema.name
    if not name:
        raise FatalError(
            f"the {'key' if is_key else 'value'} schema of topic {topic} is not a named record, "
            f"so the {strategy!r} subject strategy cannot name its subject",
            hint="use streams.subject_name_strategy: topic",
        )
    return name if strategy == "record" else f"{topic}-{name}"


class RecordSerializer:
    """Encodes source records in the Confluent wire format, registering their schemas.

    Threading: one serializer is shared by every source task; ``serialize`` may run in
    several threads at once (the caches are only ever extended, the registry is thread-safe).
    """

    def __init__(
        self, registry: SchemaRegistry, *, subject_strategy: SubjectStrategy = "topic"
    ) -> None:
        if subject_strategy not in SUBJECT_STRATEGIES:
            raise ConfigError(
                f"unknown subject name strategy {subject_strategy!r}",
                hint=f"use one of {', '.join(SUBJECT_STRATEGIES)}",
            )
        self.registry = registry
        self.subject_strategy: SubjectStrategy = subject_strategy
        self._encoders: dict[tuple[str, bool, int], _Encoder] = {}
        self._ids: dict[tuple[str, str], int] = {}

    def serialize(self, records: Sequence[SourceRecord]) -> list[StreamRecord]:
        """The wire-format records of ``records``, in order.

        A None key or value stays None (a tombstone for the value); headers pass through and
        a missing timestamp becomes now (one instant per call). A value that does not fit its
        schema raises ``RecordError`` naming the topic, the key and the field; a breaking
        schema change raises ``SchemaCompatibilityError`` from the registry.
        """
        now_ms = time.time_ns() // 1_000_000
        result: list[StreamRecord] = []
        append = result.append
        # Sources emit runs of one table: the encoders of the previous record usually fit.
        key_encoder = value_encoder = _NO_ENCODER
        for record in records:
            topic = record.topic
            key: bytes | None = None
            value: bytes | None = None
            part = "key"
            try:
                datum = record.key
                if datum is not None:
                    if key_encoder[0] is not record.key_schema or key_encoder[1] != topic:
                        key_encoder = self._encoder(record, is_key=True)
                    if type(datum) is dict:
                        # The common case inline: a dict, written by the schema's writer.
                        buf = bytearray(key_encoder[2])
                        key_encoder[3](buf, datum)
                        key = bytes(buf)
                    elif type(datum) is EncodedRecord and datum.schema is key_encoder[0]:
                        key = key_encoder[2] + datum.body
                    else:
                        key = _encode(key_encoder, datum)
                part = "value"
                datum = record.value
                if datum is not None:
                    if value_encoder[0] is not record.value_schema or value_encoder[1] != topic:
                        value_encoder = self._encoder(record, is_key=False)
                    if type(datum) is dict:
                        buf = bytearray(value_encoder[2])
                        value_encoder[3](buf, datum)
                        value = bytes(buf)
                    elif type(datum) is EncodedRecord and datum.schema is value_encoder[0]:
                        value = value_encoder[2] + datum.body
                    else:
                        value = _encode(value_encoder, datum)
            except RecordError as exc:
                raise _serialize_error(record, exc, part=part) from exc
            timestamp = record.timestamp_ms
            append(
                StreamRecord(
                    topic, key, value, record.headers, now_ms if timestamp is None else timestamp
                )
            )
        return result

    def _encoder(self, record: SourceRecord, *, is_key: bool) -> _Encoder:
        schema = record.key_schema if is_key else record.value_schema
        cache_key = (record.topic, is_key, id(schema))
        cached = self._encoders.get(cache_key)
        if cached is not None and cached[0] is schema:
            return cached
        if schema is None:
            part = "key" if is_key else "value"
            raise FatalError(
                f"a record for topic {record.topic} has a {part} but no {part} schema",
                hint="this is a bug in the source connector: report it with the topic",
            )
        subject = subject_name(self.subject_strategy, record.topic, schema, is_key=is_key)
        schema_id = self._ids.get((subject, schema.fingerprint))
        if schema_id is None:
            schema_id = self.registry.register(subject, schema)
            self._ids[(subject, schema.fingerprint)] = schema_id
        encoder: _Encoder = (schema, record.topic, wire_header(schema_id), schema.writer)
        if len(self._encoders) >= _MAX_ENCODERS:
            self._encoders.clear()
        self._encoders[cache_key] = encoder
        return encoder


def _encode(encoder: _Encoder, datum: Any) -> bytes:
    """The wire-format bytes of ``datum`` (a key or a value) with ``encoder``."""
    buf = bytearray(encoder[2])
    if type(datum) is RowView and datum.layout.schema is encoder[0]:
        try:
            datum.layout.write(buf, datum.row)
            return bytes(buf)
        except Exception:
            # The row writer does not say which field failed (or has no writer for this
            # schema): the mapping writer says it.
            buf = bytearray(encoder[2])
    encoder[3](buf, datum)
    return bytes(buf)


def _serialize_error(record: SourceRecord, exc: RecordError, *, part: str) -> RecordError:
    origin = f"topic {record.topic}, key {_shown(record.key)}"
    return RecordError(
        f"cannot serialize the {part} of a record for {origin}: {exc.message}",
        origin=origin,
        hint=exc.hint,
    )


def _shown(key: Mapping[str, Any] | None) -> str:
    text = repr(dict(key)) if key is not None else "None"
    return text if len(text) <= 200 else text[:197] + "..."


class RecordDeserializer:
    """Decodes consumed wire-format records, resolving schema ids through the registry.

    Each schema id gets a reader generated for its schema (``liberate.schema._avro_reader``:
    the values fastavro gives, about 2x faster on table rows, 5x on small keys); bytes the
    reader trips on are decoded again by fastavro, whose error then names the problem.

    Threading: may be shared by several sink tasks (the schema cache is only ever extended).
    """

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        # wire header (magic byte + id) -> schema: one slice and one lookup per message
        self._by_header: dict[bytes, AvroSchema] = {}
        # wire header -> (schema, its generated reader): the decoding hot path
        self._readers: dict[bytes, tuple[AvroSchema, Read]] = {}

    def deserialize(self, records: Sequence[ConsumedRecord]) -> list[SinkRecord]:
        """The decoded records of ``records``, in order, with the schemas they were written with.

        A None key or value stays None. Bytes that are not a wire-format Avro record raise
        ``RecordError`` whose ``origin`` is the record's topic, partition and offset; an id
        the registry does not know raises its ``FatalError``.
        """
        result: list[SinkRecord] = []
        append = result.append
        decode_part = self._decode
        reader = self._readers.get
        key: Any
        value: Any
        for record in records:
            # The hot path inline: a known header, a reader that returns a record. Anything
            # else (a new id, bad bytes, not a record) goes the way of ``_decode``.
            key = key_schema = None
            data = record.key
            if data is not None:
                try:
                    key_schema, read = reader(data[:5])  # type: ignore[misc]
                    key = read(data, 5)
                except Exception:
                    key = None
                if type(key) is not dict:
                    key, key_schema = decode_part(record, data, "key")
            value = value_schema = None
            data = record.value
            if data is not None:
                try:
                    value_schema, read = reader(data[:5])  # type: ignore[misc]
                    value = read(data, 5)
                except Exception:
                    value = None
                if type(value) is not dict:
                    value, value_schema = decode_part(record, data, "value")
            append(
                SinkRecord(
                    record.topic,
                    record.partition,
                    record.offset,
                    key,
                    value,
                    key_schema,
                    value_schema,
                    record.headers,
                    record.timestamp_ms,
                )
            )
        return result

    def schema(self, schema_id: int) -> AvroSchema:
        """The schema of ``schema_id``, from the cache or the registry."""
        header = wire_header(schema_id)
        schema = self._by_header.get(header)
        if schema is None:
            schema = self._by_header.setdefault(header, self.registry.schema_by_id(schema_id))
        return schema

    def _reader(self, schema_id: int) -> tuple[AvroSchema, Read]:
        """The schema of ``schema_id`` and its reader (``_avro_reader``; fastavro's when the
        schema's shape is left to fastavro), compiled once per id."""
        schema = self.schema(schema_id)
        read = compile_reader(schema.schema)
        if read is None:
            def read(data: bytes, pos: int) -> Any:
                return decode(data, schema)
        return self._readers.setdefault(wire_header(schema_id), (schema, read))

    def _decode(
        self, record: ConsumedRecord, data: bytes | None, part: str
    ) -> tuple[Mapping[str, Any] | None, AvroSchema | None]:
        if data is None:
            return None, None
        try:
            found = self._readers.get(data[:5])
            if found is None:
                found = self._reader(schema_id_of(data))
            schema, read = found
            try:
                datum = read(data, 5)
            except Exception:
                # Bytes the generated reader trips on: fastavro's error says what is wrong
                # (and fastavro's value is the value, should the two ever disagree).
                datum = decode(data, schema)
        except RecordError as exc:
            raise _deserialize_error(record, part, exc.message, exc.hint) from exc
        if type(datum) is not dict and not isinstance(datum, Mapping):
            raise _deserialize_error(
                record,
                part,
                f"it decodes to a {type(datum).__name__}, not a record",
                "liberate sinks read topics whose keys and values are Avro records",
            )
        return datum, schema


def _deserialize_error(
    record: ConsumedRecord, part: str, reason: str, hint: str | None
) -> RecordError:
    origin = f"{record.topic} partition {record.partition} offset {record.offset}"
    return RecordError(f"cannot decode the {part} of {origin}: {reason}", origin=origin, hint=hint)
