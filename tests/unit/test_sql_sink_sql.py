"""What the SQL sink sends to each dialect: column types, quoted DDL, statements, bindings.

Compiled against the dialects offline; the integration tests run the same against servers.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect

from liberate.schema.avro import AvroSchema
from liberate.schema.types import COLUMN_ATTRIBUTE, JSON_NAME, VARIABLE_DECIMAL_NAME
from sinks.sql._ddl import AddColumn
from sinks.sql._shape import ShapeRules, shape_columns
from sinks.sql._types import column_type
from sinks.sql._values import binding, copy_field, needs_cast
from sinks.sql._writes import upsert_statement

DIALECTS: dict[str, Dialect] = {
    name: sa.create_engine(url).dialect  # no connection is made
    for name, url in (
        ("postgresql", "postgresql+psycopg://"),
        ("mysql", "mysql+pymysql://"),
        ("sqlite", "sqlite://"),
    )
}
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
JSON_TEXT = {"type": "string", "connect.name": JSON_NAME}


def compiled(type_: sa.types.TypeEngine[Any], dialect: str) -> str:
    return type_.compile(dialect=DIALECTS[dialect])


def test_columns_follow_the_row_with_key_only_fields_first_and_original_names() -> None:
    key = AvroSchema({"type": "record", "name": "Key", "fields": [
        {"name": "tenant", "type": "string"}, {"name": "id", "type": "long"}]})
    row = AvroSchema({"type": "record", "name": "Value", "fields": [
        {"name": "id", "type": "long"},
        {"name": "two_words", "type": ["null", "string"], COLUMN_ATTRIBUTE: "two words"},
        {"name": "n", "type": "int"},
    ]})
    columns = shape_columns(row, key, ShapeRules())
    assert [(c.column, c.key, c.nullable, c.origin.value) for c in columns] == [
        ("tenant", True, False, "key"),
        ("id", True, False, "row"),
        ("two words", False, True, "row"),
        ("n", False, False, "row"),
    ]


@pytest.mark.parametrize(
    ("field_type", "dialect", "created"),
    [
        (DECIMAL, "postgresql", "NUMERIC(12, 2)"),
        (DECIMAL, "mysql", "NUMERIC(12, 2)"),
        (DECIMAL, "sqlite", "TEXT"),  # SQLite's NUMERIC affinity would keep only 15 digits
        ({"type": "string", "connect.name": VARIABLE_DECIMAL_NAME}, "sqlite", "TEXT"),
        ("double", "sqlite", "DOUBLE"),
        (JSON_TEXT, "postgresql", "JSONB"),
        ({"type": "long", "logicalType": "timestamp-micros"}, "postgresql",
         "TIMESTAMP WITH TIME ZONE"),
        ({"type": "long", "logicalType": "timestamp-micros"}, "mysql", "DATETIME(6)"),
    ],
)
def test_created_column_types(field_type: Any, dialect: str, created: str) -> None:
    assert compiled(column_type(field_type, key=False), dialect) == created


@pytest.mark.parametrize(
    ("field_type", "dialect", "created"),
    [
        ("string", "postgresql", "TEXT"),
        ("string", "mysql", "VARCHAR(255)"),  # MySQL indexes bounded text only
        ("bytes", "mysql", "VARBINARY(255)"),
        ("bytes", "postgresql", "BYTEA"),
    ],
)
def test_created_key_column_types(field_type: Any, dialect: str, created: str) -> None:
    assert compiled(column_type(field_type, key=True), dialect) == created


@pytest.mark.parametrize(
    ("dialect", "ddl"),
    [
        ("postgresql", 'ALTER TABLE "my ""odd"" table" ADD COLUMN "50%% off" TEXT'),
        ("mysql", "ALTER TABLE `my \"odd\" table` ADD COLUMN `50%% off` LONGTEXT"),
        ("sqlite", 'ALTER TABLE "my ""odd"" table" ADD COLUMN "50% off" TEXT'),
    ],
)
def test_add_column_quotes_identifiers_for_the_dialect(dialect: str, ddl: str) -> None:
    column = sa.Column("50% off", column_type(["null", "string"], key=False), nullable=True)
    sa.Table('my "odd" table', sa.MetaData(), column)
    assert str(AddColumn(column).compile(dialect=DIALECTS[dialect])) == ddl


@pytest.mark.parametrize(
    ("dialect", "fragment"),
    [
        ("postgresql", "ON CONFLICT (id) DO UPDATE SET n = excluded.n"),
        ("sqlite", "ON CONFLICT (id) DO UPDATE SET n = excluded.n"),
        ("mysql", "ON DUPLICATE KEY UPDATE n = VALUES(n)"),
    ],
)
def test_upserts_update_every_non_key_column(dialect: str, fragment: str) -> None:
    table = sa.table("t", sa.column("id"), sa.column("n"))
    statement = upsert_statement(dialect, table, ["id"], ["id", "n"])
    assert fragment in str(statement.compile(dialect=DIALECTS[dialect]))


def test_an_upsert_of_key_columns_only_is_a_no_op_on_conflict() -> None:
    table = sa.table("t", sa.column("id"))
    pg = str(upsert_statement("postgresql", table, ["id"], ["id"]).compile(
        dialect=DIALECTS["postgresql"]))
    my = str(upsert_statement("mysql", table, ["id"], ["id"]).compile(
        dialect=DIALECTS["mysql"]))
    assert pg.endswith("ON CONFLICT (id) DO NOTHING")
    assert my.endswith("ON DUPLICATE KEY UPDATE id = VALUES(id)")


def test_mysql_upsert_of_a_percent_column_names_it_once_escaped() -> None:
    table = sa.table("t", sa.column("id"), sa.column("50% off"))
    statement = upsert_statement("mysql", table, ["id"], ["id", "50% off"])
    from sqlalchemy.dialects.mysql import pymysql

    text = str(statement.compile(dialect=pymysql.dialect()))
    assert text.endswith("`50%% off` = values(`50%% off`)")


def _bind(field_type: Any, column: sa.types.TypeEngine[Any], dialect: str, value: Any) -> Any:
    convert = binding(field_type, column, dialect).convert
    return value if convert is None else convert(value)


def test_json_binds_parsed_into_json_columns_and_verbatim_into_text_columns() -> None:
    text = '{"a": [1, "ü"]}'
    assert _bind(JSON_TEXT, postgresql.JSONB(), "postgresql", text) == json.loads(text)
    assert _bind(JSON_TEXT, mysql.LONGTEXT(), "mysql", text) == text
    assert _bind(JSON_TEXT, sa.JSON(), "sqlite", text) == text
    json_binding = binding(JSON_TEXT, postgresql.JSON(), "postgresql")
    assert isinstance(json_binding.type, sa.JSON) and json_binding.type.none_as_null


def test_decimals_and_uuids_bind_as_exact_text_into_text_columns() -> None:
    assert _bind(DECIMAL, sa.Text(), "sqlite", Decimal("-0.50")) == "-0.50"
    assert _bind(DECIMAL, sa.Text(), "sqlite", Decimal("0E-10")) == "0.0000000000"
    uid = uuid.uuid4()
    uuid_type = {"type": "string", "logicalType": "uuid"}
    assert _bind(uuid_type, sa.CHAR(32), "sqlite", uid) == str(uid)
    assert _bind(uuid_type, sa.Uuid(as_uuid=True), "postgresql", str(uid)) == uid


def test_instants_become_naive_utc_where_the_column_keeps_no_zone() -> None:
    instant = {"type": "long", "logicalType": "timestamp-micros"}
    value = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert _bind(instant, mysql.DATETIME(fsp=6), "mysql", value) == dt.datetime(2024, 1, 1, 10)
    assert _bind(instant, sa.DateTime(), "postgresql", value) == dt.datetime(2024, 1, 1, 10)
    assert _bind(instant, sa.DateTime(timezone=True), "postgresql", value) is value


def test_copy_fields_give_every_value_an_exact_binary_form() -> None:
    assert copy_field(DECIMAL).pg_type == "numeric"
    assert copy_field(["null", JSON_TEXT]).pg_type == "text"
    instant = copy_field({"type": "long", "logicalType": "timestamp-micros"})
    assert instant.pg_type == "timestamptz" and instant.convert is not None
    assert instant.convert(dt.datetime(2024, 1, 1)) == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    uid = copy_field({"type": "string", "logicalType": "uuid"})
    assert uid.convert is not None
    assert uid.convert("6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a") == uuid.UUID(
        "6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a"
    )


def test_only_text_is_cast_in_the_merge_and_never_into_a_string_column() -> None:
    assert needs_cast(sa.Text(), postgresql.JSONB())
    assert needs_cast(sa.Text(), postgresql.ENUM("a", name="mood"))
    assert not needs_cast(sa.Text(), sa.String(5))  # an explicit cast would truncate silently
    assert not needs_cast(sa.BigInteger(), sa.Numeric(20, 0))
    assert not needs_cast(sa.Text(), sa.types.NullType())
