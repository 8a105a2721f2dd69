"""A column added with a constant default is a BACKWARD-compatible change on every database.

The table is read by the query source as it is before and after a real ALTER TABLE, and its
value schema registered in the embedded registry under BACKWARD: the new column's database
default is the Avro default, so the registry accepts the new version. A NOT NULL column whose
default is not a constant (a clock) gets no Avro default, and the same registry refuses it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.query import QuerySource
from liberate.errors import SchemaCompatibilityError
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import SubjectLevels
from liberate.schema.embedded_registry import EmbeddedRegistry
from tests.integration._query_support import query_config
from tests.integration._sql_sink_support import execute

SUBJECT = "shop.orders-value"

CONSTANT_DEFAULTS = [
    "ALTER TABLE orders ADD COLUMN status VARCHAR(10) NOT NULL DEFAULT 'new'",
    "ALTER TABLE orders ADD COLUMN amount NUMERIC(10, 2) NOT NULL DEFAULT -1.50",
    "ALTER TABLE orders ADD COLUMN quantity INTEGER NOT NULL DEFAULT 3",
    "ALTER TABLE orders ADD COLUMN placed DATE NOT NULL DEFAULT '2024-02-29'",
]
# A NOT NULL column whose default is the clock (SQLite cannot ADD such a column: recreated).
CLOCK_DEFAULT = {
    "sqlite": [
        "DROP TABLE orders",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL,"
        " seen TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    ],
    "postgresql": ["ALTER TABLE orders ADD COLUMN seen TIMESTAMP NOT NULL DEFAULT now()"],
    "mysql": [
        "ALTER TABLE orders ADD COLUMN seen TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
    ],
}


def value_schema(url: str) -> AvroSchema:
    (tables,) = QuerySource(query_config(url, mode="bulk")).current_schemas()
    return tables.value_schema


def run_ddl(url: str, statements: list[str]) -> None:
    execute(url, *statements)


@pytest.fixture
def registry(tmp_path: Path, any_db_url: str) -> Iterator[EmbeddedRegistry]:
    run_ddl(any_db_url, [
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, label VARCHAR(20) NOT NULL)"
    ])
    with EmbeddedRegistry(tmp_path / "streams.db") as registry:
        registry.configure_levels(SubjectLevels("BACKWARD"))
        registry.register(SUBJECT, value_schema(any_db_url))
        yield registry


def test_columns_added_with_constant_defaults_pass_backward(
    any_db_url: str, registry: EmbeddedRegistry
) -> None:
    run_ddl(any_db_url, CONSTANT_DEFAULTS)
    schema = value_schema(any_db_url)
    registry.register(SUBJECT, schema)  # refused (raises) if a default were missing
    defaults: dict[str, Any] = {f["name"]: f.get("default") for f in schema.fields}
    assert defaults["status"] == "new"
    assert defaults["quantity"] == 3
    assert dt.date(1970, 1, 1) + dt.timedelta(days=defaults["placed"]) == dt.date(2024, 2, 29)
    unscaled = int.from_bytes(defaults["amount"].encode("latin-1"), "big", signed=True)
    assert Decimal(unscaled).scaleb(-2) == Decimal("-1.50")
    assert [v.version for v in registry.versions(SUBJECT)] == [1, 2]


def test_a_not_null_column_with_a_clock_default_is_refused_under_backward(
    any_db_url: str, registry: EmbeddedRegistry
) -> None:
    dialect = sa.make_url(any_db_url).get_backend_name()
    run_ddl(any_db_url, CLOCK_DEFAULT["mysql" if dialect == "mariadb" else dialect])
    schema = value_schema(any_db_url)
    assert "default" not in {f["name"]: f for f in schema.fields}["seen"]
    with pytest.raises(SchemaCompatibilityError, match="field 'seen'"):
        registry.register(SUBJECT, schema)
