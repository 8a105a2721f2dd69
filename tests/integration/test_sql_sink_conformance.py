"""The SQL sink passes the sink conformance suite on SQLite, PostgreSQL and MariaDB, in both
modes (in insert mode a repeated record would be a duplicate-key error, so "repeats nothing"
is checked by the database itself)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from liberate.config.base import DatabaseSettings
from liberate.connector import Sink
from liberate.database import create_engine
from liberate.records import SinkRecord
from liberate.schema.avro import AvroSchema
from sinks.sql import SqlSink, SqlSinkConfig
from tests.conformance.sink import (
    ITEM_KEY_SCHEMA,
    ITEMS_TOPIC,
    NAMESPACE,
    Contents,
    SinkConformance,
    SinkHarness,
)

# The item schema with "name" made nullable: a null name is refused by the NOT NULL column
# created from the original schema.
_NULLABLE_NAME_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "Value",
        "namespace": NAMESPACE,
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"], "default": None},
            {"name": "qty", "type": ["null", "int"], "default": None},
        ],
    }
)


class SqlSinkHarness:
    """Drives ``SqlSink`` over one fresh database."""

    def __init__(self, url: str, mode: str) -> None:
        self.config = SqlSinkConfig.model_validate(
            {
                "name": "conformance",
                "connector": "sql",
                "database": url,
                "topics": [ITEMS_TOPIC],
                "mode": mode,
            }
        )

    def new_sink(self) -> Sink:
        return SqlSink(self.config)

    def contents(self) -> Contents:
        engine = create_engine(DatabaseSettings(database=self.config.database))
        try:
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table("items"):
                    return {}
                items = sa.Table("items", sa.MetaData(), autoload_with=conn)
                rows = conn.execute(sa.select(items.c.id, items.c.name, items.c.qty))
                return {int(i): (str(name), qty) for i, name, qty in rows}
        finally:
            engine.dispose()

    def refused_record(self, offset: int, *, partition: int = 0) -> SinkRecord:
        return SinkRecord(
            topic=ITEMS_TOPIC,
            partition=partition,
            offset=offset,
            key={"id": 50},
            value={"id": 50, "name": None, "qty": 1},
            key_schema=ITEM_KEY_SCHEMA,
            value_schema=_NULLABLE_NAME_SCHEMA,
        )


class TestSqlSinkConformance(SinkConformance):
    @pytest.fixture(params=["upsert", "insert"])
    def harness(self, any_db_url: str, request: pytest.FixtureRequest) -> SinkHarness:
        return SqlSinkHarness(any_db_url, request.param)
