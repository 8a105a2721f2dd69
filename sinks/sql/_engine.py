"""The sink's engine: our default drivers, and sessions set up to write predictably.

Every new connection runs at UTC, so naive UTC datetimes land as the same instant in columns
that convert zones (MySQL TIMESTAMP, PostgreSQL timestamptz), and MySQL runs in strict mode,
so a too-long or out-of-range value is an error instead of a silent truncation. SQLite waits
for a busy file instead of failing at once, and its transactions are begun by SQLAlchemy
(``BEGIN IMMEDIATE``) rather than by the sqlite3 module, which begins them only at the first
write: a savepoint released before that write would commit (SQLAlchemy's pysqlite recipe),
and a transaction that reads before it writes could not wait for another writer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from liberate.config.base import DatabaseSettings
from liberate.database import create_engine

SQLITE_BUSY_TIMEOUT_S = 30.0

_SESSION_SETUP: dict[str, tuple[str, ...]] = {
    "postgresql": ("SET TIME ZONE 'UTC'",),
    "mysql": (
        "SET time_zone = '+00:00'",
        "SET SESSION sql_mode = "
        "CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''), 'STRICT_ALL_TABLES')",
    ),
}


def sink_engine(settings: DatabaseSettings) -> Engine:
    """An engine for ``settings`` whose connections are set up as the module doc says."""
    options: dict[str, Any] = {}
    if settings.database.get_secret_value().startswith("sqlite"):
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    engine = create_engine(settings, **options)
    dialect = "mysql" if engine.dialect.name in ("mysql", "mariadb") else engine.dialect.name
    statements = _SESSION_SETUP.get(dialect, ())
    if statements:
        event.listen(engine, "connect", _session_setup(statements, engine.dialect.name))
    if dialect == "sqlite":
        event.listen(engine, "connect", _sqlite_manual_transactions)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _session_setup(statements: tuple[str, ...], dialect: str) -> Any:
    def setup(dbapi_connection: Any, _record: Any) -> None:
        # psycopg would open a transaction for the SETs; run them outside of any.
        autocommit = getattr(dbapi_connection, "autocommit", None)
        if dialect == "postgresql":
            dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            for statement in statements:
                cursor.execute(statement)
        finally:
            cursor.close()
            if dialect == "postgresql":
                dbapi_connection.autocommit = autocommit

    return setup
