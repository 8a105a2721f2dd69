"""``EncodedRecord``: keys and values Avro-encoded already (by parallel bulk reader workers)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from liberate.records import SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import EncodedRecord, RecordSerializer
from tests.unit.test_serde import KEY, VALUE


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[EmbeddedRegistry]:
    opened = EmbeddedRegistry(tmp_path / "streams.db")
    yield opened
    opened.close()


def _body(schema: AvroSchema, datum: dict[str, Any]) -> bytes:
    out = bytearray()
    schema.writer(out, datum)
    return bytes(out)


def _record(key: Any, value: Any) -> SourceRecord:
    return SourceRecord("shop.orders", key, value, KEY, VALUE, {"table": "orders"}, {"id": 1})


ROW = {"id": 7, "amount": Decimal("12.50"), "note": "fragile"}


def test_encoded_keys_and_values_get_the_wire_header_and_the_same_bytes(
    registry: EmbeddedRegistry,
) -> None:
    serializer = RecordSerializer(registry)
    plain = serializer.serialize([_record({"id": 7}, ROW)])[0]
    key = EncodedRecord(_body(KEY, {"id": 7}), KEY)
    encoded = serializer.serialize([_record(key, EncodedRecord(_body(VALUE, ROW), VALUE))])[0]
    assert (encoded.key, encoded.value) == (plain.key, plain.value)


def test_an_encoded_body_is_passed_through_not_encoded_again(registry: EmbeddedRegistry) -> None:
    # Bytes that are not what the mapping would encode to come out unchanged: proof that the
    # serializer did not decode and re-encode them.
    odd = _body(VALUE, ROW) + b"\x00"
    record = _record({"id": 7}, EncodedRecord(odd, VALUE))
    value = RecordSerializer(registry).serialize([record])[0].value
    assert value is not None and value[5:] == odd


def test_an_encoded_record_of_another_schema_is_encoded_with_the_records_schema(
    registry: EmbeddedRegistry,
) -> None:
    other = AvroSchema(dict(VALUE.schema))  # equal, but not the record's schema object
    serializer = RecordSerializer(registry)
    plain = serializer.serialize([_record({"id": 7}, ROW)])[0]
    # The trailing byte shows whether the body was passed through (it must not be).
    odd = EncodedRecord(_body(other, ROW) + b"\x00", other)
    value = serializer.serialize([_record({"id": 7}, odd)])[0]
    assert value.value == plain.value


def test_an_encoded_record_reads_as_the_record_it_encodes() -> None:
    value = EncodedRecord(_body(VALUE, ROW), VALUE)
    assert dict(value) == ROW
    assert value["note"] == "fragile"
    assert len(value) == 3
    assert "EncodedRecord(" in repr(value)
