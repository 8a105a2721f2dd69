"""The runtime's serializer and deserializer, against a real embedded registry file."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from liberate.envelope import change_value, envelope_schema, source_block, source_schema
from liberate.errors import ConfigError, FatalError, RecordError, SchemaCompatibilityError
from liberate.records import ConsumedRecord, SourceRecord, StreamRecord
from liberate.schema.avro import AvroSchema, decode, schema_id_of
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import RecordDeserializer, RecordSerializer, subject_name

KEY = AvroSchema(
    {
        "type": "record",
        "name": "Key",
        "namespace": "shop.orders",
        "fields": [{"name": "id", "type": "long"}],
    }
)
VALUE = AvroSchema(
    {
        "type": "record",
        "name": "Value",
        "namespace": "shop.orders",
        "fields": [
            {"name": "id", "type": "long"},
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            },
            {"name": "note", "type": ["null", "string"], "default": None},
        ],
    }
)


class CountingRegistry(EmbeddedRegistry):
    """The embedded registry, counting the calls the serde layer makes to it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.register_calls = 0
        self.lookup_calls = 0

    def register(self, subject: str, schema: AvroSchema) -> int:
        self.register_calls += 1
        return super().register(subject, schema)

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        self.lookup_calls += 1
        return super().schema_by_id(schema_id)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[CountingRegistry]:
    opened = CountingRegistry(tmp_path / "streams.db")
    yield opened
    opened.close()


def order(
    i: int,
    *,
    row: dict[str, Any] | None = None,
    tombstone: bool = False,
    key: bool = True,
    topic: str = "shop.orders",
    **kwargs: Any,
) -> SourceRecord:
    value = row if row is not None else {"id": i, "amount": Decimal("12.50"), "note": None}
    return SourceRecord(
        topic=topic,
        key={"id": i} if key else None,
        value=None if tombstone else value,
        key_schema=KEY,
        value_schema=VALUE,
        partition={"table": "orders"},
        offset={"id": i},
        **kwargs,
    )


def consumed(records: list[StreamRecord], first_offset: int = 0) -> list[ConsumedRecord]:
    return [
        ConsumedRecord(r.topic, 0, first_offset + n, r.key, r.value, r.headers, r.timestamp_ms)
        for n, r in enumerate(records)
    ]


def test_key_and_value_are_encoded_in_the_wire_format_with_registered_ids(
    registry: CountingRegistry,
) -> None:
    (record,) = RecordSerializer(registry).serialize([order(7)])
    assert record.key is not None and record.value is not None
    assert record.key[:1] == b"\x00" and record.value[:1] == b"\x00"
    key_id, value_id = schema_id_of(record.key), schema_id_of(record.value)
    assert registry.schema_by_id(key_id) == KEY
    assert registry.schema_by_id(value_id) == VALUE
    assert decode(record.key, KEY) == {"id": 7}
    assert decode(record.value, VALUE) == {"id": 7, "amount": Decimal("12.50"), "note": None}


@pytest.mark.parametrize(
    ("strategy", "subjects"),
    [
        ("topic", ["shop.orders-key", "shop.orders-value"]),
        ("record", ["shop.orders.Key", "shop.orders.Value"]),
        ("topic_record", ["shop.orders-shop.orders.Key", "shop.orders-shop.orders.Value"]),
    ],
)
def test_subjects_follow_the_strategy(
    registry: CountingRegistry, strategy: Any, subjects: list[str]
) -> None:
    RecordSerializer(registry, subject_strategy=strategy).serialize([order(1)])
    assert registry.subjects() == subjects


def test_record_strategy_needs_a_named_schema() -> None:
    with pytest.raises(FatalError, match="not a named record"):
        subject_name("record", "t", AvroSchema("string"), is_key=True)


def test_unknown_strategy_is_a_config_error(registry: CountingRegistry) -> None:
    with pytest.raises(ConfigError, match="unknown subject name strategy"):
        RecordSerializer(registry, subject_strategy="topic_name")  # type: ignore[arg-type]


def test_tombstone_and_keyless_records_keep_none(registry: CountingRegistry) -> None:
    tombstone, keyless = RecordSerializer(registry).serialize(
        [order(1, tombstone=True), order(2, key=False)]
    )
    assert tombstone.key is not None and tombstone.value is None
    assert keyless.key is None and keyless.value is not None


