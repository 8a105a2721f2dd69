"""The Avro view of a database table, derived from the catalog through SQLAlchemy reflection.

A ``TableSchema`` is built once per table and reused for every row: it holds the key and value
schemas (entity shape: the row as it is) and a converter from driver rows to Avro-ready values.

Two ways to turn a row into its value: ``value_of`` builds the dict; ``row_value`` wraps the
row in a ``RowView`` that reads the same but builds nothing, and which ``RecordSerializer``
encodes straight from the row (``compile_row_writer``). The view is the bulk path of the query
source: no dict, no converter call for values drivers already return Avro-ready, one
generated writer per record. ``row_key`` is the key of a row without its value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from liberate.errors import PrerequisiteError
from liberate.schema._generated import FieldPlan
from liberate.schema.avro import AvroSchema
from liberate.schema.defaults import avro_default
from liberate.schema.rows import RowLayout, RowView
from liberate.schema.types import (
    COLUMN_ATTRIBUTE,
    AvroColumn,
    Converter,
    avro_column,
    avro_name,
    keeps_avro_ready,
    unchanged_type,
)


@dataclass(frozen=True, slots=True)
class TopicSchemas:
    """The key and value schemas a source writes for one table as it is now, and the topic.

    What ``liberate schema check`` compares with the registry before an ALTER TABLE is
    deployed; sources return them from ``current_schemas()``.
    """

    table: str
    topic: str
    key_schema: AvroSchema | None
    value_schema: AvroSchema


@dataclass(frozen=True, slots=True)
class TableSchema:
    """Key and value schemas of one table, and how to turn its rows into Avro values.

    ``columns`` are the database column names in select order; ``fields`` the Avro field names
    (the same unless a column name is not a valid Avro name).
    """

    namespace: str
    table: str
    schema: str | None
    columns: tuple[str, ...]
    fields: tuple[str, ...]
    key_columns: tuple[str, ...]
    key_schema: AvroSchema
    value_schema: AvroSchema
    row_fields: tuple[dict[str, Any], ...]
    # (position, converter, the type it returns unchanged): see ``unchanged_type``
    _converters: tuple[tuple[int, Converter, type | None], ...] = field(repr=False, default=())
    _key_positions: tuple[int, ...] = field(repr=False, default=())
    _value_layout: RowLayout | None = field(repr=False, default=None, compare=False)
    _row_key: Callable[[Sequence[Any]], dict[str, Any]] | None = field(
        repr=False, default=None, compare=False
    )

    def value_of(self, row: Sequence[Any]) -> dict[str, Any]:
        """The Avro value of a row given in ``columns`` order."""
        if self._converters:
            values = list(row)
            for index, convert, keep in self._converters:
                item = values[index]
                if item is not None and type(item) is not keep:
                    values[index] = convert(item)
            return dict(zip(self.fields, values, strict=True))
        return dict(zip(self.fields, row, strict=True))

    def key_of(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """The key record of a value produced by ``value_of``."""
        return {self.fields[i]: value[self.fields[i]] for i in self._key_positions}

    def row_value(self, row: Sequence[Any]) -> RowView:
        """The Avro value of a row (``columns`` order) as a view: equal to ``value_of(row)``.

        For the per-row hot path: see ``RowView``. The row must not change afterwards.
        """
        assert self._value_layout is not None  # built by build_table_schema
        return RowView(row, self._value_layout)

    def row_key(self, row: Sequence[Any]) -> dict[str, Any]:
        """The key record of a row (``columns`` order): ``key_of(value_of(row))``, cheaper."""
        assert self._row_key is not None  # built by build_table_schema
        return self._row_key(row)


def build_table_schema(
    table: sa.Table,
    *,
    namespace: str,
    key_columns: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    dialect: str | None = None,
) -> TableSchema:
    """Derive the schemas of ``table`` (reflected) under the Avro ``namespace``.

    ``key_columns`` overrides the primary key; a table with neither raises
    ``PrerequisiteError``. ``columns`` restricts and orders the value columns. ``dialect`` is
    the name of the dialect the table was reflected from (see ``avro_column``).
    """
    where = f"{table.schema}.{table.name}" if table.schema else table.name
    unknown = [name for name in columns or () if name not in table.c]
    if unknown:
        raise PrerequisiteError(
            f"column(s) {', '.join(unknown)} not found in table {where}",
            hint="columns must name columns of the table (check the spelling and the case)",
        )
    selected = [table.c[name] for name in columns] if columns else list(table.columns)
    keys = list(key_columns) if key_columns else [c.name for c in table.primary_key.columns]
    if not keys:
        raise PrerequisiteError(
            f"table {where} has no primary key",
            hint="add a primary key, or set key_columns: [...] to the columns that identify a row",
        )
    missing = [k for k in keys if k not in {c.name for c in selected}]
    if missing:
        place = "the selected columns of table" if columns else "table"
        raise PrerequisiteError(
            f"key column(s) {', '.join(missing)} not found in {place} {where}",
            hint="key_columns must name columns of the table, and selected columns must "
            "include the key",
        )
    ns = ".".join(avro_name(part) for part in namespace.split("."))
    row_fields: list[dict[str, Any]] = []
    converters: list[tuple[int, Converter, type | None]] = []
    names: list[str] = []
    for index, column in enumerate(selected):
        mapped: AvroColumn = avro_column(column, where=f"{where}.{column.name}", dialect=dialect)
        name = avro_name(column.name)
        spec: dict[str, Any] = {"name": name}
        # Key columns are never null in the key record, whatever the catalog says.
        nullable = bool(column.nullable) and column.name not in keys
        spec["type"] = ["null", mapped.type] if nullable else mapped.type
        if nullable:
            # Avro takes a union's default from its first branch: null for a nullable column.
            spec["default"] = None
        else:
            default = avro_default(column_default_text(column), mapped.type, dialect=dialect)
            if default is not None:
                spec["default"] = default.value
        if name != column.name:
            spec[COLUMN_ATTRIBUTE] = column.name
        row_fields.append(spec)
        names.append(name)
        if mapped.convert is not None:
            converters.append((index, mapped.convert, unchanged_type(mapped.convert)))
    if len(set(names)) != len(names):
        raise PrerequisiteError(
            f"table {where} has column names that collide once made valid Avro names",
            hint="select the columns with distinct aliases in a custom query",
        )
    column_names = [c.name for c in selected]
    key_positions = tuple(column_names.index(k) for k in keys)
    value_schema = AvroSchema(
        {"type": "record", "name": "Value", "namespace": ns, "fields": row_fields}
    )
    key_fields = [dict(row_fields[i], type=_not_null(row_fields[i]["type"])) for i in key_positions]
    for spec in key_fields:
        spec.pop("default", None)
    key_schema = AvroSchema(
        {"type": "record", "name": "Key", "namespace": ns, "fields": key_fields}
    )
    plan = [FieldPlan(index) for index in range(len(selected))]
    for index, convert, keep in converters:
        plan[index] = FieldPlan(index, convert, keep, keeps_avro_ready(convert))
    value_layout = RowLayout(value_schema, names, plan, len(names))
    return TableSchema(
        namespace=ns,
        table=table.name,
        schema=table.schema,
        columns=tuple(column_names),
        fields=tuple(names),
        key_columns=tuple(keys),
        key_schema=key_schema,
        value_schema=value_schema,
        row_fields=tuple(row_fields),
        _converters=tuple(converters),
        _key_positions=key_positions,
        _value_layout=value_layout,
        _row_key=_row_key_function(value_layout, [names[i] for i in key_positions]),
    )


def _row_key_function(
    layout: RowLayout, names: Sequence[str]
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    if len(names) == 1:
        (name,) = names
        step = layout.plan_of(name)
        if step.convert is None:  # the common key: one column the driver returns as it is
            position = step.position
            return lambda row: {name: row[position]}
    value = layout.value
    return lambda row: {name: value(row, name) for name in names}


def column_default_text(column: sa.Column[Any]) -> str | None:
    """The SQL text of a reflected column's database default (None: none, or generated)."""
    default = column.server_default
    if default is None or column.computed is not None or column.identity is not None:
        return None
    arg = getattr(default, "arg", None)
    if isinstance(arg, str):
        return arg
    text = getattr(arg, "text", None)
    return text if isinstance(text, str) else None


def _not_null(field_type: Any) -> Any:
    if isinstance(field_type, list):
        others = [t for t in field_type if t != "null"]
        return others[0] if len(others) == 1 else others
    return field_type
