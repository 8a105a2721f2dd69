"""Which columns the records of one (row schema, key schema) pair become: the table shape.

The primary key comes from ``pk_mode``:

- ``record_key``: the record key's fields (key fields the row lacks come first);
- ``record_value``: the row fields named in ``pk_fields``;
- ``none``: no key of the record; every record is a new row carrying its stream coordinates
  ``__topic``, ``__partition`` and ``__offset``, which form the primary key of a table the
  sink creates (so even a replay that slipped past the offsets table could not duplicate).

``fields_include``/``fields_exclude`` select the row's other columns; key columns are always
written. An Avro field carrying ``liberate.column`` names its column with that original name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from liberate.errors import FatalError
from liberate.schema.avro import AvroSchema
from liberate.schema.types import COLUMN_ATTRIBUTE, NOT_NULL_ATTRIBUTE, unwrap_nullable
from sinks.sql.config import SqlSinkConfig


class Origin(Enum):
    """Where a column's value comes from."""

    KEY = "key"  # the record key (a key field the row does not have)
    ROW = "row"  # the row: the entity value, or the envelope's after/before
    COORD = "coord"  # the record's stream coordinates (pk_mode none)


@dataclass(frozen=True, slots=True)
class FieldColumn:
    """One column of a shape: its name, the Avro field and type it is written from."""

    column: str
    field: str
    type: Any
    nullable: bool
    key: bool
    origin: Origin


COORDINATE_COLUMNS: tuple[FieldColumn, ...] = (
    FieldColumn("__topic", "topic", "string", False, True, Origin.COORD),
    FieldColumn("__partition", "partition", "int", False, True, Origin.COORD),
    FieldColumn("__offset", "offset", "long", False, True, Origin.COORD),
)


@dataclass(frozen=True, slots=True)
class ShapeRules:
    """The settings that decide a shape (from ``SqlSinkConfig``)."""

    pk_mode: str = "record_key"
    pk_fields: tuple[str, ...] = ()
    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    @classmethod
    def of(cls, config: SqlSinkConfig) -> ShapeRules:
        return cls(
            pk_mode=config.pk_mode,
            pk_fields=tuple(config.pk_fields or ()),
            include=frozenset(config.fields_include) if config.fields_include is not None
            else None,
            exclude=frozenset(config.fields_exclude),
        )

    def keeps(self, column: str) -> bool:
        """Whether a non-key row column is written."""
        if self.include is not None and column not in self.include:
            return False
        return column not in self.exclude


def column_name(field: dict[str, Any]) -> str:
    """The column of an Avro field: its original name when the Avro name had to differ."""
    original = field.get(COLUMN_ATTRIBUTE)
    return original if isinstance(original, str) and original else str(field["name"])


def shape_columns(
    row_schema: AvroSchema, key_schema: AvroSchema | None, rules: ShapeRules
) -> list[FieldColumn]:
    """The columns of rows of ``row_schema`` keyed by ``key_schema`` under ``rules``."""
    if rules.pk_mode == "record_value":
        return _value_keyed(row_schema, rules)
    if rules.pk_mode == "none":
        return [*_row_columns(row_schema, frozenset(), rules), *COORDINATE_COLUMNS]
    key_fields = {column_name(f): f for f in key_schema.fields} if key_schema else {}
    row_names = {column_name(f) for f in row_schema.fields}
    columns = [
        FieldColumn(name, spec["name"], spec["type"], False, True, Origin.KEY)
        for name, spec in key_fields.items()
        if name not in row_names
    ]
    for spec in row_schema.fields:
        name = column_name(spec)
        key_spec = key_fields.get(name)
        if key_spec is not None:
            columns.append(FieldColumn(name, spec["name"], key_spec["type"], False, True,
                                       Origin.ROW))
        elif rules.keeps(name):
            columns.append(_row_column(spec, name))
    return columns


def _value_keyed(row_schema: AvroSchema, rules: ShapeRules) -> list[FieldColumn]:
    present = {column_name(f) for f in row_schema.fields}
    missing = [name for name in rules.pk_fields if name not in present]
    if missing:
        raise FatalError(
            f"records of schema {row_schema.name} lack the pk_fields {', '.join(missing)}",
            hint="pk_fields names value fields (columns) every record of the topic has",
        )
    return _row_columns(row_schema, frozenset(rules.pk_fields), rules)


def _row_columns(
    row_schema: AvroSchema, keys: frozenset[str], rules: ShapeRules
) -> list[FieldColumn]:
    columns = []
    for spec in row_schema.fields:
        name = column_name(spec)
        if name in keys:
            base, _ = unwrap_nullable(spec["type"])
            columns.append(FieldColumn(name, spec["name"], base, False, True, Origin.ROW))
        elif rules.keeps(name):
            columns.append(_row_column(spec, name))
    return columns


def _row_column(spec: dict[str, Any], name: str) -> FieldColumn:
    _, nullable = unwrap_nullable(spec["type"])
    # A source column NOT NULL whose events may still omit its value (see NOT_NULL_ATTRIBUTE)
    nullable = nullable and spec.get(NOT_NULL_ATTRIBUTE) is not True
    return FieldColumn(name, spec["name"], spec["type"], nullable, False, Origin.ROW)


def key_columns(columns: Sequence[FieldColumn]) -> list[str]:
    """The key column names of a shape, in order."""
    return [c.column for c in columns if c.key]