def test_headers_and_timestamps_pass_through_and_missing_timestamps_are_now(
    registry: CountingRegistry,
) -> None:
    before = time.time_ns() // 1_000_000
    stamped, unstamped = RecordSerializer(registry).serialize(
        [order(1, headers=(("trace", b"abc"),), timestamp_ms=1234), order(2)]
    )
    after = time.time_ns() // 1_000_000
    assert stamped.headers == (("trace", b"abc"),)
    assert stamped.timestamp_ms == 1234
    assert unstamped.timestamp_ms is not None and before <= unstamped.timestamp_ms <= after


def test_the_registry_is_asked_once_per_subject_and_schema(registry: CountingRegistry) -> None:
    serializer = RecordSerializer(registry)
    serializer.serialize([order(i) for i in range(100)])
    serializer.serialize([order(i) for i in range(100, 200)])
    assert registry.register_calls == 2


def test_an_equal_schema_object_reuses_the_registered_id(registry: CountingRegistry) -> None:
    serializer = RecordSerializer(registry)
    (first,) = serializer.serialize([order(1)])
    same_value = AvroSchema(VALUE.canonical)
    record = order(2)
    rebuilt = SourceRecord(
        record.topic, record.key, record.value, KEY, same_value, record.partition, record.offset
    )
    (second,) = serializer.serialize([rebuilt])
    assert registry.register_calls == 2
    assert first.value is not None and second.value is not None
    assert schema_id_of(first.value) == schema_id_of(second.value)


def test_records_of_several_topics_in_one_batch_get_their_own_subjects(
    registry: CountingRegistry,
) -> None:
    records = [order(1), order(2, topic="shop.refunds"), order(3), order(4, topic="shop.refunds")]
    RecordSerializer(registry).serialize(records)
    assert registry.subjects() == [
        "shop.orders-key",
        "shop.orders-value",
        "shop.refunds-key",
        "shop.refunds-value",
    ]


def test_a_bad_value_names_the_topic_the_key_and_the_field(registry: CountingRegistry) -> None:
    bad = order(42, row={"id": 42, "amount": Decimal("1.234"), "note": None})
    with pytest.raises(RecordError) as caught:
        RecordSerializer(registry).serialize([order(1), bad])
    error = caught.value
    assert error.origin == "topic shop.orders, key {'id': 42}"
    assert error.message.startswith(
        "cannot serialize the value of a record for topic shop.orders, key {'id': 42}: "
    )
    assert "field 'amount'" in error.message


def test_a_bad_key_says_it_is_the_key(registry: CountingRegistry) -> None:
    record = order(1)
    bad = SourceRecord(record.topic, {"id": "x"}, None, KEY, VALUE, record.partition, record.offset)
    with pytest.raises(RecordError, match="cannot serialize the key of a record"):
        RecordSerializer(registry).serialize([bad])


def test_a_key_without_a_key_schema_is_fatal(registry: CountingRegistry) -> None:
    record = order(1)
    broken = SourceRecord(
        record.topic, record.key, record.value, None, VALUE, record.partition, record.offset
    )
    with pytest.raises(FatalError, match="has a key but no key schema"):
        RecordSerializer(registry).serialize([broken])


def test_a_breaking_schema_change_stops_serialization(registry: CountingRegistry) -> None:
    serializer = RecordSerializer(registry)
    serializer.serialize([order(1)])
    narrowed = AvroSchema(
        {
            "type": "record",
            "name": "Value",
            "namespace": "shop.orders",
            "fields": [{"name": "id", "type": "long"}, {"name": "qty", "type": "int"}],
        }
    )
    record = SourceRecord(
        "shop.orders", {"id": 2}, {"id": 2, "qty": 1}, KEY, narrowed, {"t": "o"}, {"id": 2}
    )
    with pytest.raises(SchemaCompatibilityError, match="field 'qty'"):
        serializer.serialize([record])


def test_serialize_from_several_threads_at_once(registry: CountingRegistry) -> None:
    serializer = RecordSerializer(registry)
    results: dict[int, list[StreamRecord]] = {}

    def work(n: int) -> None:
        results[n] = serializer.serialize([order(i) for i in range(n * 100, n * 100 + 100)])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    decoded = RecordDeserializer(registry).deserialize(
        consumed([r for n in range(4) for r in results[n]])
    )
    assert [r.key for r in decoded] == [{"id": i} for i in range(400)]


