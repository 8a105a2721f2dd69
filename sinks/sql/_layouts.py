"""How the records of one shape map onto one target table: columns, binds, value converters.

A layout is computed once per (table, row schema, key schema) and turns changes into row
tuples in column order: ``rows`` for SQLAlchemy statements, ``copy_rows`` for PostgreSQL's
binary COPY. Each is a function generated for the layout (one tuple display per change, no
per-column loop), the lever that made row building cheap. A conversion that fails raises
``RecordError`` naming the record.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from liberate.errors import RecordError
from liberate.schema.avro import AvroSchema
from sinks.sql._events import Change, origin
from sinks.sql._shape import FieldColumn, Origin, column_name
from sinks.sql._values import Binding, CopyField, binding, copy_field

Converter = Callable[[Any], Any]
RowBuilder = Callable[[Sequence[Change]], list[tuple[Any, ...]]]
_CONVERSION_ERRORS = (ValueError, TypeError, KeyError, ArithmeticError, AttributeError)
_serial = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RowLayout:
    """Rows of one shape written into one table."""

    table: sa.TableClause  # the target, with the bind type of every written column
    target: sa.Table  # the reflected target
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    row_fields: dict[str, str]  # row field name -> its column (for unchanged fields)
    copy_fields: tuple[CopyField, ...]  # PostgreSQL only: the binary COPY form of each column
    _rows: RowBuilder
    _copy_rows: RowBuilder
    _driver_rows: RowBuilder

    def driver_rows(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The row tuples as the driver takes them: ``rows`` with SQLAlchemy's bind processing
        of each column's type done too (for statements run on the driver directly)."""
        return _built(self._driver_rows, changes)

    def rows(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The row tuples (in ``columns`` order) for SQLAlchemy statements."""
        return _built(self._rows, changes)

    def copy_rows(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The row tuples for PostgreSQL's binary COPY (see ``copy_fields``)."""
        return _built(self._copy_rows, changes)

    def kept_columns(self, unchanged: frozenset[str] | None) -> frozenset[str]:
        """The columns of the unchanged fields ``unchanged``: not to be updated."""
        if not unchanged:
            return frozenset()
        return frozenset(self.row_fields[f] for f in unchanged if f in self.row_fields)


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Keys of one key schema matched against one table's key columns (for deletes)."""

    table: sa.TableClause
    key_columns: tuple[str, ...]
    _keys: RowBuilder

    def keys(self, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
        """The key tuples (in ``key_columns`` order)."""
        return _built(self._keys, changes)


def row_layout(target: sa.Table, columns: Sequence[FieldColumn], dialect: Dialect) -> RowLayout:
    """The layout of rows of ``columns`` (a shape) in ``target``, which has them all."""
    name = dialect.name
    bindings = [binding(c.type, target.c[c.column].type, name) for c in columns]
    copies = [copy_field(c.type) for c in columns] if name == "postgresql" else []
    sources = [(c.origin, c.field) for c in columns]
    processed = [_chained(b.convert, b.type.dialect_impl(dialect).bind_processor(dialect))
                 for b in bindings]
    return RowLayout(
        table=_bind_table(target, [c.column for c in columns], bindings),
        target=target,
        columns=tuple(c.column for c in columns),
        key_columns=tuple(c.column for c in columns if c.key),
        row_fields={c.field: c.column for c in columns if c.origin is Origin.ROW},
        copy_fields=tuple(copies),
        _rows=_builder(sources, [b.convert for b in bindings]),
        _copy_rows=_builder(sources, [c.convert for c in copies]) if copies else _no_rows,
        _driver_rows=_builder(sources, processed),
    )


def _chained(first: Converter | None, then: Converter | None) -> Converter | None:
    if first is None or then is None:
        return first or then
    return lambda value: then(first(value))


def key_layout(target: sa.Table, key_schema: AvroSchema, dialect: Dialect) -> KeyLayout | None:
    """The layout of keys of ``key_schema`` in ``target``; None when a key column is missing."""
    fields = key_schema.fields
    names = [column_name(f) for f in fields]
    if not names or any(name not in target.c for name in names):
        return None
    bindings = [
        binding(f["type"], target.c[n].type, dialect.name)
        for f, n in zip(fields, names, strict=True)
    ]
    return KeyLayout(
        table=_bind_table(target, names, bindings),
        key_columns=tuple(names),
        _keys=_builder([(Origin.KEY, str(f["name"])) for f in fields],
                       [b.convert for b in bindings]),
    )


def _bind_table(
    target: sa.Table, columns: Sequence[str], bindings: Sequence[Binding]
) -> sa.TableClause:
    return sa.table(
        target.name,
        *(sa.column(name, b.type) for name, b in zip(columns, bindings, strict=True)),
        schema=target.schema,
    )


def _no_rows(changes: Sequence[Change]) -> list[tuple[Any, ...]]:
    raise AssertionError("COPY rows are built for PostgreSQL layouts only")


_COORDINATES = {"topic": "rec.topic", "partition": "rec.partition", "offset": "rec.offset"}


def _builder(
    sources: Sequence[tuple[Origin, str]], converters: Sequence[Converter | None]
) -> RowBuilder:
    """A function turning changes into tuples of the values of ``sources``, converted.

    Field names live in the function's namespace, never in its source text.
    """
    namespace: dict[str, Any] = {}
    prologue: list[str] = []
    items: list[str] = []
    for i, ((where, name), convert) in enumerate(zip(sources, converters, strict=True)):
        if where is Origin.COORD:
            value = _COORDINATES[name]
        else:
            namespace[f"F{i}"] = name
            prologue.append(f"f{i} = F{i}")
            value = f"{'k' if where is Origin.KEY else 'r'}[f{i}]"
        if convert is not None:
            namespace[f"c{i}"] = convert
            value = f"(None if (v := {value}) is None else c{i}(v))"
        items.append(value)
    loads = []
    if any(s is Origin.KEY for s, _ in sources):
        loads.append("k = change.key")
    if any(s is Origin.ROW for s, _ in sources):
        loads.append("r = change.row")
    if any(s is Origin.COORD for s, _ in sources):
        loads.append("rec = change.record")
    body = [
        *prologue,
        "out = []",
        "append = out.append",
        "for change in changes:",
        *(f"    {line}" for line in loads),
        f"    append(({', '.join(items)},))",
        "return out",
    ]
    text = "def build(changes):\n" + "\n".join(f"    {line}" for line in body) + "\n"
    code = compile(text, f"<liberate sink rows {next(_serial)}>", "exec")
    exec(code, namespace)  # generated from the templates above: no schema text in it
    built: RowBuilder = namespace["build"]
    return built


def _built(build: RowBuilder, changes: Sequence[Change]) -> list[tuple[Any, ...]]:
    try:
        return build(changes)
    except _CONVERSION_ERRORS:
        pass
    # Find the change that failed, one by one, to name it.
    for change in changes:
        try:
            build([change])
        except _CONVERSION_ERRORS as exc:
            raise _conversion_error(change, exc) from exc
    return build(changes)


def _conversion_error(change: Change, exc: BaseException) -> RecordError:
    record = change.record
    where = origin(record)
    if isinstance(exc, KeyError):
        text = f"record {where} lacks field {exc.args[0]!r} of its schema"
    else:
        text = f"record {where} (key {record.key}) has a value the target cannot take: {exc}"
    return RecordError(text, origin=where, hint="fix the record or the target column type")
