"""Row writes per dialect: inserts, upserts, updates, deletes by key and truncates.

- MySQL/MariaDB and SQLite: SQLAlchemy Core statements run with executemany
  (``INSERT ... ON DUPLICATE KEY UPDATE`` / ``INSERT ... ON CONFLICT DO UPDATE``); PyMySQL
  rewrites an executemany INSERT into multi-row statements, sqlite3 loops in C.
- PostgreSQL: psycopg runs an executemany one statement per row, so rows are streamed with a
  binary ``COPY`` into a temporary table instead, then moved with one ``INSERT ... SELECT``
  (``ON CONFLICT DO UPDATE`` for upserts) or one ``UPDATE ... FROM``: measured several times
  faster than executemany.

Columns named in ``kept`` (unchanged TOAST values) are inserted as sent (null) but never
updated. Deletes are ``DELETE ... WHERE key IN (...)`` (a row-value IN for composite keys) in
chunks; a truncate is a ``DELETE`` of every row, inside the batch's transaction (``TRUNCATE``
commits implicitly on MySQL). Every statement is built from SQLAlchemy constructs or
``psycopg.sql`` identifiers; nothing from a record or a config is formatted into SQL text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from liberate.errors import FatalError
from sinks.sql._events import Change
from sinks.sql._layouts import KeyLayout, RowLayout
from sinks.sql._values import needs_cast

DELETE_CHUNK = 500  # keys per DELETE: well under every dialect's bind parameter limit
NO_COLUMNS: frozenset[str] = frozenset()


def upsert_statement(
    dialect: str,
    table: sa.TableClause,
    key_columns: Sequence[str],
    columns: Sequence[str],
    kept: frozenset[str] = NO_COLUMNS,
) -> sa.Insert:
    """An INSERT of ``columns`` that updates the other columns (but ``kept``) of a row whose
    key exists."""
    others = [c for c in columns if c not in key_columns and c not in kept]
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


def _updated(layout: RowLayout, kept: frozenset[str]) -> list[str]:
    return [c for c in layout.columns if c not in layout.key_columns and c not in kept]


class SqlWriter:
    """Writes rows with SQLAlchemy statements; also the row-by-row path of every dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect.name
        self._dialect = dialect
        self._statements: dict[tuple[sa.TableClause, str, frozenset[str]], sa.Executable] = {}

    def reset(self) -> None:
        """Forget the statements built for earlier layouts (their tables were reflected anew)."""
        self._statements.clear()

    def write(
        self,
        conn: Connection,
        layout: RowLayout,
        changes: Sequence[Change],
        *,
        mode: str,
        kept: frozenset[str] = NO_COLUMNS,
    ) -> None:
        """Insert, upsert or update (``mode``) the rows of ``changes``."""
        rows = layout.rows(changes)
        if mode == "update":
            self._update(conn, layout, rows, kept)
            return
        statement = self._statement(layout, mode, kept)
        columns = layout.columns
        conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in rows])

    def _update(
        self, conn: Connection, layout: RowLayout, rows: list[tuple[Any, ...]],
        kept: frozenset[str],
    ) -> None:
        updated = _updated(layout, kept)
        if not updated:
            return  # nothing but the key: an update changes nothing
        statement = self._statement(layout, "update", kept)
        index = {c: i for i, c in enumerate(layout.columns)}
        binds = [f"k{i}" for i in range(len(layout.key_columns))]
        binds += [f"v{i}" for i in range(len(updated))]
        order = [index[c] for c in layout.key_columns] + [index[c] for c in updated]
        conn.execute(
            statement,
            [dict(zip(binds, (row[i] for i in order), strict=True)) for row in rows],
        )

    def delete(self, conn: Connection, layout: KeyLayout, changes: Sequence[Change]) -> None:
        """Delete the rows whose keys are the keys of ``changes``."""
        key = list(layout.table.c)
        match = key[0] if len(key) == 1 else sa.tuple_(*key)
        statement = sa.delete(layout.table).where(match.in_(sa.bindparam("keys", expanding=True)))
        keys = layout.keys(changes)
        values: list[Any] = keys if len(layout.key_columns) > 1 else [k[0] for k in keys]
        for start in range(0, len(values), DELETE_CHUNK):
            conn.execute(statement, {"keys": values[start : start + DELETE_CHUNK]})

    def truncate(self, conn: Connection, table: sa.Table) -> None:
        """Delete every row of ``table``."""
        conn.execute(sa.delete(table))

    def _statement(self, layout: RowLayout, kind: str, kept: frozenset[str]) -> sa.Executable:
        cache_key = (layout.table, kind, kept)
        cached = self._statements.get(cache_key)
        if cached is None:
            cached = self._statements[cache_key] = self._build(layout, kind, kept)
        return cached

    def _build(self, layout: RowLayout, kind: str, kept: frozenset[str]) -> sa.Executable:
        table = layout.table
        if kind == "upsert":
            return upsert_statement(
                self.dialect, table, layout.key_columns, layout.columns, kept
            )
        if kind == "update":
            match = [
                table.c[c] == sa.bindparam(f"k{i}") for i, c in enumerate(layout.key_columns)
            ]
            values = {
                table.c[c]: sa.bindparam(f"v{i}", type_=table.c[c].type)
                for i, c in enumerate(_updated(layout, kept))
            }
            return sa.update(table).where(*match).values(values)
        return sa.insert(table)


