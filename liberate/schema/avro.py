"""Avro schemas as liberate carries them, and the Confluent wire format.

Wire format (contract): byte ``0x00``, the 4-byte big-endian schema id, then the Avro binary
encoding of the datum.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import fastavro

from liberate.errors import RecordError

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")


class AvroSchema:
    """An immutable Avro schema with its canonical text, fingerprint and parsed form.

    Sources build one per table and reuse it for every record, so the runtime can cache the
    registry id by identity. Equality follows the canonical JSON text.
    """

    __slots__ = ("__dict__", "schema")

    def __init__(self, schema: Mapping[str, Any] | str | list[Any]) -> None:
        self.schema: Any = json.loads(schema) if isinstance(schema, str) else schema

    @cached_property
    def canonical(self) -> str:
        """JSON text with sorted keys and no whitespace: the identity used by the registry."""
        return json.dumps(self.schema, sort_keys=True, separators=(",", ":"))

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()

    @cached_property
    def parsed(self) -> Any:
        """The fastavro-parsed schema (named types resolved), ready for encoding."""
        return fastavro.parse_schema(self.schema, _write_hint=False)

    @property
    def name(self) -> str | None:
        if isinstance(self.schema, dict):
            name = self.schema.get("name")
            namespace = self.schema.get("namespace")
            if name and namespace and "." not in name:
                return f"{namespace}.{name}"
            return name if isinstance(name, str) else None
        return None

    @property
    def fields(self) -> list[dict[str, Any]]:
        if isinstance(self.schema, dict):
            return list(self.schema.get("fields", []))
        return []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AvroSchema) and self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)

    def __repr__(self) -> str:
        return f"AvroSchema({self.name or self.canonical[:60]})"


def encode(schema_id: int, schema: AvroSchema, datum: Any) -> bytes:
    """Encode ``datum`` in the Confluent wire format."""
    buf = io.BytesIO()
    buf.write(_HEADER.pack(MAGIC_BYTE, schema_id))
    try:
        fastavro.schemaless_writer(buf, schema.parsed, datum)
    except (ValueError, TypeError, OverflowError, AttributeError, KeyError) as exc:
        raise RecordError(
            f"value does not fit Avro schema {schema.name}: {exc}",
            hint="check the column types against docs/types.md",
        ) from exc
    return buf.getvalue()


def schema_id_of(data: bytes) -> int:
    """The schema id of a wire-format message."""
    if len(data) < _HEADER.size or data[0] != MAGIC_BYTE:
        raise RecordError("not a Confluent wire-format message (magic byte 0 missing)")
    return int(_HEADER.unpack_from(data)[1])


def decode(data: bytes, schema: AvroSchema) -> Any:
    """Decode a wire-format message whose schema id has already been resolved to ``schema``."""
    buf = io.BytesIO(data)
    buf.seek(_HEADER.size)
    return fastavro.schemaless_reader(buf, schema.parsed, None)
