"""Fixtures of the MySQL source tests: a fresh database with helpers, and source configs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest
from sqlalchemy.engine import make_url

from connectors.mysql import MySqlSource, MySqlSourceConfig
from liberate.records import SourceRecord
from tests.conformance.source import drain
from tests.servers import Server


@dataclass
class MySqlDb:
    """The test's database on the session server, and ways to change it."""

    url: str
    name: str
    server: Server

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        url = make_url(self.url)
        return pymysql.connect(
            host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
            password=url.password or "", database=database or self.name, autocommit=True,
        )

    def execute(self, *statements: str | tuple[str, Sequence[Any]]) -> None:
        """Run each statement in autocommit (a statement, or a statement and its parameters)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    if isinstance(statement, tuple):
                        cur.execute(statement[0], statement[1])
                    else:
                        cur.execute(statement)
        finally:
            conn.close()

    def transaction(self, *statements: str | tuple[str, Sequence[Any]]) -> None:
        """Run the statements as one transaction."""
        self.execute("BEGIN", *statements, "COMMIT")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()


@pytest.fixture
def db(mysql_server: Server, mysql_url: str) -> MySqlDb:
    """A fresh database (utf8mb4) for this test."""
    name = make_url(mysql_url).database
    assert name
    return MySqlDb(mysql_url, name, mysql_server)


def source_config(db: MySqlDb, tables: list[str], **options: Any) -> MySqlSourceConfig:
    """A source of ``tables`` of ``db``; heartbeats off unless asked for."""
    settings: dict[str, Any] = {
        "name": f"src_{db.name[3:11]}",
        "connector": "mysql",
        "database": db.url,
        "tables": tables,
        "heartbeat_topic": "",
    }
    settings.update(options)
    return MySqlSourceConfig.model_validate(settings)


def read_all(config: MySqlSourceConfig, offsets: dict[str, Any] | None = None
             ) -> list[SourceRecord]:
    """Open a source at ``offsets``, read until caught up, close it."""
    source = MySqlSource(config)
    source.open(offsets or {})
    try:
        return drain(source, max_polls=2000)
    finally:
        source.close()


def changes(records: Sequence[SourceRecord]) -> list[tuple[Any, ...]]:
    """``(op, key, row)`` of each record (row: after, else before; tombstones: op None)."""
    result = []
    for record in records:
        value = record.value
        if value is None:
            result.append((None, record.key, None))
        else:
            result.append((value["op"], record.key, value["after"] or value["before"]))
    return result