class PostgresCopyWriter(SqlWriter):
    """PostgreSQL: rows go through a binary COPY into a temporary staging table, then one
    ``INSERT ... SELECT`` (with ``ON CONFLICT DO UPDATE`` for upserts) or one
    ``UPDATE ... FROM`` moves them over."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        self._stages: dict[sa.TableClause, sa.Table] = {}
        self._stage_texts: dict[sa.Table, tuple[str, str]] = {}
        self._merges: dict[tuple[sa.TableClause, str, frozenset[str]], sa.Executable] = {}
        self._stage_count = 0

    def reset(self) -> None:
        super().reset()
        self._stages.clear()
        self._stage_texts.clear()
        self._merges.clear()

    def write(
        self,
        conn: Connection,
        layout: RowLayout,
        changes: Sequence[Change],
        *,
        mode: str,
        kept: frozenset[str] = NO_COLUMNS,
    ) -> None:
        if mode == "update" and not _updated(layout, kept):
            return
        rows = layout.copy_rows(changes)
        stage = self._stage(layout)
        create, drop = self._stage_ddl(stage)
        conn.exec_driver_sql(create)
        self._copy(conn, stage, [f.pg_type for f in layout.copy_fields], rows)
        conn.execute(self._merge(layout, stage, mode, kept))
        conn.exec_driver_sql(drop)

    def _stage_ddl(self, stage: sa.Table) -> tuple[str, str]:
        """The CREATE and DROP of a staging table, compiled once per table (not per batch)."""
        ddl = self._stage_texts.get(stage)
        if ddl is None:
            ddl = self._stage_texts[stage] = (
                str(sa.schema.CreateTable(stage).compile(dialect=self._dialect)),
                str(sa.schema.DropTable(stage).compile(dialect=self._dialect)),
            )
        return ddl

    def _stage(self, layout: RowLayout) -> sa.Table:
        stage = self._stages.get(layout.table)
        if stage is None:
            # Temporary, and dropped on commit as well: a failed batch leaves nothing behind.
            self._stage_count += 1
            stage = self._stages[layout.table] = sa.Table(
                f"liberate_stage_{self._stage_count}",
                sa.MetaData(),
                *[
                    sa.Column(name, field.stage_type)
                    for name, field in zip(layout.columns, layout.copy_fields, strict=True)
                ],
                prefixes=["TEMPORARY"],
                postgresql_on_commit="DROP",
            )
        return stage

    def _merge(
        self, layout: RowLayout, stage: sa.Table, mode: str, kept: frozenset[str]
    ) -> sa.Executable:
        cache_key = (layout.table, mode, kept)
        merge = self._merges.get(cache_key)
        if merge is None:
            merge = self._merges[cache_key] = _merge_statement(self.dialect, layout, stage,
                                                               mode, kept)
        return merge

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


def _merge_statement(
    dialect: str, layout: RowLayout, stage: sa.Table, mode: str, kept: frozenset[str]
) -> sa.Executable:
    def staged(name: str) -> sa.ColumnElement[Any]:
        target_type = layout.target.c[name].type
        if needs_cast(stage.c[name].type, target_type):
            return sa.cast(stage.c[name], target_type)
        return stage.c[name]

    target = layout.table
    if mode == "update":
        return (
            sa.update(target)
            .values({target.c[c]: staged(c) for c in _updated(layout, kept)})
            .where(*[target.c[c] == staged(c) for c in layout.key_columns])
        )
    insert = (
        upsert_statement(dialect, target, layout.key_columns, layout.columns, kept)
        if mode == "upsert"
        else sa.insert(target)
    )
    return insert.from_select(list(layout.columns), sa.select(*[staged(c) for c in layout.columns]))


class DriverWriter(SqlWriter):
    """MySQL/MariaDB and SQLite: inserts and upserts go to the driver's ``executemany`` as the
    statement SQLAlchemy compiles (positional placeholders) and tuples the layout made ready
    (bind processing included), without SQLAlchemy's per-row parameter handling: a third of
    the sink's time on MariaDB. Any other statement takes the SQLAlchemy path."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect)
        self._texts: dict[tuple[sa.TableClause, str, frozenset[str]], str | None] = {}
        self._positional = _positional(dialect)

    def reset(self) -> None:
        super().reset()
        self._texts.clear()

    def write(
        self,
        conn: Connection,
        layout: RowLayout,
        changes: Sequence[Change],
        *,
        mode: str,
        kept: frozenset[str] = NO_COLUMNS,
    ) -> None:
        text = self._text(layout, mode, kept) if mode != "update" else None
        if text is None:
            super().write(conn, layout, changes, mode=mode, kept=kept)
            return
        conn.exec_driver_sql(text, layout.driver_rows(changes))

    def _text(self, layout: RowLayout, mode: str, kept: frozenset[str]) -> str | None:
        cache_key = (layout.table, mode, kept)
        if cache_key not in self._texts:
            statement = self._statement(layout, mode, kept)
            assert isinstance(statement, sa.ClauseElement)
            compiled = statement.compile(dialect=self._positional)
            # Only when the placeholders are exactly the columns, in order.
            order = compiled.positiontup if isinstance(compiled, SQLCompiler) else None
            fits = list(order or ()) == list(layout.columns)
            self._texts[cache_key] = str(compiled) if fits else None
        return self._texts[cache_key]


def _positional(dialect: Dialect) -> Dialect:
    """``dialect`` with positional placeholders (PyMySQL's ``%s`` take tuples); SQLite's
    ``?`` already are. The server facts that decide how statements render are kept."""
    if dialect.name not in ("mysql", "mariadb"):
        return dialect
    make: Callable[..., Dialect] = type(dialect)
    positional = make(paramstyle="format", is_mariadb=getattr(dialect, "is_mariadb", False))
    positional.server_version_info = dialect.server_version_info
    return positional


def writer_for(dialect: Dialect) -> SqlWriter:
    """The bulk writer of a dialect."""
    if dialect.name == "postgresql":
        return PostgresCopyWriter(dialect)
    return DriverWriter(dialect)
