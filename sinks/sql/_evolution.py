"""What a table needs to take the records of a shape: the DDL to run and the unsafe changes.

``plan_changes`` compares a shape (``_shape``) with the reflected table and returns the table
to create, the columns to add (always nullable: existing rows have no value), the columns to
widen where that is safe, and the *unsafe* changes the sink never makes:

- **narrowing**: a field narrower than its column (``long`` into ``INTEGER`` is a widening,
  ``int`` into ``BIGINT`` a narrowing; decimals of a smaller precision, shorter strings).
  The sink never narrows a column: the wider one takes every value;
- **type change**: a column that cannot take the field's values and cannot be widened to
  (text into an integer column, a decimal of another scale);
- **primary-key change**: the records' key is not the table's primary key nor a unique key
  (checked where the key is used: upsert and update modes);
- **dropped column**: a column the records no longer carry. Columns with a default (or
  generated ones) are the table's own and never count: the sink never creates one.

Narrowings and dropped nullable columns are judged only for the *latest* schema of a topic:
the records of an older producer (or written before a change) lack the columns a newer
schema added and hold the narrower values of before a widening, and are no schema change.
A dropped column the table requires (NOT NULL) is judged for every schema: no record without
it can be written.

It is a pure function of the shape and the reflected table, shared by the sink (which runs
the DDL) and ``liberate sink plan`` (which prints it). SQLite keeps any value in any column,
so types are neither widened nor judged there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.ddl import ExecutableDDLElement

from sinks.sql._ddl import AddColumn, AlterColumnType, altered_column
from sinks.sql._shape import FieldColumn
from sinks.sql._types import Verdict, column_facts, column_type, field_facts, verdict, widened_type

MYSQL_CHARSET = "utf8mb4"
#: MySQL tables are created in utf8mb4 with a binary collation, so that keys that differ only
#: in case or accents stay distinct rows, as they are in the source.
MYSQL_COLLATION = "utf8mb4_bin"

NARROWING = "narrowing"
TYPE_CHANGE = "type change"
KEY_CHANGE = "primary-key change"
DROPPED = "dropped column"


@dataclass(frozen=True, slots=True)
class Finding:
    """One unsafe change a shape asks of a table."""

    kind: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        where = f"column {self.column}: " if self.column else ""
        return f"{self.kind}: {where}{self.detail}"


@dataclass(slots=True)
class TableChanges:
    """What one table needs for one shape."""

    create: sa.Table | None = None
    added: list[sa.Column[Any]] = field(default_factory=list)
    widened: list[sa.Column[Any]] = field(default_factory=list)
    unsafe: list[Finding] = field(default_factory=list)

    def statements(self) -> list[ExecutableDDLElement]:
        """The DDL to run, in order (creation, added columns, widened columns)."""
        ddl: list[ExecutableDDLElement] = []
        if self.create is not None:
            ddl.append(sa.schema.CreateTable(self.create, if_not_exists=True))
        ddl.extend(AddColumn(c) for c in self.added)
        ddl.extend(AlterColumnType(c) for c in self.widened)
        return ddl


def new_table(name: str, schema: str | None, columns: Sequence[FieldColumn]) -> sa.Table:
    """The table a shape creates: the key columns form the primary key."""
    created: list[sa.schema.SchemaItem] = [
        sa.Column(
            c.column,
            column_type(c.type, key=c.key),
            primary_key=c.key,
            nullable=c.nullable,
            autoincrement=False,
        )
        for c in columns
    ]
    return sa.Table(
        name,
        sa.MetaData(),
        *created,
        schema=schema,
        mysql_charset=MYSQL_CHARSET,
        mysql_collate=MYSQL_COLLATION,
    )


def plan_changes(
    name: str,
    schema: str | None,
    columns: Sequence[FieldColumn],
    existing: sa.Table | None,
    dialect: str,
    *,
    key_used: bool,
    unique_keys: Callable[[], list[set[str]]],
    excluded: Collection[str] = (),
    latest: bool = True,
) -> TableChanges:
    """The changes table ``name`` needs for ``columns`` (see the module doc).

    ``key_used``: the mode writes by key (upsert, update), so the key must identify rows.
    ``unique_keys`` lists the table's unique keys; called only when the primary key differs.
    ``excluded``: columns the records carry but the config leaves out (never "dropped").
    ``latest``: ``columns`` come from the latest schema of the topic (see the module doc).
    """
    if existing is None:
        return TableChanges(create=new_table(name, schema, columns))
    changes = TableChanges()
    judge_types = dialect != "sqlite"
    for c in columns:
        have = existing.c.get(c.column)
        if have is None:
            added = sa.Column(c.column, column_type(c.type, key=False), nullable=True)
            sa.Table(existing.name, sa.MetaData(), added, schema=existing.schema)
            changes.added.append(added)
            if c.key and key_used:
                changes.unsafe.append(
                    Finding(KEY_CHANGE, c.column, "the table lacks this key column")
                )
            continue
        if not judge_types:
            continue
        wanted, held = field_facts(c.type), column_facts(have.type)
        found = verdict(wanted, held)
        if found is Verdict.WIDEN:
            changes.widened.append(
                altered_column(existing, have, widened_type(c.type, key=c.key))
            )
        elif found is Verdict.NARROWING and latest:
            changes.unsafe.append(
                Finding(NARROWING, c.column, f"{wanted} field into a {held} column")
            )
        elif found is Verdict.TYPE_CHANGE:
            changes.unsafe.append(
                Finding(TYPE_CHANGE, c.column, f"{wanted} field into a {held} column")
            )
    keys = {c.column for c in columns if c.key}
    primary = {c.name for c in existing.primary_key.columns}
    known = keys <= set(existing.c.keys())  # else a missing key column was named above
    if key_used and keys and keys != primary and known and keys not in unique_keys():
        changes.unsafe.append(
            Finding(
                KEY_CHANGE,
                None,
                f"the records' key ({', '.join(sorted(keys))}) is not the table's primary "
                f"key ({', '.join(sorted(primary)) or 'none'}) nor a unique key",
            )
        )
    carried = {c.column for c in columns} | set(excluded)
    for column in existing.c:
        if column.name in carried or column.primary_key or _table_owned(column):
            continue
        if not latest and column.nullable:
            continue
        detail = "the records do not carry it"
        if not column.nullable:
            detail += (" and it is NOT NULL without a default: no record can be written until"
                       " it is made nullable or given a default")
        changes.unsafe.append(Finding(DROPPED, column.name, detail))
    return changes


def _table_owned(column: sa.Column[Any]) -> bool:
    """A column with a default or a generated value: the table fills it, not the records."""
    return (
        column.server_default is not None
        or column.computed is not None
        or column.identity is not None
    )
