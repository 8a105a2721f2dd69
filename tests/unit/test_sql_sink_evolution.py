"""Type facts, widening verdicts and table plans of the SQL sink (no database: reflected
tables are built by hand, shaped as each dialect reflects them)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from liberate.schema.avro import AvroSchema
from sinks.sql._ddl import AlterColumnType, altered_column
from sinks.sql._evolution import DROPPED, KEY_CHANGE, NARROWING, TYPE_CHANGE, plan_changes
from sinks.sql._shape import FieldColumn, Origin, ShapeRules, shape_columns
from sinks.sql._types import (
    Family,
    TypeFacts,
    Verdict,
    column_facts,
    declared_length,
    field_facts,
    verdict,
)

DIALECTS = {name: sa.create_engine(url).dialect  # no connection is made
            for name, url in (("postgresql", "postgresql+psycopg://"),
                              ("mysql", "mysql+pymysql://"))}
DEC = {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}


def dec(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


@pytest.mark.parametrize(
    ("field_type", "column", "expected"),
    [
        ("long", sa.Integer(), Verdict.WIDEN),
        ("int", sa.BigInteger(), Verdict.NARROWING),
        ("int", sa.Integer(), Verdict.OK),
        ("int", sa.SmallInteger(), Verdict.WIDEN),
        ("double", sa.REAL(), Verdict.WIDEN),
        ("float", mysql.DOUBLE(), Verdict.OK),  # MySQL makes REAL a DOUBLE
        (dec(14, 2), sa.Numeric(12, 2), Verdict.WIDEN),
        (dec(10, 2), sa.Numeric(12, 2), Verdict.NARROWING),
        (dec(12, 4), sa.Numeric(12, 2), Verdict.TYPE_CHANGE),  # another scale
        (dec(12, 2), sa.Numeric(), Verdict.OK),
        ({"type": "string", "liberate.length": 40}, sa.String(20), Verdict.WIDEN),
        ({"type": "string", "liberate.length": 10}, sa.String(20), Verdict.NARROWING),
        ("string", sa.String(20), Verdict.OK),  # no declared length: checked per value
        ("string", sa.Integer(), Verdict.TYPE_CHANGE),
        ("long", sa.Text(), Verdict.OK),
        ("bytes", sa.Text(), Verdict.TYPE_CHANGE),
        ("boolean", mysql.TINYINT(1), Verdict.OK),
        ("int", sa.Numeric(10, 0), Verdict.OK),
        ("long", sa.Numeric(10, 0), Verdict.TYPE_CHANGE),
        (dec(20, 0), sa.BigInteger(), Verdict.TYPE_CHANGE),
        (dec(18, 0), sa.BigInteger(), Verdict.OK),
        ({"type": "string", "logicalType": "uuid"}, sa.CHAR(32), Verdict.OK),
        ({"type": "string", "connect.name": "io.debezium.data.Json"}, mysql.LONGTEXT(),
         Verdict.OK),
        ({"type": "long", "logicalType": "timestamp-micros"}, sa.DateTime(), Verdict.OK),
        ("string", postgresql.INTERVAL(), Verdict.OK),  # a type the sink does not judge
    ],
)
def test_verdicts_say_whether_a_column_takes_a_field(
    field_type: Any, column: sa.types.TypeEngine[Any], expected: Verdict
) -> None:
    assert verdict(field_facts(field_type), column_facts(column)) is expected


def test_string_lengths_come_from_liberate_or_debezium_attributes() -> None:
    assert declared_length({"type": "string", "liberate.length": 12}) == 12
    debezium = {"type": "string", "connect.parameters": {
        "__debezium.source.column.length": "255"}}
    assert declared_length(["null", debezium]) == 255
    assert declared_length("string") is None
    assert field_facts(debezium) == TypeFacts(Family.STRING, 255)


def test_widening_ddl_keeps_nullability_and_default_on_mysql() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("n", sa.Integer, nullable=False,
                                                   server_default="0"))
    widened = altered_column(table, table.c.n, sa.BigInteger())
    assert str(AlterColumnType(widened).compile(dialect=DIALECTS["mysql"])) == (
        "ALTER TABLE t MODIFY COLUMN n BIGINT NOT NULL DEFAULT '0'")
    assert str(AlterColumnType(widened).compile(dialect=DIALECTS["postgresql"])) == (
        "ALTER TABLE t ALTER COLUMN n TYPE BIGINT")


KEY = AvroSchema({"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]})


def columns(*fields: dict[str, Any], rules: ShapeRules | None = None) -> list[FieldColumn]:
    row = AvroSchema({"type": "record", "name": "Value",
                      "fields": [{"name": "id", "type": "long"}, *fields]})
    return shape_columns(row, KEY, rules or ShapeRules())


def existing(*extra: sa.Column[Any], pk: bool = True) -> sa.Table:
    return sa.Table("t", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=pk),
                    sa.Column("n", sa.Integer, nullable=True), *extra)


def plan(cols: list[FieldColumn], table: sa.Table | None, *, latest: bool = True,
         uniques: list[set[str]] | None = None) -> Any:
    return plan_changes("t", None, cols, table, "postgresql", key_used=True,
                        unique_keys=lambda: uniques or [], latest=latest)


def test_a_missing_table_is_created_with_the_key_as_primary_key() -> None:
    changes = plan(columns({"name": "n", "type": "int"}), None)
    assert changes.create is not None
    assert [c.name for c in changes.create.primary_key.columns] == ["id"]


def test_new_fields_add_nullable_columns_and_wider_ones_widen() -> None:
    changes = plan(columns({"name": "n", "type": "long"}, {"name": "m", "type": "string"}),
                   existing())
    assert [(c.name, c.nullable) for c in changes.added] == [("m", True)]
    assert [(c.name, type(c.type)) for c in changes.widened] == [("n", sa.BigInteger)]
    assert changes.unsafe == []


def test_unsafe_changes_are_named_per_column() -> None:
    table = existing(sa.Column("gone", sa.Text, nullable=True),
                     sa.Column("own", sa.Text, server_default="x"))
    changes = plan(columns({"name": "n", "type": "string"}), table)
    assert [(f.kind, f.column) for f in changes.unsafe] == [(TYPE_CHANGE, "n"),
                                                            (DROPPED, "gone")]
    narrow = plan(columns({"name": "n", "type": "int"}),
                  sa.Table("t", sa.MetaData(), sa.Column("id", sa.BigInteger, primary_key=True),
                           sa.Column("n", sa.BigInteger)))
    assert [(f.kind, f.column) for f in narrow.unsafe] == [(NARROWING, "n")]


def test_older_schemas_are_judged_only_for_what_breaks_writes() -> None:
    table = existing(sa.Column("gone", sa.Text, nullable=True),
                     sa.Column("required", sa.Text, nullable=False),
                     sa.Column("big", sa.BigInteger))
    changes = plan(columns({"name": "n", "type": "int"}, {"name": "big", "type": "int"}),
                   table, latest=False)
    assert [(f.kind, f.column) for f in changes.unsafe] == [(DROPPED, "required")]


def test_a_key_that_is_not_the_primary_key_nor_unique_is_a_key_change() -> None:
    keyless = existing(pk=False)
    assert [f.kind for f in plan(columns({"name": "n", "type": "int"}), keyless).unsafe] == [
        KEY_CHANGE]
    assert plan(columns({"name": "n", "type": "int"}), keyless, uniques=[{"id"}]).unsafe == []


def test_value_keys_and_append_shapes() -> None:
    row = AvroSchema({"type": "record", "name": "Value", "fields": [
        {"name": "id", "type": "long"}, {"name": "code", "type": ["null", "string"]},
        {"name": "n", "type": "int"}, {"name": "secret", "type": "string"}]})
    by_value = shape_columns(row, KEY, ShapeRules(pk_mode="record_value", pk_fields=("code",),
                                                  exclude=frozenset({"secret"})))
    assert [(c.column, c.key, c.nullable) for c in by_value] == [
        ("id", False, False), ("code", True, False), ("n", False, False)]
    appended = shape_columns(row, KEY, ShapeRules(pk_mode="none",
                                                  include=frozenset({"n"})))
    assert [(c.column, c.key, c.origin) for c in appended] == [
        ("n", False, Origin.ROW), ("__topic", True, Origin.COORD),
        ("__partition", True, Origin.COORD), ("__offset", True, Origin.COORD)]