def test_deserialize_restores_values_schemas_and_coordinates(registry: CountingRegistry) -> None:
    written = RecordSerializer(registry).serialize(
        [order(1, headers=(("h", b"1"),), timestamp_ms=99), order(2, tombstone=True)]
    )
    first, second = RecordDeserializer(registry).deserialize(consumed(written, first_offset=10))
    assert (first.topic, first.partition, first.offset) == ("shop.orders", 0, 10)
    assert first.key == {"id": 1}
    assert first.value == {"id": 1, "amount": Decimal("12.50"), "note": None}
    assert first.key_schema == KEY and first.value_schema == VALUE
    assert first.headers == (("h", b"1"),) and first.timestamp_ms == 99
    assert second.offset == 11 and second.value is None and second.value_schema is None


def test_deserialize_looks_each_schema_id_up_once(registry: CountingRegistry) -> None:
    written = RecordSerializer(registry).serialize([order(i) for i in range(50)])
    fresh = CountingRegistry(registry.path)
    try:
        deserializer = RecordDeserializer(fresh)
        deserializer.deserialize(consumed(written))
        deserializer.deserialize(consumed(written))
        assert fresh.lookup_calls == 2
    finally:
        fresh.close()


def test_bytes_that_are_not_wire_format_are_a_record_error_with_origin(
    registry: CountingRegistry,
) -> None:
    bad = ConsumedRecord("shop.orders", 3, 7, None, b"{not avro}")
    with pytest.raises(RecordError) as caught:
        RecordDeserializer(registry).deserialize([bad])
    assert caught.value.origin == "shop.orders partition 3 offset 7"
    assert caught.value.message.startswith(
        "cannot decode the value of shop.orders partition 3 offset 7: "
    )


def test_truncated_message_is_a_record_error(registry: CountingRegistry) -> None:
    (written,) = RecordSerializer(registry).serialize([order(1)])
    assert written.value is not None
    truncated = ConsumedRecord("shop.orders", 0, 5, written.key, written.value[:7])
    with pytest.raises(RecordError, match=r"cannot decode the value of shop\.orders partition 0"):
        RecordDeserializer(registry).deserialize([truncated])


def test_unknown_schema_id_is_fatal(registry: CountingRegistry) -> None:
    record = ConsumedRecord("t", 0, 0, None, b"\x00\x00\x00\x01\x00\x02")
    with pytest.raises(FatalError, match="schema id 256 is not in the embedded registry"):
        RecordDeserializer(registry).deserialize([record])


def test_a_value_that_is_not_a_record_is_a_record_error(registry: CountingRegistry) -> None:
    schema_id = registry.register("t-value", AvroSchema("string"))
    data = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02x"
    with pytest.raises(RecordError, match="decodes to a str, not a record"):
        RecordDeserializer(registry).deserialize([ConsumedRecord("t", 0, 0, None, data)])


def test_debezium_envelopes_round_trip(registry: CountingRegistry) -> None:
    source = source_schema("postgresql", [{"name": "lsn", "type": ["null", "long"]}])
    schema = envelope_schema(VALUE, source)
    before = {"id": 1, "amount": Decimal("1.00"), "note": "old"}
    after = {"id": 1, "amount": Decimal("2.00"), "note": None}
    block = source_block(
        connector="postgresql",
        name="pg",
        ts_ms=1,
        db="shop",
        schema="public",
        table="orders",
        position={"lsn": 42},
    )
    value = change_value("u", before=before, after=after, source=block, ts_ms=5)
    record = SourceRecord("pg.public.orders", {"id": 1}, value, KEY, schema, {"s": "pg"}, {"l": 42})
    written = RecordSerializer(registry).serialize([record])
    (read,) = RecordDeserializer(registry).deserialize(consumed(written))
    assert read.value == {**value, "source": {**block}}
    assert read.value_schema == schema


def test_timestamps_survive_the_round_trip_as_aware_utc(registry: CountingRegistry) -> None:
    schema = AvroSchema(
        {
            "type": "record",
            "name": "Event",
            "fields": [{"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}}],
        }
    )
    at = dt.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=dt.UTC)
    record = SourceRecord("events", None, {"at": at}, None, schema, {}, {})
    (read,) = RecordDeserializer(registry).deserialize(
        consumed(RecordSerializer(registry).serialize([record]))
    )
    assert read.value == {"at": at}
