"""What an application passes as ``conn``, recognised and driven the same way.

Accepted: a SQLAlchemy ``Session`` or ``Connection``, a psycopg 3 connection, a PyMySQL
connection, a ``sqlite3`` connection, and any other DB-API 2.0 connection whose driver module
is known (psycopg2, pg8000, mysqlclient, mysql-connector, mariadb). Drivers are recognised by
the modules already imported (``sys.modules``), so none of them is ever required or imported
here.

Every statement runs in the caller's transaction. A connection in autocommit mode outside an
explicit transaction is refused: the event would be committed on its own, which is the very
inconsistency the outbox exists to prevent.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from outbox._event import OutboxError
from outbox._sql import Dialect, Params, dialect_named

# DB-API driver module -> dialect
_DRIVER_DIALECTS: dict[str, Dialect] = {
    "psycopg": "postgresql",
    "psycopg2": "postgresql",
    "pg8000": "postgresql",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
    "mysql": "mysql",  # mysql-connector-python
    "mariadb": "mysql",
    "sqlite3": "sqlite",
}
_MYSQL_IN_TRANSACTION = 1  # SERVER_STATUS_IN_TRANS, from every OK packet


@dataclass(frozen=True, slots=True)
class Executor:
    """Runs statements on one connection in its current transaction."""

    dialect: Dialect
    paramstyle: str
    _conn: Any
    _sqlalchemy: bool

    def params(self) -> Params:
        return Params(self.paramstyle)

    def execute(self, sql: str, params: Params | None = None) -> int:
        """Run ``sql``; the number of rows it changed (-1 when the driver cannot tell)."""
        if self._sqlalchemy:
            result = self._sa_execute(sql, params)
            try:
                return int(result.rowcount)
            finally:
                result.close()
        cursor = self._conn.cursor()
        try:
            self._cursor_execute(cursor, sql, params)
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def fetchone(self, sql: str, params: Params | None = None) -> tuple[Any, ...] | None:
        """The first row of ``sql``, or None."""
        if self._sqlalchemy:
            result = self._sa_execute(sql, params)
            try:
                row = result.fetchone()
            finally:
                result.close()
            return tuple(row) if row is not None else None
        cursor = self._conn.cursor()
        try:
            self._cursor_execute(cursor, sql, params)
            fetched = cursor.fetchone()
        finally:
            cursor.close()
        return tuple(fetched) if fetched is not None else None

    # Without parameters the statement goes alone: format-style drivers would otherwise read
    # a literal '%' in it (our SQLite DDL has strftime('%Y...')) as a placeholder.
    def _sa_execute(self, sql: str, params: Params | None) -> Any:
        if params is None:
            return self._conn.exec_driver_sql(sql)
        return self._conn.exec_driver_sql(sql, params.values)

    @staticmethod
    def _cursor_execute(cursor: Any, sql: str, params: Params | None) -> None:
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params.values)


def executor(conn: Any, *, in_transaction: bool = True) -> Executor:
    """The executor of ``conn``; ``OutboxError`` (with the fix) for what cannot be used.

    ``in_transaction``: refuse a connection that would commit each statement by itself (for
    the writes that must share the caller's transaction).
    """
    sa_conn = _sqlalchemy_connection(conn)
    if sa_conn is not None:
        dialect = dialect_named(sa_conn.dialect.name)
        if in_transaction:
            if not sa_conn.in_transaction():
                # Begins what autobegin would have begun on our first statement, so the
                # driver-level check below sees the transaction the caller will commit.
                sa_conn.begin()
            _require_transaction(sa_conn.connection.driver_connection)
        return Executor(dialect, sa_conn.dialect.paramstyle, sa_conn, True)
    module = _driver_module(conn)
    if module is None:
        raise OutboxError(
            f"cannot publish through a {type(conn).__module__}.{type(conn).__qualname__}: "
            "pass a SQLAlchemy Connection or Session, or a DB-API connection of psycopg, "
            "psycopg2, pg8000, PyMySQL, mysqlclient, mysql-connector, mariadb or sqlite3"
        )
    name, driver = module
    if _is_async(conn):
        raise OutboxError("async connections are not supported: pass a synchronous connection")
    if in_transaction:
        _require_transaction(conn)
    paramstyle = str(getattr(driver, "paramstyle", "format"))
    return Executor(_DRIVER_DIALECTS[name], paramstyle, conn, False)


def _sqlalchemy_connection(conn: Any) -> Any:
    orm = sys.modules.get("sqlalchemy.orm")
    if orm is not None and isinstance(conn, orm.Session):
        return conn.connection()
    engine = sys.modules.get("sqlalchemy.engine")
    if engine is None:
        return None
    if isinstance(conn, engine.Connection):
        return conn
    if isinstance(conn, engine.Engine):
        raise OutboxError(
            "publish needs the connection of an open transaction, not an Engine: "
            "with engine.begin() as conn: publish(conn, event)"
        )
    return None


def _driver_module(conn: Any) -> tuple[str, Any] | None:
    top = type(conn).__module__.split(".", 1)[0]
    if top not in _DRIVER_DIALECTS:
        return None
    return top, sys.modules.get(top)


def _is_async(conn: Any) -> bool:
    return type(conn).__name__.startswith("Async")


def _require_transaction(conn: Any) -> None:
    """Refuse a driver connection that would commit our statement by itself."""
    if _autocommits_now(conn):
        raise OutboxError(
            "the connection is in autocommit mode outside a transaction, so the event would "
            "commit on its own: publish inside the transaction of your own writes "
            "(psycopg: with conn.transaction(); sqlite3: after BEGIN or with autocommit off; "
            "PyMySQL: conn.begin())"
        )


def _autocommits_now(conn: Any) -> bool:
    top = type(conn).__module__.split(".", 1)[0]
    if top == "sqlite3":
        # Python 3.12+ has ``autocommit`` (-1: the legacy isolation_level rules apply).
        autocommit = getattr(conn, "autocommit", -1)
        legacy_autocommit = autocommit == -1 and conn.isolation_level is None
        return (autocommit is True or legacy_autocommit) and not conn.in_transaction
    if top == "psycopg":
        return bool(conn.autocommit) and conn.info.transaction_status.name == "IDLE"
    if top == "pymysql":
        in_transaction = bool(getattr(conn, "server_status", 0) & _MYSQL_IN_TRANSACTION)
        return bool(conn.get_autocommit()) and not in_transaction
    if top == "psycopg2":
        return bool(conn.autocommit) and conn.get_transaction_status() == 0  # IDLE
    return False
