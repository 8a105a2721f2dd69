"""Row writes per dialect: upserts, plain inserts and deletes by key.

- MySQL/MariaDB and SQLite: SQLAlchemy Core statements run with executemany
  (``INSERT ... ON DUPLICATE KEY UPDATE`` / ``INSERT ... ON CONFLICT DO UPDATE``); PyMySQL
  rewrites an executemany INSERT into multi-row statements, sqlite3 loops in C.
- PostgreSQL: psycopg runs an executemany one statement per row, so rows are streamed with a
  binary ``COPY`` into a temporary table instead, then moved with one ``INSERT ... SELECT``
  (``ON CONFLICT DO UPDATE`` for upserts): measured several times faster than executemany.

Deletes are ``DELETE ... WHERE key IN (...)`` (a row-value IN for composite keys) in chunks.
Every statement is built from SQLAlchemy constructs or ``psycopg.sql`` identifiers; nothing
from a record or a config is formatted into SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from liberate.errors import FatalError
from sinks.sql._events import Change
from sinks.sql._layouts import KeyLayout, RowLayout
from sinks.sql._values import needs_cast

DELETE_CHUNK = 500  # keys per DELETE: well under every dialect's bind parameter limit


def upsert_statement(
    dialect: str, table: sa.TableClause, key_columns: Sequence[str], columns: Sequence[str]
) -> sa.Insert:
    """An INSERT of ``columns`` that updates the other columns of a row whose key exists."""
    others = [c for c in columns if c not in key_columns]
    if dialect in ("mysql", "mariadb"):
        mysql_insert = mysql.insert(table)
        # With nothing else to update, assigning the key to itself turns a duplicate into a
        # no-op without INSERT IGNORE, which would also swallow real errors.
        updated = others or [key_columns[0]]
        return mysql_insert.on_duplicate_key_update(
            {c: _inserted_value(mysql_insert, c) for c in updated}
        )
    if dialect in ("postgresql", "sqlite"):
        # Both spell it INSERT ... ON CONFLICT (key) DO UPDATE SET c = excluded.c.
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        if not others:
            return insert.on_conflict_do_nothing(index_elements=list(key_columns))
        return insert.on_conflict_do_update(
            index_elements=list(key_columns), set_={c: insert.excluded[c] for c in others}
        )
    raise FatalError(
        f"the SQL sink does not support the {dialect} dialect",
        hint="use PostgreSQL, MySQL/MariaDB or SQLite as the target",
    )


def _inserted_value(statement: mysql.Insert, column: str) -> sa.ColumnElement[Any]:
    if "%" in column:
        # SQLAlchemy escapes the percent sign twice inside its VALUES(...) rendering for
        # pyformat drivers, naming a column that does not exist; a plain column escapes once.
        return sa.func.values(sa.column(column))
    return statement.inserted[column]


class SqlWriter:
    """Writes rows with SQLAlchemy statements; also the row-by-row path of every dialect."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._statements: dict[tuple[sa.TableClause, str], sa.Executable] = {}

    def reset(self) -> None:
        """Forget the statements built for earlier layouts (their tables were reflected anew)."""
        self._statements.clear()

    def write(
        self, conn: Connection, layout: RowLayout, changes: Sequence[Change], *, upsert: bool
    ) -> None:
        """Upsert (or plainly insert) the rows of ``changes``."""
        statement = self._statement(layout.table, "upsert" if upsert else "insert", layout)
        columns = layout.columns
        rows = layout.rows(changes)
        conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])

    def delete(self, conn: Connection, layout: KeyLayout, changes: Sequence[Change]) -> None:
        """Delete the rows whose keys are the keys of ``changes``."""
        statement = self._statement(layout.table, "delete", None)
        keys = layout.keys(changes)
        values: list[Any] = keys if len(layout.key_columns) > 1 else [k[0] for k in keys]
        for start in range(0, len(values), DELETE_CHUNK):
            conn.execute(statement, {"keys": values[start : start + DELETE_CHUNK]})

    def _statement(
        self, table: sa.TableClause, kind: str, layout: RowLayout | None
    ) -> sa.Executable:
        cached = self._statements.get((table, kind))
        if cached is None:
            cached = self._build(table, kind, layout)
            self._statements[(table, kind)] = cached
        return cached

    def _build(self, table: sa.TableClause, kind: str, layout: RowLayout | None) -> sa.Executable:
        if kind == "delete":
            key = list(table.c)
            match = key[0] if len(key) == 1 else sa.tuple_(*key)
            return sa.delete(table).where(match.in_(sa.bindparam("keys", expanding=True)))
        assert layout is not None
        if kind == "upsert":
            return upsert_statement(self.dialect, table, layout.key_columns, layout.columns)
        return sa.insert(table)


class PostgresCopyWriter(SqlWriter):
    """PostgreSQL: rows go through a binary COPY into a temporary staging table, then one
    ``INSERT ... SELECT`` (with ``ON CONFLICT DO UPDATE`` for upserts) moves them over."""

    def __init__(self, dialect: str) -> None:
        super().__init__(dialect)
        self._stages: dict[tuple[sa.TableClause, bool], tuple[sa.Table, sa.Insert]] = {}
        self._stage_count = 0

    def reset(self) -> None:
        super().reset()
        self._stages.clear()

    def write(
        self, conn: Connection, layout: RowLayout, changes: Sequence[Change], *, upsert: bool
    ) -> None:
        rows = layout.copy_rows(changes)
        stage, merge = self._stage(layout, upsert)
        conn.execute(sa.schema.CreateTable(stage))
        self._copy(conn, stage, [f.pg_type for f in layout.copy_fields], rows)
        conn.execute(merge)
        conn.execute(sa.schema.DropTable(stage))

    def _stage(self, layout: RowLayout, upsert: bool) -> tuple[sa.Table, sa.Insert]:
        found = self._stages.get((layout.table, upsert))
        if found is None:
            # Temporary, and dropped on commit as well: a failed batch leaves nothing behind.
            self._stage_count += 1
            stage = sa.Table(
                f"liberate_stage_{self._stage_count}",
                sa.MetaData(),
                *[
                    sa.Column(name, field.stage_type)
                    for name, field in zip(layout.columns, layout.copy_fields, strict=True)
                ],
                prefixes=["TEMPORARY"],
                postgresql_on_commit="DROP",
            )
            selected = [
                sa.cast(stage.c[name], layout.target.c[name].type)
                if needs_cast(field.stage_type, layout.target.c[name].type)
                else stage.c[name]
                for name, field in zip(layout.columns, layout.copy_fields, strict=True)
            ]
            insert = (
                upsert_statement(self.dialect, layout.table, layout.key_columns, layout.columns)
                if upsert
                else sa.insert(layout.table)
            )
            found = (stage, insert.from_select(list(layout.columns), sa.select(*selected)))
            self._stages[(layout.table, upsert)] = found
        return found

    @staticmethod
    def _copy(
        conn: Connection, stage: sa.Table, types: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> None:
        from psycopg import sql

        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(stage.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in stage.c)
        )
        driver = conn.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)


def writer_for(dialect: str) -> SqlWriter:
    """The writer of a dialect (``engine.dialect.name``)."""
    if dialect == "postgresql":
        return PostgresCopyWriter(dialect)
    return SqlWriter(dialect)
