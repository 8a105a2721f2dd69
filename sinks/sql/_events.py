"""What a record asks of the target table: the event shapes, read without configuration.

- an **entity event** (the value is the row record) upserts the value;
- a **Debezium envelope** (the value record has ``before``, ``after`` and ``op`` fields)
  upserts ``after`` for ops ``c``/``r``/``u`` and deletes by key for ``d``; ``t`` (truncate)
  and ``m`` (message) change no row;
- a **tombstone** (null value) deletes by key.

Deletes become no-ops when ``delete_enabled`` is off. The record key is the primary key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any, Generic, TypeVar

from liberate.errors import RecordError
from liberate.records import SinkRecord
from liberate.schema.avro import AvroSchema

log = logging.getLogger(__name__)

ENVELOPE_FIELDS = frozenset({"before", "after", "op"})


class Action(Enum):
    """What one record does to its target table."""

    WRITE = "write"
    DELETE = "delete"
    SKIP = "skip"


@dataclass(slots=True)
class Change:
    """One record read as a row change.

    ``row``/``row_schema`` are set for writes; ``key`` is the record key (None only for a
    keyless write in insert mode); ``identity`` is the key as a hashable tuple, for reduction.
    Schemas are the reader's canonical instances: equal schemas are the same object.
    """

    record: SinkRecord
    action: Action
    key: Mapping[str, Any] | None = None
    key_schema: AvroSchema | None = None
    row: Mapping[str, Any] | None = None
    row_schema: AvroSchema | None = None
    identity: tuple[Hashable, ...] = ()


def origin(record: SinkRecord) -> str:
    """Where a record comes from, as shown in errors: ``topic[partition]@offset``."""
    return f"{record.topic}[{record.partition}]@{record.offset}"


@dataclass(frozen=True, slots=True)
class _ValueFacts:
    row_schema: AvroSchema  # the row record: the value itself, or the envelope's after/before
    envelope: bool


@dataclass(frozen=True, slots=True)
class _KeyFacts:
    schema: AvroSchema  # canonical instance of the key schema
    fields: Callable[[Mapping[str, Any]], tuple[Any, ...]]


T = TypeVar("T")


class _SchemaFacts(Generic[T]):
    """Facts derived once per schema, found by object identity first (a decoder shares one
    schema object between its records), then by content."""

    _MAX_IDENTITIES = 10_000  # a decoder that makes a schema object per record must not leak

    def __init__(self, derive: Callable[[AvroSchema], T]) -> None:
        self._derive = derive
        self._by_id: dict[int, tuple[AvroSchema, T]] = {}
        self._by_content: dict[AvroSchema, T] = {}

    def __call__(self, schema: AvroSchema) -> T:
        hit = self._by_id.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        facts = self._by_content.get(schema)
        if facts is None:
            facts = self._by_content[schema] = self._derive(schema)
        if len(self._by_id) >= self._MAX_IDENTITIES:
            self._by_id.clear()
        self._by_id[id(schema)] = (schema, facts)  # holding the schema keeps its id unique
        return facts


class EventReader:
    """Reads records as changes; remembers what each schema is (entity, envelope, key)."""

    def __init__(self, *, delete_enabled: bool) -> None:
        self._delete_enabled = delete_enabled
        self._rows: dict[AvroSchema, AvroSchema] = {}
        self._values = _SchemaFacts(self._value_facts)
        self._keys = _SchemaFacts(_key_facts)

    def read(self, record: SinkRecord) -> Change:
        """The change ``record`` asks for; ``RecordError`` when it is unusable."""
        value = record.value
        if value is None:
            return self._delete(record, "tombstone")
        if record.value_schema is None:
            raise RecordError(
                f"record {origin(record)} has a value but no value schema",
                origin=origin(record),
                hint="the SQL sink needs schematized (Avro) values",
            )
        facts = self._values(record.value_schema)
        if not facts.envelope:
            return self._write(record, value, facts.row_schema)
        op = value.get("op")
        if op in ("c", "r", "u"):
            after = value.get("after")
            if after is None:
                raise RecordError(
                    f"change event {origin(record)} (op {op}) has no 'after' row",
                    origin=origin(record),
                )
            return self._write(record, after, facts.row_schema)
        if op == "d":
            return self._delete(record, "delete event")
        if op == "t":
            log.warning(
                "truncate event %s ignored: the SQL sink does not truncate tables yet",
                origin(record),
            )
            return Change(record, Action.SKIP)
        if op == "m":
            return Change(record, Action.SKIP)
        raise RecordError(
            f"change event {origin(record)} has unknown op {op!r}",
            origin=origin(record),
            hint="expected one of the Debezium op codes c, r, u, d, t, m",
        )

    def _write(
        self, record: SinkRecord, row: Mapping[str, Any], row_schema: AvroSchema
    ) -> Change:
        key = record.key
        if key is None or record.key_schema is None:
            return Change(record, Action.WRITE, key, None, row, row_schema)
        facts = self._keys(record.key_schema)
        return Change(
            record, Action.WRITE, key, facts.schema, row, row_schema, _identity(record, facts)
        )

    def _delete(self, record: SinkRecord, what: str) -> Change:
        if not self._delete_enabled:
            return Change(record, Action.SKIP)
        if record.key is None or record.key_schema is None:
            if record.value is None:
                return Change(record, Action.SKIP)  # a null key and value says nothing
            raise RecordError(
                f"{what} {origin(record)} has no key, so no row to delete",
                origin=origin(record),
                hint="deletes need the primary key as the record key",
            )
        facts = self._keys(record.key_schema)
        return Change(
            record, Action.DELETE, record.key, facts.schema, identity=_identity(record, facts)
        )

    def _value_facts(self, schema: AvroSchema) -> _ValueFacts:
        row = envelope_row_schema(schema)
        if row is None:
            return _ValueFacts(schema, envelope=False)
        return _ValueFacts(self._rows.setdefault(row, row), envelope=True)


def _key_facts(schema: AvroSchema) -> _KeyFacts:
    names = [str(f["name"]) for f in schema.fields]
    if len(names) == 1:
        (only,) = names
        return _KeyFacts(schema, lambda key: (key[only],))
    return _KeyFacts(schema, itemgetter(*names))


def _identity(record: SinkRecord, facts: _KeyFacts) -> tuple[Hashable, ...]:
    assert record.key is not None
    try:
        values = facts.fields(record.key)
    except KeyError as exc:
        raise RecordError(
            f"key of record {origin(record)} lacks field {exc.args[0]!r} of its key schema",
            origin=origin(record),
        ) from exc
    try:
        hash(values)
    except TypeError:
        return (repr(values),)  # a key holding a map or a list: compare it by its text
    return values


def envelope_row_schema(value_schema: AvroSchema) -> AvroSchema | None:
    """The row record of a Debezium envelope schema, or None when it is not an envelope.

    An envelope is a record with ``before``, ``after`` and ``op`` fields whose ``before`` or
    ``after`` holds the row record (the other one may refer to it by name).
    """
    fields = {f.get("name"): f for f in value_schema.fields}
    if not fields.keys() >= ENVELOPE_FIELDS:
        return None
    for name in ("after", "before"):
        branches = fields[name].get("type")
        for branch in branches if isinstance(branches, list) else [branches]:
            if isinstance(branch, dict) and branch.get("type") == "record":
                return AvroSchema(branch)
    return None


