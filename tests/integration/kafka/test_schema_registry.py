"""The Confluent-compatible registry path, across processes: ``liberate registry serve`` (or
the registry of LIBERATE_TEST_SCHEMA_REGISTRY_URL) with confluent-kafka's own client and
serializers on one side and liberate's ``ConfluentRegistry`` on the other."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from liberate.config.models import SchemaRegistrySettings
from liberate.errors import RetriableError, SchemaCompatibilityError
from liberate.records import ConsumedRecord, SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.confluent import ConfluentRegistry
from liberate.serde import RecordDeserializer, RecordSerializer

ORDER_V1: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}, {"name": "note", "type": "string"}],
}
ORDER_V2_COMPATIBLE: dict[str, Any] = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "tag", "type": ["null", "string"], "default": None}],
}
ORDER_V2_BREAKING: dict[str, Any] = {
    **ORDER_V1,
    "fields": [*ORDER_V1["fields"], {"name": "amount", "type": "double"}],
}
ORDER_V1_TEXT = AvroSchema(ORDER_V1).canonical
KEY: dict[str, Any] = {
    "type": "record",
    "name": "OrderKey",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "long"}],
}


@pytest.fixture
def topic() -> str:
    return f"registry.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def registry(schema_registry_url: str) -> ConfluentRegistry:
    return ConfluentRegistry(SchemaRegistrySettings(url=schema_registry_url))


def source_record(topic: str, value: dict[str, Any], schema: dict[str, Any]) -> SourceRecord:
    return SourceRecord(
        topic=topic,
        key={"id": value["id"]},
        value=value,
        key_schema=AvroSchema(KEY),
        value_schema=AvroSchema(schema),
        partition={"table": "orders"},
        offset={"id": value["id"]},
    )


def test_confluent_serializers_read_what_liberate_writes_and_the_other_way_round(
    registry: ConfluentRegistry, schema_registry_url: str, topic: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    value = {"id": 7, "note": "first"}
    ours = RecordSerializer(registry).serialize([source_record(topic, value, ORDER_V1)])[0]
    assert ours.value is not None

    theirs = AvroDeserializer(client)(ours.value, SerializationContext(topic, MessageField.VALUE))
    confluent_bytes = AvroSerializer(client, ORDER_V1_TEXT)(
        {"id": 8, "note": "second"}, SerializationContext(topic, MessageField.VALUE)
    )
    assert confluent_bytes is not None
    decoded = RecordDeserializer(registry).deserialize(
        [ConsumedRecord(topic, 0, 0, None, confluent_bytes)]
    )

    assert theirs == value
    assert decoded[0].value == {"id": 8, "note": "second"}
    assert registry.subjects().count(f"{topic}-value") == 1


def test_registering_again_returns_the_same_id_and_new_versions_are_listed(
    registry: ConfluentRegistry, topic: str
) -> None:
    subject = f"{topic}-value"
    first = registry.register(subject, AvroSchema(ORDER_V1))
    fresh = ConfluentRegistry(registry.settings)  # no cache: asks the registry

    again = fresh.register(subject, AvroSchema(ORDER_V1))
    second = fresh.register(subject, AvroSchema(ORDER_V2_COMPATIBLE))

    assert again == first != second
    versions = fresh.versions(subject)
    assert [(v.version, v.schema_id) for v in versions] == [(1, first), (2, second)]
    assert fresh.schema_by_id(second) == AvroSchema(ORDER_V2_COMPATIBLE)
    assert fresh.versions(f"{topic}-nothing") == []


def test_a_breaking_schema_stops_with_the_registrys_messages_and_registers_nothing(
    registry: ConfluentRegistry, topic: str
) -> None:
    subject = f"{topic}-value"
    registry.register(subject, AvroSchema(ORDER_V1))

    with pytest.raises(SchemaCompatibilityError) as raised:
        registry.register(subject, AvroSchema(ORDER_V2_BREAKING))

    error = raised.value
    assert error.subject == subject
    assert error.level == "BACKWARD"
    assert any("amount" in problem for problem in error.problems)
    assert "amount" in str(error)
    assert [v.version for v in registry.versions(subject)] == [1]
    assert registry.check(subject, AvroSchema(ORDER_V2_COMPATIBLE)) == []


def test_the_run_files_level_applies_to_new_subjects_and_not_to_the_registry(
    registry: ConfluentRegistry, topic: str
) -> None:
    before = registry.compatibility()
    registry.set_compatibility("FULL")
    subject = f"{topic}-value"

    registry.register(subject, AvroSchema(ORDER_V1))

    other = ConfluentRegistry(registry.settings)
    assert other.compatibility(subject) == "FULL"
    assert other.compatibility() == before
    # FULL refuses a new field without a default in either direction.
    with pytest.raises(SchemaCompatibilityError):
        registry.register(subject, AvroSchema(ORDER_V2_BREAKING))


def test_an_unreachable_registry_is_retriable_and_its_password_is_never_shown() -> None:
    settings = SchemaRegistrySettings(
        url="http://reader:s3cret@127.0.0.1:9", timeout_s=1, retries=0
    )
    registry = ConfluentRegistry(settings)

    with pytest.raises(RetriableError) as raised:
        registry.set_compatibility("BACKWARD")

    text = str(raised.value)
    assert "cannot reach the schema registry at http://***@127.0.0.1:9" in text
    assert "s3cret" not in text and "s3cret" not in repr(registry)
