"""``liberate check`` for the SQL sink: connectivity, target tables and privileges.

Writes nothing: privileges are read from the catalog (PostgreSQL ``has_*_privilege``, MySQL
``information_schema`` privilege tables, SQLite file permissions), never tried out.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberate.connector import CheckResult
from liberate.database import mask_url
from sinks.sql._errors import PRIVILEGE_HINT, message_of
from sinks.sql.config import SqlSinkConfig, table_name_for

_WRITE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

_PG_CAN_CREATE = sa.text(
    "SELECT has_schema_privilege(current_user, n.oid, 'CREATE') "
    "AND has_database_privilege(current_database(), 'TEMPORARY') FROM pg_namespace n "
    "WHERE n.nspname = COALESCE(:schema, current_schema())"
)
_PG_CAN_WRITE = sa.text(
    "SELECT has_table_privilege(c.oid, 'SELECT,INSERT,UPDATE,DELETE') FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :table AND n.nspname = COALESCE(:schema, current_schema())"
)
# information_schema lists the privileges of every account to an administrator: keep the rows
# of the current account, whose grantee text is 'user'@'host'.
_MYSQL_PRIVILEGES = sa.text(
    "WITH me AS (SELECT CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''') AS account) "
    "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES, me "
    "WHERE GRANTEE = me.account "
    "UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES, me "
    "WHERE GRANTEE = me.account AND TABLE_SCHEMA = COALESCE(:schema, DATABASE()) "
    "UNION SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES, me "
    "WHERE GRANTEE = me.account AND TABLE_SCHEMA = COALESCE(:schema, DATABASE()) "
    "AND TABLE_NAME = :table"
)


def run_checks(config: SqlSinkConfig, engine: Engine) -> list[CheckResult]:
    """Every check of the sink, each failure with its fix."""
    where = mask_url(engine.url)
    try:
        conn = engine.connect()
    except sa.exc.SQLAlchemyError as exc:
        return [
            CheckResult(
                "database",
                False,
                f"cannot reach {where}: {message_of(exc)}",
                hint="check the database URL, that the server runs, and the credentials",
            )
        ]
    results = [CheckResult("database", True, f"connected to {where}")]
    with conn:
        for name, check in (("create tables", _can_create), ("target tables", _tables)):
            try:
                found = check(conn, config)
            except sa.exc.SQLAlchemyError as exc:
                conn.rollback()
                found = CheckResult(
                    name, False, f"cannot check: {message_of(exc)}", hint=PRIVILEGE_HINT
                )
            results.extend(found if isinstance(found, list) else [found])
    return results


_PG_CAN_STAGE = sa.text("SELECT has_database_privilege(current_database(), 'TEMPORARY')")


def _can_create(conn: Connection, config: SqlSinkConfig) -> CheckResult:
    name = "create tables"
    dialect = conn.dialect.name
    schema = config.target_schema
    inspector = sa.inspect(conn)
    own_tables = (config.offsets_table, config.parked_table)
    if not config.auto_create and all(inspector.has_table(t, schema) for t in own_tables):
        # Nothing to create: a user with DML privileges only is enough (docs/security.md),
        # plus TEMPORARY on PostgreSQL, where batches are staged in a temporary table.
        ok = dialect != "postgresql" or bool(conn.execute(_PG_CAN_STAGE).scalar())
        return CheckResult(
            name, ok, "nothing to create: the sink's own tables exist" if ok
            else "may not create the temporary table that stages rows", hint=PRIVILEGE_HINT
        )
    if dialect == "postgresql":
        allowed = conn.execute(_PG_CAN_CREATE, {"schema": schema}).scalar()
        if allowed is None:
            return CheckResult(
                name, False, f"schema {schema} does not exist", hint="create the schema"
            )
        ok = bool(allowed)
    elif dialect in ("mysql", "mariadb"):
        ok = "CREATE" in _mysql_privileges(conn, schema, "")
    elif dialect == "sqlite":
        ok = _sqlite_writable(conn)
    else:
        return CheckResult(name, False, f"unsupported dialect {dialect}")
    needed = "the offsets table" + (" and missing target tables" if config.auto_create else "")
    if ok:
        return CheckResult(name, True, f"may create {needed}")
    return CheckResult(name, False, f"may not create {needed}", hint=PRIVILEGE_HINT)


def _tables(conn: Connection, config: SqlSinkConfig) -> list[CheckResult]:
    if not config.topics:
        return [
            CheckResult(
                "target tables",
                True,
                f"topics matching {config.topics_regex!r} get their tables as they appear",
            )
        ]
    inspector = sa.inspect(conn)
    results = []
    for topic in config.topics:
        table = table_name_for(config.table, topic)
        shown = f"{config.target_schema}.{table}" if config.target_schema else table
        name = f"table for {topic}"
        if not inspector.has_table(table, schema=config.target_schema):
            if config.auto_create:
                results.append(CheckResult(name, True, f"{shown} is created on first write"))
            else:
                results.append(
                    CheckResult(
                        name,
                        False,
                        f"{shown} does not exist and auto_create is off",
                        hint="create the table, or set auto_create: true",
                    )
                )
            continue
        if _can_write(conn, config.target_schema, table):
            results.append(CheckResult(name, True, f"{shown} exists and is writable"))
        else:
            results.append(
                CheckResult(name, False, f"{shown} exists but is not writable", hint=PRIVILEGE_HINT)
            )
    return results


def _can_write(conn: Connection, schema: str | None, table: str) -> bool:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return bool(conn.execute(_PG_CAN_WRITE, {"schema": schema, "table": table}).scalar())
    if dialect in ("mysql", "mariadb"):
        granted = _mysql_privileges(conn, schema, table)
        return all(p in granted for p in _WRITE_PRIVILEGES)
    return _sqlite_writable(conn)


def _mysql_privileges(conn: Connection, schema: str | None, table: str) -> set[str]:
    granted = conn.execute(_MYSQL_PRIVILEGES, {"schema": schema, "table": table}).scalars()
    return {str(p).upper() for p in granted}


def _sqlite_writable(conn: Connection) -> bool:
    database = conn.engine.url.database
    if not database or database == ":memory:":
        return True
    path = Path(database).expanduser()
    return os.access(path if path.exists() else path.parent, os.W_OK)
