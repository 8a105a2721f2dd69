"""Avro values with a schema per event type (``value_format: avro``).

``schemas`` maps each event type to an Avro record schema (a file, or inline). The JSON payload
of an event of that type becomes the record value: JSON has no decimals, instants or dates, so
the text forms ``outbox.publish`` writes (``"12.50"``, ISO-8601) are read into the schema's
logical types. A payload that does not fit — a missing field without a default, a field the
schema does not have, a wrong type — is a ``RecordError`` naming the event and its type, never
a silently trimmed value.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from liberate.errors import LiberateError, RecordError
from liberate.schema.avro import AvroSchema

SchemaSource = str | dict[str, Any]

_NAMED = ("record", "error", "enum", "fixed")


def load_schema(source: SchemaSource) -> AvroSchema:
    """The record schema of ``source``: an inline schema (a mapping, or JSON text starting
    with ``{``) or the path of an ``.avsc`` file. ``ValueError`` says what is wrong."""
    raw: Any = source
    if isinstance(source, str):
        text = source.strip()
        if not text.startswith("{"):
            path = Path(text).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"cannot read schema file {path}: {exc.strerror}") from exc
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"the schema is not JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ValueError("the schema must be an Avro record ({\"type\": \"record\", ...})")
    schema = AvroSchema(raw)
    try:
        schema.parsed  # noqa: B018 - parsing is the validation
    except LiberateError as exc:
        raise ValueError(exc.message) from exc
    return schema


class PayloadSchemas:
    """The value schema of each event type, and the Avro value of a payload."""

    def __init__(self, schemas: Mapping[str, AvroSchema]) -> None:
        self.schemas = dict(schemas)
        self._named: dict[str, dict[str, Any]] = {}
        for schema in self.schemas.values():
            _collect_named(schema.schema, None, self._named)

    def value_of(
        self, event_id: str, event_type: str | None, payload: str | None
    ) -> tuple[dict[str, Any], AvroSchema]:
        """The record value of ``payload`` (JSON text) under the schema of ``event_type``."""
        what = f"outbox event {event_id} (type {event_type})"
        schema = self.schemas.get(event_type or "")
        if schema is None:
            known = ", ".join(sorted(self.schemas)) or "none"
            raise RecordError(
                f"{what} has no Avro schema: value_format avro needs one per event type "
                f"(schemas has {known})",
                origin=f"outbox event {event_id}",
                hint=f"add {event_type!r} to schemas:, or set dead_letter_topic to set such "
                "events aside",
            )
        if payload is None:
            raise RecordError(
                f"{what} has a null payload, which no Avro record holds",
                origin=f"outbox event {event_id}",
                hint="publish a payload, or set tombstone_on_empty_payload: true to make a "
                "null payload a tombstone",
            )
        try:
            datum = json.loads(payload)
            value = self._convert(datum, schema.schema, schema.schema.get("namespace"), "")
            schema.writer(bytearray(), value)
        except (ValueError, RecordError) as exc:
            reason = exc.message if isinstance(exc, RecordError) else str(exc)
            raise RecordError(
                f"the payload of {what} does not match its Avro schema "
                f"{schema.name}: {reason}",
                origin=f"outbox event {event_id}",
                hint="fix the publisher or the schema (schemas:), or set dead_letter_topic to "
                "set such events aside",
            ) from exc
        assert isinstance(value, dict)
        return value, schema

    def _convert(self, value: Any, node: Any, namespace: str | None, path: str) -> Any:
        """``value`` (parsed JSON) made Avro-ready for ``node``; ValueError where it cannot."""
        if value is None:
            return None
        if isinstance(node, str):
            named = self._named.get(node) or self._named.get(f"{namespace}.{node}")
            return value if named is None else self._convert(value, named, namespace, path)
        if isinstance(node, list):
            branches = [b for b in node if b != "null"]
            if len(branches) == 1:
                return self._convert(value, branches[0], namespace, path)
            return value  # several branches: the writer picks the one the value fits
        kind = node.get("type")
        logical = node.get("logicalType")
        if logical is not None:
            return _logical(value, logical, node, path)
        if kind == "record" or kind == "error":
            return self._record(value, node, namespace, path)
        if kind == "array" and isinstance(value, list):
            return [self._convert(v, node["items"], namespace, f"{path}[{i}]")
                    for i, v in enumerate(value)]
        if kind == "map" and isinstance(value, Mapping):
            return {k: self._convert(v, node["values"], namespace, f"{path}.{k}")
                    for k, v in value.items()}
        if isinstance(kind, str | list | dict) and kind not in ("enum", "fixed", "array", "map"):
            return self._convert(value, kind, namespace, path)
        return value

    def _record(
        self, value: Any, node: dict[str, Any], namespace: str | None, path: str
    ) -> dict[str, Any]:
        where = path or "the payload"
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} is a JSON {type(value).__name__}, not an object")
        namespace = node.get("namespace", namespace)
        fields = node.get("fields", [])
        names = {f["name"] for f in fields}
        extra = sorted(set(value) - names)
        if extra:
            raise ValueError(f"{where} has field(s) {', '.join(extra)} the schema does not have")
        result: dict[str, Any] = {}
        for field in fields:
            name = field["name"]
            inner = f"{path}.{name}" if path else name
            if name not in value:
                if "default" not in field:
                    raise ValueError(f"{inner} is missing and has no default")
                result[name] = field["default"]
                continue
            result[name] = self._convert(value[name], field["type"], namespace, inner)
        return result


def _logical(value: Any, logical: str, node: Mapping[str, Any], path: str) -> Any:
    try:
        if logical == "decimal" and isinstance(value, str | int | float):
            number = Decimal(str(value))
            quantum = Decimal(1).scaleb(-int(node.get("scale", 0)))
            exact = number.quantize(quantum)
            return exact if exact == number else number
        if not isinstance(value, str):
            return value
        if logical in ("timestamp-millis", "timestamp-micros"):
            instant = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)
        if logical in ("local-timestamp-millis", "local-timestamp-micros"):
            return dt.datetime.fromisoformat(value).replace(tzinfo=None)
        if logical == "date":
            return dt.date.fromisoformat(value)
        if logical in ("time-millis", "time-micros"):
            return dt.time.fromisoformat(value)
    except (ValueError, InvalidOperation) as exc:
        raise ValueError(f"{path or 'the payload'}: {value!r} is not a {logical}") from exc
    return value


def _collect_named(node: Any, namespace: str | None, into: dict[str, dict[str, Any]]) -> None:
    if isinstance(node, list):
        for branch in node:
            _collect_named(branch, namespace, into)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in _NAMED and isinstance(node.get("name"), str):
        name: str = node["name"]
        namespace = node.get("namespace", namespace)
        full = name if "." in name or not namespace else f"{namespace}.{name}"
        into[full] = node
        into.setdefault(name, node)
    for field in node.get("fields", []):
        _collect_named(field.get("type"), namespace, into)
    for key in ("items", "values"):
        if key in node:
            _collect_named(node[key], namespace, into)
    if isinstance(kind, dict | list):
        _collect_named(kind, namespace, into)
