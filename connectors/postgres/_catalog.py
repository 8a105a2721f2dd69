"""What the source asks the catalog, and the objects it creates: server facts, the slot, the
publication, tables and their types.

Queries run on an autocommit SQLAlchemy connection with bound parameters; DDL naming objects
is composed with ``psycopg.sql`` (quoted identifiers), never formatted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from psycopg.types.json import JsonbLoader, JsonLoader
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError

from connectors.postgres._pgoutput import parse_lsn
from liberate.errors import PrerequisiteError
from liberate.schema.postgres_types import (
    base_type,
    name_unrecognised_types,
    register_text_loaders,
)


def driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy connection."""
    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError("the postgres source needs the psycopg driver")
    return raw


def _lsn(value: Any) -> int | None:
    return parse_lsn(str(value)) if value is not None else None


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """Settings and rights that decide whether logical replication can work."""

    version: int
    wal_level: str
    max_replication_slots: int
    slots_used: int
    superuser: bool
    replication: bool
    database: str
    user: str


def server_facts(conn: Connection) -> ServerFacts:
    """The server's version, wal_level, slot headroom and the role's rights."""
    row = conn.execute(
        sa.text(
            "SELECT current_setting('server_version_num')::int,"
            " current_setting('wal_level'),"
            " current_setting('max_replication_slots')::int,"
            " (SELECT count(*) FROM pg_replication_slots),"
            " r.rolsuper, r.rolreplication, current_database(), current_user"
            " FROM pg_roles r WHERE r.rolname = current_user"
        )
    ).one()
    return ServerFacts(
        version=row[0], wal_level=row[1], max_replication_slots=row[2], slots_used=row[3],
        superuser=row[4], replication=row[5], database=row[6], user=row[7],
    )


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """A row of pg_replication_slots."""

    name: str
    plugin: str | None
    slot_type: str
    database: str | None
    temporary: bool
    active: bool
    active_pid: int | None
    wal_status: str | None
    restart_lsn: int | None
    confirmed_flush: int | None

    @property
    def lost(self) -> bool:
        """The slot can no longer serve changes (its WAL was removed)."""
        return self.wal_status == "lost" or (
            self.restart_lsn is None and self.confirmed_flush is not None
        )


_SLOT_QUERY = (
    "SELECT slot_name, plugin, slot_type, database, temporary, active, active_pid, wal_status,"
    " restart_lsn::text, confirmed_flush_lsn::text"
    " FROM pg_replication_slots WHERE slot_name = :name"
)
_SLOT_QUERY_12 = _SLOT_QUERY.replace("wal_status", "NULL")


def slot_info(conn: Connection, name: str) -> SlotInfo | None:
    """The slot ``name``, or None when it does not exist."""
    version = conn.execute(sa.text("SELECT current_setting('server_version_num')::int")).scalar()
    # wal_status appeared in PostgreSQL 13.
    query = _SLOT_QUERY if version is not None and version >= 130000 else _SLOT_QUERY_12
    row = conn.execute(sa.text(query), {"name": name}).one_or_none()
    if row is None:
        return None
    return SlotInfo(
        name=row[0], plugin=row[1], slot_type=row[2], database=row[3], temporary=row[4],
        active=row[5], active_pid=row[6], wal_status=row[7], restart_lsn=_lsn(row[8]),
        confirmed_flush=_lsn(row[9]),
    )


def current_wal_lsn(conn: Connection) -> int:
    """pg_current_wal_lsn() (on a standby: the last replayed LSN)."""
    text = conn.execute(
        sa.text(
            "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()"
            " ELSE pg_current_wal_lsn() END::text"
        )
    ).scalar_one()
    return parse_lsn(str(text))


def emit_message(conn: Connection, prefix: str, content: str, *, transactional: bool) -> int:
    """pg_logical_emit_message; the LSN of the message."""
    text = conn.execute(
        sa.text("SELECT pg_logical_emit_message(:tx, :prefix, :content)::text"),
        {"tx": transactional, "prefix": prefix, "content": content},
    ).scalar_one()
    return parse_lsn(str(text))


def drop_slot(conn: Connection, name: str) -> None:
    """Drop the replication slot ``name`` (only ever on an explicit choice of the user)."""
    conn.execute(sa.text("SELECT pg_drop_replication_slot(:name)"), {"name": name})


def create_slot_sql(conn: Connection, name: str) -> int:
    """Create a pgoutput slot without exporting a snapshot; its consistent point."""
    text = conn.execute(
        sa.text("SELECT lsn::text FROM pg_create_logical_replication_slot(:name, 'pgoutput')"),
        {"name": name},
    ).scalar_one()
    return parse_lsn(str(text))


