"""Per-subject levels from a run file, set on a Confluent-compatible registry through the real
confluent-kafka client (``liberate registry serve`` or LIBERATE_TEST_SCHEMA_REGISTRY_URL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from liberate.config.models import SchemaRegistrySettings
from liberate.errors import SchemaCompatibilityError
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import SubjectLevels
from liberate.schema.confluent import ConfluentRegistry

pytestmark = pytest.mark.integration


def order(*extra: dict[str, Any]) -> AvroSchema:
    return AvroSchema({"type": "record", "name": "Value", "namespace": "shop.orders",
                       "fields": [{"name": "id", "type": "long"}, *extra]})


@pytest.fixture
def registry(schema_registry_url: str) -> Iterator[ConfluentRegistry]:
    registry = ConfluentRegistry(SchemaRegistrySettings(url=schema_registry_url))
    yield registry
    registry.close()


def stored_level(url: str, subject: str) -> str:
    client = SchemaRegistryClient({"url": url})
    try:
        return str(client.get_compatibility(subject))
    finally:
        client.close()


def test_a_subject_level_from_the_run_file_is_set_on_the_registry_and_enforced(
    registry: ConfluentRegistry, schema_registry_url: str
) -> None:
    prefix = f"levels{uuid.uuid4().hex[:8]}"
    loose, strict = f"{prefix}.audit-value", f"{prefix}.orders-value"
    registry.configure_levels(
        SubjectLevels("BACKWARD", {f"{prefix}.audit*": "NONE", strict: "FORWARD"})
    )
    breaking = order({"name": "amount", "type": "double"})  # no default: not BACKWARD
    registry.register(loose, order())
    registry.register(loose, breaking)  # NONE accepts it
    assert stored_level(schema_registry_url, loose) == "NONE"

    registry.register(strict, order({"name": "note", "type": "string"}))
    assert stored_level(schema_registry_url, strict) == "FORWARD"
    registry.register(strict, order({"name": "note", "type": "string"},
                                    {"name": "amount", "type": "double"}))  # FORWARD: fine
    with pytest.raises(SchemaCompatibilityError) as refused:
        registry.register(strict, order())  # removes 'note', which old readers need
    assert refused.value.level == "FORWARD"
    assert [v.version for v in registry.versions(strict)] == [1, 2]


def test_a_transitive_level_is_checked_by_the_registry_against_every_version(
    registry: ConfluentRegistry,
) -> None:
    subject = f"levels{uuid.uuid4().hex[:8]}.orders-value"
    registry.configure_levels(SubjectLevels("BACKWARD", {subject: "BACKWARD_TRANSITIVE"}))
    registry.register(subject, order())
    registry.register(subject, order({"name": "note", "type": "string", "default": "-"}))
    # Reads version 2 (it has 'note'), not version 1 (no 'note', and no default now).
    problems = registry.check(subject, order({"name": "note", "type": "string"}))
    assert problems and any("note" in p for p in problems)
