"""The bytes fastavro writes for a datum, and the bytes liberate's compiled writer writes."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from liberate.schema.avro import AvroSchema


def fastavro_bytes(schema: AvroSchema, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema.schema), datum)
    return buf.getvalue()


def compiled_bytes(schema: AvroSchema, datum: Any) -> bytes:
    out = bytearray()
    schema.writer(out, datum)
    return bytes(out)
