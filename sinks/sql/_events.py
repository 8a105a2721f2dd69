"""What a record asks of the target table: the event shapes, read without configuration.

- an **entity event** (the value is the row record) writes the value;
- a **Debezium envelope** (the value record has ``before``, ``after`` and ``op`` fields)
  writes ``after`` for ops ``c``/``r``/``u`` and deletes by key for ``d``; ``t`` truncates the
  table when ``truncate_enabled`` (else it changes nothing); ``m`` (message) changes nothing.
  The envelope's optional ``unchanged`` field (``liberate.envelope.UNCHANGED_FIELD``) names
  the ``after`` fields whose value was not sent (PostgreSQL unchanged TOAST values): their
  null means "keep the current value", and the sink leaves those columns as they are;
- a **tombstone** (null value) deletes by key.

Deletes become no-ops when ``delete_enabled`` is off, and always with ``pk_mode: none``
(append-only). The key of a change follows ``pk_mode`` (see ``_shape``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any, Generic, TypeVar

from liberate.errors import FatalError, LiberateError, RecordError
from liberate.records import SinkRecord
from liberate.schema.avro import AvroSchema
from sinks.sql._shape import column_name

log = logging.getLogger(__name__)

ENVELOPE_FIELDS = frozenset({"before", "after", "op"})
UNCHANGED = "unchanged"


class Action(Enum):
    """What one record does to its target table."""

    WRITE = "write"
    DELETE = "delete"
    TRUNCATE = "truncate"
    SKIP = "skip"


@dataclass(slots=True)
class Change:
    """One record read as a row change.

    ``row``/``row_schema`` are set for writes; ``key``/``key_schema`` hold the key a delete
    matches (and, with ``pk_mode: record_key``, the key columns a write takes from the record
    key); ``identity`` is the key as a hashable tuple, for reduction and parking (empty when
    the record has no key). ``unchanged`` names the row fields to leave as they are.
    Schemas are the reader's canonical instances: equal schemas are the same object.
    """

    record: SinkRecord
    action: Action
    key: Mapping[str, Any] | None = None
    key_schema: AvroSchema | None = None
    row: Mapping[str, Any] | None = None
    row_schema: AvroSchema | None = None
    identity: tuple[Hashable, ...] = ()
    unchanged: frozenset[str] | None = None


def origin(record: SinkRecord) -> str:
    """Where a record comes from, as shown in errors: ``topic[partition]@offset``."""
    return f"{record.topic}[{record.partition}]@{record.offset}"


Getter = Callable[[Mapping[str, Any]], tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class _ValueFacts:
    row_schema: AvroSchema  # the row record: the value itself, or the envelope's after/before
    envelope: bool
    has_unchanged: bool
    pk_schema: AvroSchema | None  # pk_mode record_value: the pk fields of the row, as a record
    pk_getter: Getter | None


@dataclass(frozen=True, slots=True)
class _KeyFacts:
    schema: AvroSchema  # canonical instance of the key schema
    fields: Getter  # the key's values as a tuple, hashable (see ``_key_facts``)


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

    def __init__(
        self,
        *,
        delete_enabled: bool,
        truncate_enabled: bool = False,
        pk_mode: str = "record_key",
        pk_fields: Sequence[str] = (),
    ) -> None:
        self._delete_enabled = delete_enabled and pk_mode != "none"
        self._truncate_enabled = truncate_enabled
        self._pk_mode = pk_mode
        self._pk_fields = tuple(pk_fields)
        self._rows: dict[AvroSchema, AvroSchema] = {}
        self._values = _SchemaFacts(self._value_facts)
        self._keys = _SchemaFacts(_key_facts)
        self._pk_keys = _SchemaFacts(self._pk_key_facts)
        self._truncates_ignored: set[str] = set()
        # The schemas of the previous record: a batch is mostly runs of one schema.
        self._last_value: tuple[AvroSchema | None, _ValueFacts | None] = (None, None)
        self._last_key: tuple[AvroSchema | None, _KeyFacts | None] = (None, None)

    def read(self, record: SinkRecord) -> Change:
        """The change ``record`` asks for; ``RecordError`` when it is unusable."""
        value = record.value
        if value is None:
            return self._delete(record, "tombstone", None, None)
        value_schema = record.value_schema
        last_schema, facts = self._last_value
        if value_schema is not last_schema or facts is None:
            if value_schema is None:
                raise RecordError(
                    f"record {origin(record)} has a value but no value schema",
                    origin=origin(record),
                    hint="the SQL sink needs schematized (Avro) values",
                )
            facts = self._values(value_schema)
            self._last_value = (value_schema, facts)
        if not facts.envelope:
            return self._write(record, value, facts, None)
        op = value.get("op")
        if op in ("c", "r", "u"):
            after = value.get("after")
            if after is None:
                raise RecordError(
                    f"change event {origin(record)} (op {op}) has no 'after' row",
                    origin=origin(record),
                )
            unchanged = value.get(UNCHANGED) if facts.has_unchanged else None
            return self._write(record, after, facts, frozenset(unchanged) if unchanged else None)
        if op == "d":
            return self._delete(record, "delete event", value.get("before"), facts)
        if op == "t":
            return self._truncate(record)
        if op == "m":
            return Change(record, Action.SKIP)
        raise RecordError(
            f"change event {origin(record)} has unknown op {op!r}",
            origin=origin(record),
            hint="expected one of the Debezium op codes c, r, u, d, t, m",
        )

    def identity(self, record: SinkRecord) -> tuple[Hashable, ...]:
        """The key of ``record`` as far as it can be read (to park the later records of a
        record that cannot be read); empty when it cannot."""
        try:
            if self._pk_mode == "record_key" and record.key is not None and record.key_schema:
                keys = self._keys(record.key_schema)
                return _identity_of(record, record.key, keys.fields, "key")
            value = record.value
            if self._pk_mode == "record_value" and value is not None and record.value_schema:
                facts = self._values(record.value_schema)
                row = value.get("after") or value.get("before") if facts.envelope else value
                if row is not None and facts.pk_getter is not None:
                    return _hashable(facts.pk_getter(row))
        except (LiberateError, LookupError, TypeError, AttributeError):
            pass
        return ()

    def _write(
        self,
        record: SinkRecord,
        row: Mapping[str, Any],
        facts: _ValueFacts,
        unchanged: frozenset[str] | None,
    ) -> Change:
        if self._pk_mode == "record_value":
            if facts.pk_getter is None:
                raise FatalError(
                    f"records of {record.topic} (schema {facts.row_schema.name}) lack some of "
                    f"the pk_fields {', '.join(self._pk_fields)}",
                    hint="pk_fields names value fields (columns) every record of the topic has",
                )
            identity = _identity_of(record, row, facts.pk_getter, "value")
            return Change(record, Action.WRITE, None, None, row, facts.row_schema, identity,
                          unchanged)
        key = record.key
        key_schema = record.key_schema
        if self._pk_mode == "none" or key is None or key_schema is None:
            return Change(record, Action.WRITE, None, None, row, facts.row_schema, (), unchanged)
        last_schema, keys = self._last_key
        if key_schema is not last_schema or keys is None:
            keys = self._keys(key_schema)
            self._last_key = (key_schema, keys)
        return Change(
            record, Action.WRITE, key, keys.schema, row, facts.row_schema,
            _identity_of(record, key, keys.fields, "key"), unchanged,
        )

    def _delete(
        self,
        record: SinkRecord,
        what: str,
        before: Mapping[str, Any] | None,
        facts: _ValueFacts | None,
    ) -> Change:
        if not self._delete_enabled:
            return Change(record, Action.SKIP)
        if self._pk_mode == "record_value":
            return self._delete_by_value_key(record, what, before, facts)
        if record.key is None or record.key_schema is None:
            if record.value is None:
                return Change(record, Action.SKIP)  # a null key and value says nothing
            raise RecordError(
                f"{what} {origin(record)} has no key, so no row to delete",
                origin=origin(record),
                hint="deletes need the primary key as the record key",
            )
        keys = self._keys(record.key_schema)
        return Change(
            record, Action.DELETE, record.key, keys.schema,
            identity=_identity_of(record, record.key, keys.fields, "key"),
        )

    def _delete_by_value_key(
        self,
        record: SinkRecord,
        what: str,
        before: Mapping[str, Any] | None,
        facts: _ValueFacts | None,
    ) -> Change:
        """pk_mode record_value: the pk fields come from ``before``, else from the key."""
        if before is not None and facts is not None and facts.pk_getter is not None:
            assert facts.pk_schema is not None
            try:
                identity = facts.pk_getter(before)
            except KeyError:
                identity = None
            if identity is not None and None not in identity:
                return Change(record, Action.DELETE, before, facts.pk_schema,
                              identity=_hashable(identity))
        if record.key is not None and record.key_schema is not None:
            keys = self._pk_keys(record.key_schema)
            if keys is not None:
                return Change(record, Action.DELETE, record.key, keys.schema,
                              identity=_identity_of(record, record.key, keys.fields, "key"))
        if record.value is None:
            return Change(record, Action.SKIP)  # a tombstone after a delete event: done
        raise RecordError(
            f"{what} {origin(record)} carries the pk_fields neither in 'before' nor in its key",
            origin=origin(record),
            hint="with pk_mode record_value, deletes need the pk_fields in the before image "
            "(REPLICA IDENTITY FULL) or in the record key",
        )

    def _truncate(self, record: SinkRecord) -> Change:
        if self._truncate_enabled:
            return Change(record, Action.TRUNCATE)
        if record.topic not in self._truncates_ignored:
            self._truncates_ignored.add(record.topic)
            log.warning(
                "truncate event %s ignored (set truncate_enabled: true to empty the table); "
                "later truncates of %s are ignored silently", origin(record), record.topic,
            )
        return Change(record, Action.SKIP)

    def _value_facts(self, schema: AvroSchema) -> _ValueFacts:
        row = envelope_row_schema(schema)
        envelope = row is not None
        row = schema if row is None else self._rows.setdefault(row, row)
        has_unchanged = envelope and any(f.get("name") == UNCHANGED for f in schema.fields)
        pk_schema: AvroSchema | None = None
        pk_getter: Getter | None = None
        if self._pk_mode == "record_value":
            by_column = {column_name(f): f for f in row.fields}
            specs = [by_column[c] for c in self._pk_fields if c in by_column]
            if len(specs) == len(self._pk_fields):
                pk_schema = AvroSchema({"type": "record", "name": "Key", "fields": specs})
                pk_getter = _key_facts(pk_schema).fields
        return _ValueFacts(row, envelope, has_unchanged, pk_schema, pk_getter)

    def _pk_key_facts(self, schema: AvroSchema) -> _KeyFacts | None:
        by_column = {column_name(f): f for f in schema.fields}
        specs = [by_column[c] for c in self._pk_fields if c in by_column]
        if len(specs) != len(self._pk_fields):
            return None
        return _key_facts(AvroSchema({"type": "record", "name": "Key", "fields": specs}))


def _key_facts(schema: AvroSchema) -> _KeyFacts:
    getter = _getter([str(f["name"]) for f in schema.fields])
    if all(_scalar(f["type"]) for f in schema.fields):
        return _KeyFacts(schema, getter)
    return _KeyFacts(schema, lambda key: _hashable(getter(key)))


def _scalar(field_type: Any) -> bool:
    """Whether values of an Avro type are hashable (no map, array or record in it)."""
    if isinstance(field_type, list):
        return all(_scalar(t) for t in field_type)
    if isinstance(field_type, dict):
        return field_type.get("type") not in ("map", "array", "record")
    return True


def _getter(names: Sequence[str]) -> Getter:
    if len(names) == 1:
        (only,) = names
        return lambda mapping: (mapping[only],)
    get: Getter = itemgetter(*names)
    return get


def _identity_of(
    record: SinkRecord, mapping: Mapping[str, Any], fields: Getter, part: str
) -> tuple[Hashable, ...]:
    try:
        values: tuple[Hashable, ...] = fields(mapping)
    except KeyError as exc:
        raise RecordError(
            f"{part} of record {origin(record)} lacks field {exc.args[0]!r} of its "
            f"{'key' if part == 'key' else 'pk_fields'}",
            origin=origin(record),
        ) from exc
    return values


def _hashable(values: tuple[Any, ...]) -> tuple[Hashable, ...]:
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
