"""Avro schemas as liberate carries them, and the Confluent wire format.

Wire format (contract): byte ``0x00``, the 4-byte big-endian schema id, then the Avro binary
encoding of the datum.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import fastavro

from liberate.errors import FatalError, LiberateError, RecordError
from liberate.schema._avro_writer import FieldEncodeError, compile_writer

MAGIC_BYTE = 0
_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_HEADER = struct.Struct(">bI")


class AvroSchema:
    """An immutable Avro schema with its canonical text, fingerprint and parsed form.

    Sources build one per table and reuse it for every record, so the runtime can cache the
    registry id by identity. Equality follows the canonical JSON text.
    """

    __slots__ = ("__dict__", "schema")

    def __init__(self, schema: Mapping[str, Any] | str | list[Any]) -> None:
        """``schema`` as parsed JSON, as JSON text, or as a bare primitive name (``"long"``)."""
        if isinstance(schema, str):
            self.schema: Any = schema if schema in _PRIMITIVES else json.loads(schema)
        else:
            self.schema = schema

    @cached_property
    def canonical(self) -> str:
        """JSON text with sorted keys and no whitespace: the identity used by the registry."""
        return json.dumps(self.schema, sort_keys=True, separators=(",", ":"))

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()

    @cached_property
    def parsed(self) -> Any:
        """The fastavro-parsed schema (named types resolved), ready for fastavro's reader.

        Parsed with fastavro's hint, so fastavro does not parse it again on every record
        (without it ``schemaless_reader`` re-parses per call: half the speed). Invalid
        schemas raise ``FatalError``.
        """
        return self._parse(None)

    @cached_property
    def writer(self) -> Callable[[bytearray, Any], None]:
        """Appends the Avro binary encoding of a datum to a bytearray: the encoding hot path.

        Compiled once per schema (see ``_avro_writer``), with fastavro as the fallback for
        shapes the compiled writer leaves out. A value that does not fit raises
        ``RecordError`` naming the field.
        """
        named: dict[str, Any] = {}
        compiled = compile_writer(self._parse(named), named, self._encode_error)
        return compiled if compiled is not None else self._fastavro_write

    def _parse(self, named: dict[str, Any] | None) -> Any:
        try:
            if named is None:
                return fastavro.parse_schema(self.schema)
            return fastavro.parse_schema(self.schema, named, _write_hint=False)
        except Exception as exc:
            # fastavro reports invalid schemas with several exception types.
            raise FatalError(
                f"invalid Avro schema {self.name or self.canonical[:60]}: {exc}",
                hint="a source built a schema fastavro rejects; report it with the table DDL",
            ) from exc

    def _encode_error(self, exc: FieldEncodeError) -> RecordError:
        where = f"field '{exc.where}': " if exc.path else ""
        return RecordError(
            f"value does not fit Avro schema {self.name or self.canonical[:60]}: "
            f"{where}{exc.reason}",
            hint="check the column types against docs/types.md",
        )

    def _fastavro_write(self, out: bytearray, datum: Any) -> None:
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self.parsed, datum)
        except (ValueError, TypeError, OverflowError, AttributeError, KeyError) as exc:
            raise self._encode_error(FieldEncodeError([], str(exc))) from exc
        out += buf.getvalue()

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


def wire_header(schema_id: int) -> bytes:
    """The 5 bytes every wire-format message of ``schema_id`` starts with."""
    try:
        return _HEADER.pack(MAGIC_BYTE, schema_id)
    except struct.error as exc:
        raise FatalError(f"schema id {schema_id} does not fit the wire format") from exc


def encode(schema_id: int, schema: AvroSchema, datum: Any) -> bytes:
    """Encode ``datum`` in the Confluent wire format; ``RecordError`` names a bad field."""
    out = bytearray(wire_header(schema_id))
    schema.writer(out, datum)
    return bytes(out)


def schema_id_of(data: bytes) -> int:
    """The schema id of a wire-format message."""
    if len(data) < _HEADER.size or data[0] != MAGIC_BYTE:
        raise RecordError("not a Confluent wire-format message (magic byte 0 missing)")
    return int(_HEADER.unpack_from(data)[1])


def decode(data: bytes, schema: AvroSchema) -> Any:
    """Decode a wire-format message whose schema id has already been resolved to ``schema``.

    Bytes that do not decode with ``schema`` raise ``RecordError``.
    """
    buf = io.BytesIO(data)
    buf.seek(_HEADER.size)
    try:
        return fastavro.schemaless_reader(buf, schema.parsed, None)
    except LiberateError:
        raise
    except Exception as exc:
        # Stored bytes are untrusted input: whatever the decoder trips on is one bad record.
        raise RecordError(
            f"message does not decode with Avro schema {schema.name or 'of its id'}: "
            f"{type(exc).__name__}: {exc}",
            hint="the record was written with another schema than its id names, or is corrupt",
        ) from exc
