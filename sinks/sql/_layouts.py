"""How the records of one schema map onto one target table: columns, binds, value converters.

A layout is computed once per (table, row schema, key schema) and turns changes into row
tuples in column order: ``rows`` for SQLAlchemy statements, ``copy_rows`` for PostgreSQL's
binary COPY. A conversion that fails raises ``RecordError`` naming the record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from liberate.errors import RecordError
from liberate.schema.avro import AvroSchema
from sinks.sql._events import Change, origin
from sinks.sql._tables import column_name, field_columns
from sinks.sql._values import Binding, CopyField, binding, copy_field

Converter = Callable[[Any], Any]
_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError, AttributeError)


@dataclass(frozen=True, slots=True)
class RowLayout:
    """Rows of one row schema (and key schema) written into one table."""

    table: sa.TableClause  # the target, with the bind type of every written column
    target: sa.Table  # the reflected target
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    copy_fields: tuple[CopyField, ...]  # PostgreSQL only: the binary COPY form of each column
    _key_getter: Callable[[Any], tuple[Any, ...]]
    _row_getter: Callable[[Any], tuple[Any, ...]]
    _converters: tuple[tuple[int, Converter], ...]
    _copy_converters: tuple[tuple[int, Converter], ...]

    def rows(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The row tuples (in ``columns`` order) for SQLAlchemy statements."""
        return _converted(changes, self._values, self._converters)

    def copy_rows(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The row tuples for PostgreSQL's binary COPY (see ``copy_fields``)."""
        return _converted(changes, self._values, self._copy_converters)

    def _values(self, change: Change) -> tuple[Any, ...]:
        return self._key_getter(change.key) + self._row_getter(change.row)


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Keys of one key schema matched against one table's key columns (for deletes)."""

    table: sa.TableClause
    key_columns: tuple[str, ...]
    _getter: Callable[[Any], tuple[Any, ...]]
    _converters: tuple[tuple[int, Converter], ...]

    def keys(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The key tuples (in ``key_columns`` order)."""
        return _converted(changes, self._values, self._converters)

    def _values(self, change: Change) -> tuple[Any, ...]:
        return self._getter(change.key)


def _converted(
    changes: Sequence[Change],
    values_of: Callable[[Change], tuple[Any, ...]],
    converters: tuple[tuple[int, Converter], ...],
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    change: Change | None = None
    try:
        for change in changes:
            values = values_of(change)
            if converters:
                items = list(values)
                for index, convert in converters:
                    if items[index] is not None:
                        items[index] = convert(items[index])
                values = tuple(items)
            out.append(values)
    except _CONVERSION_ERRORS as exc:
        assert change is not None
        raise _conversion_error(change, exc) from exc
    return out


def row_layout(
    target: sa.Table, row_schema: AvroSchema, key_schema: AvroSchema | None, dialect: str
) -> RowLayout:
    """The layout of rows of ``row_schema`` in ``target`` (which has all their columns)."""
    columns = field_columns(row_schema, key_schema)
    bindings = [binding(c.type, target.c[c.column].type, dialect) for c in columns]
    copies = [copy_field(c.type) for c in columns] if dialect == "postgresql" else []
    from_key = [c.field for c in columns if c.from_key]
    from_row = [c.field for c in columns if not c.from_key]
    return RowLayout(
        table=_bind_table(target, [c.column for c in columns], bindings),
        target=target,
        columns=tuple(c.column for c in columns),
        key_columns=tuple(c.column for c in columns if c.key),
        copy_fields=tuple(copies),
        _key_getter=_getter(from_key),
        _row_getter=_getter(from_row),
        _converters=tuple((i, b.convert) for i, b in enumerate(bindings) if b.convert),
        _copy_converters=tuple((i, c.convert) for i, c in enumerate(copies) if c.convert),
    )


def key_layout(target: sa.Table, key_schema: AvroSchema, dialect: str) -> KeyLayout | None:
    """The layout of keys of ``key_schema`` in ``target``; None when a key column is missing."""
    fields = key_schema.fields
    names = [column_name(f) for f in fields]
    if not names or any(name not in target.c for name in names):
        return None
    bindings = [
        binding(f["type"], target.c[n].type, dialect)
        for f, n in zip(fields, names, strict=True)
    ]
    return KeyLayout(
        table=_bind_table(target, names, bindings),
        key_columns=tuple(names),
        _getter=_getter([f["name"] for f in fields]),
        _converters=tuple((i, b.convert) for i, b in enumerate(bindings) if b.convert),
    )


def _bind_table(
    target: sa.Table, columns: Sequence[str], bindings: Sequence[Binding]
) -> sa.TableClause:
    return sa.table(
        target.name,
        *(sa.column(name, b.type) for name, b in zip(columns, bindings, strict=True)),
        schema=target.schema,
    )


def _getter(fields: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    if not fields:
        return lambda _: ()
    if len(fields) == 1:
        (only,) = fields
        return lambda record: (record[only],)
    get: Callable[[Any], tuple[Any, ...]] = itemgetter(*fields)
    return get


def _conversion_error(change: Change, exc: BaseException) -> RecordError:
    record = change.record
    where = origin(record)
    if isinstance(exc, KeyError):
        text = f"record {where} lacks field {exc.args[0]!r} of its schema"
    else:
        text = f"record {where} (key {record.key}) has a value the target cannot take: {exc}"
    return RecordError(text, origin=where, hint="fix the record or the target column type")