# -- publications ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicationInfo:
    """A publication: which tables and which operations it publishes."""

    name: str
    all_tables: bool
    operations: frozenset[str]
    tables: frozenset[tuple[str, str]]


def publication_info(conn: Connection, name: str) -> PublicationInfo | None:
    """The publication ``name`` (from pg_publication), or None."""
    row = conn.execute(
        sa.text(
            "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate"
            " FROM pg_publication WHERE pubname = :name"
        ),
        {"name": name},
    ).one_or_none()
    if row is None:
        return None
    operations = frozenset(
        op for op, on in zip(("insert", "update", "delete", "truncate"), row[1:], strict=True)
        if on
    )
    tables = conn.execute(
        sa.text("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = :name"),
        {"name": name},
    ).all()
    return PublicationInfo(name, bool(row[0]), operations, frozenset((t[0], t[1]) for t in tables))


def create_publication(conn: Connection, name: str, tables: Sequence[tuple[str, str]]) -> None:
    """CREATE PUBLICATION ``name`` FOR TABLE ``tables`` (every operation)."""
    statement = sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        sql.Identifier(name),
        sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in tables),
    )
    driver(conn).execute(statement)


# -- tables --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableFacts:
    """Catalog facts of one table that reflection does not give."""

    oid: int
    relfilenode: int
    replica_identity: str
    primary_key: tuple[str, ...]
    identity_columns: tuple[str, ...]


def table_facts(conn: Connection, schema: str, table: str) -> TableFacts | None:
    """The table's oid, relfilenode, replica identity and key columns; None when missing."""
    row = conn.execute(
        sa.text(
            "SELECT c.oid, c.relfilenode, c.relreplident FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND c.relkind IN ('r', 'p')"
        ),
        {"schema": schema, "table": table},
    ).one_or_none()
    if row is None:
        return None
    oid = int(row[0])
    return TableFacts(
        oid=oid,
        relfilenode=int(row[1]),
        replica_identity=str(row[2]),
        primary_key=_index_columns(conn, oid, primary=True),
        identity_columns=_index_columns(conn, oid, primary=False),
    )


def _index_columns(conn: Connection, oid: int, *, primary: bool) -> tuple[str, ...]:
    """The columns of the primary key index, or of the replica identity index."""
    rows = conn.execute(
        sa.text(
            "SELECT a.attname FROM pg_index i"
            " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = :oid"
            " AND CASE WHEN :primary THEN i.indisprimary ELSE i.indisreplident END"
            " ORDER BY k.n"
        ),
        {"oid": oid, "primary": primary},
    ).all()
    return tuple(r[0] for r in rows)


def reflect_table(conn: Connection, schema: str, table: str) -> sa.Table:
    """The reflected table; PrerequisiteError when it does not exist.

    Domain columns get their base type: values of a domain are values of its base type (a
    query and pgoutput return them as such). Columns of a type SQLAlchemy does not know keep
    the catalog's name of it, for the error that refuses them.
    """
    try:
        with _json_as_objects(conn):
            reflected = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
    except NoSuchTableError as exc:
        raise PrerequisiteError(
            f"table {schema}.{table} not found",
            hint="check tables: (spelling, 'schema.table' for another schema than public) and "
            "that the user may read it",
        ) from exc
    for column in reflected.columns:
        column.type = base_type(column.type)
    return name_unrecognised_types(conn, reflected)


@contextmanager
def _json_as_objects(conn: Connection) -> Iterator[None]:
    # SQLAlchemy reads identity columns' options as a json object; the source's connections
    # load json as text (``_engine``), which fails it: psycopg's loaders for the reflection.
    adapters = driver(conn).adapters
    adapters.register_loader("json", JsonLoader)
    adapters.register_loader("jsonb", JsonbLoader)
    try:
        yield
    finally:
        register_text_loaders(adapters)


def base_types(conn: Connection, oids: Iterable[int]) -> dict[int, int]:
    """The base type of every domain among ``oids`` (domains of domains resolved)."""
    rows = conn.execute(
        sa.text(
            "WITH RECURSIVE d(oid, base) AS ("
            " SELECT oid, typbasetype FROM pg_type WHERE oid = ANY(:oids) AND typtype = 'd'"
            " UNION ALL SELECT d.oid, t.typbasetype FROM d JOIN pg_type t ON t.oid = d.base"
            " WHERE t.typtype = 'd')"
            " SELECT d.oid, d.base FROM d JOIN pg_type t ON t.oid = d.base WHERE t.typtype <> 'd'"
        ),
        {"oids": sorted(set(oids))},
    ).all()
    return {int(r[0]): int(r[1]) for r in rows}
