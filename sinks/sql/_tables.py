"""Target tables: reflected once and cached, created and evolved from the record shapes.

What a table needs is decided by ``_evolution.plan_changes``; this module runs it. DDL runs in
its own transaction before the data transaction, because MySQL commits implicitly at every
DDL statement. Unsafe changes follow ``evolution.unsafe``: ``fail`` stops the sink naming
every one, ``ignore`` logs them and writes into the table as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.ddl import ExecutableDDLElement

from liberate.errors import FatalError, LiberateError
from sinks.sql._errors import wrap
from sinks.sql._evolution import TableChanges, plan_changes
from sinks.sql._shape import FieldColumn

log = logging.getLogger(__name__)

# Table and column name limits; SQLAlchemy's MySQL dialect reports 255 (its label limit).
_IDENTIFIER_LIMITS = {"mysql": 64, "mariadb": 64}


class TableCatalog:
    """The target tables of one sink: reflection cache, creation and evolution.

    Not thread-safe: used by the sink's one writing thread.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        schema: str | None,
        auto_create: bool,
        auto_evolve: bool,
        unsafe: str = "fail",
    ) -> None:
        self._engine = engine
        self._schema = schema
        self._auto_create = auto_create
        self._auto_evolve = auto_evolve
        self._unsafe = unsafe
        self._tables: dict[str, sa.Table | None] = {}
        self.generation = 0  # bumped whenever a cached table is dropped or replaced

    def where(self, name: str) -> str:
        """``schema.table`` as shown in messages."""
        return f"{self._schema}.{name}" if self._schema else name

    def find(self, name: str) -> sa.Table | None:
        """The reflected table ``name``, or None when it does not exist (cached)."""
        if name not in self._tables:
            self._tables[name] = self._reflect(name)
        return self._tables[name]

    def forget(self) -> None:
        """Drop every cached reflection (a table changed under us)."""
        self._tables.clear()
        self.generation += 1

    def changes(
        self, name: str, columns: Sequence[FieldColumn], *, mode: str,
        excluded: Collection[str] = (), latest: bool = True,
    ) -> TableChanges:
        """What table ``name`` needs for ``columns``, without changing anything; ``latest``:
        the columns come from the latest schema (see ``plan_changes``)."""
        self._check_identifier(name, "table")
        for column in columns:
            self._check_identifier(column.column, "column")
        return plan_changes(
            name,
            self._schema,
            columns,
            self.find(name),
            self._engine.dialect.name,
            key_used=mode in ("upsert", "update"),
            unique_keys=lambda: self._unique_keys(name),
            excluded=excluded,
            latest=latest,
        )

    def ensure(
        self, name: str, columns: Sequence[FieldColumn], *, mode: str,
        excluded: Collection[str] = (), latest: bool = True,
    ) -> sa.Table:
        """The table ``name``, created or evolved for ``columns`` as the settings allow."""
        changes = self.changes(name, columns, mode=mode, excluded=excluded, latest=latest)
        if changes.create is not None:
            return self._create(name, changes)
        if changes.added or changes.widened:
            self._refresh(name)  # another writer may have evolved it already
            changes = self.changes(name, columns, mode=mode, excluded=excluded, latest=latest)
        if changes.unsafe:
            self._unsafe_changes(name, changes)
        if changes.added or changes.widened:
            self._evolve(name, changes)
        table = self.find(name)
        assert table is not None
        if mode == "upsert":
            self._check_key(table, [c.column for c in columns if c.key])
        return table

    def _create(self, name: str, changes: TableChanges) -> sa.Table:
        if not self._auto_create:
            raise FatalError(
                f"target table {self.where(name)} does not exist",
                hint="create the table, or set auto_create: true to let the sink create it",
            )
        try:
            for statement in changes.statements():
                self._ddl(statement, f"create {self.where(name)}")
        except LiberateError:
            if self._refresh(name) is None:
                raise
            # Another writer created it meanwhile (IF NOT EXISTS loses such races).
        log.info("created table %s", self.where(name))
        created = self._refresh(name)
        if created is None:
            raise FatalError(f"table {self.where(name)} was created but cannot be read back")
        return created

    def _unsafe_changes(self, name: str, changes: TableChanges) -> None:
        listed = "; ".join(str(f) for f in changes.unsafe)
        if self._unsafe == "ignore":
            log.warning("table %s: unsafe schema change ignored (%s)", self.where(name), listed)
            return
        raise FatalError(
            f"the records ask for an unsafe change of table {self.where(name)}: {listed}",
            hint="change the table yourself (see `liberate sink plan FILE`), or set "
            "evolution: {unsafe: ignore} to write into the table as it is",
        )

    def _evolve(self, name: str, changes: TableChanges) -> None:
        wanted = [c.name for c in changes.added] + [c.name for c in changes.widened]
        if not self._auto_evolve:
            raise FatalError(
                f"table {self.where(name)} lacks column(s) or column sizes the records need: "
                f"{', '.join(wanted)}",
                hint="alter the table (see `liberate sink plan FILE`), or set auto_evolve: true",
            )
        for statement in changes.statements():
            self._ddl(statement, f"evolve {self.where(name)}")
        log.info("evolved table %s: %s", self.where(name), ", ".join(wanted))
        evolved = self._refresh(name)
        missing = [c.name for c in changes.added if evolved is None or c.name not in evolved.c]
        if missing:
            raise FatalError(f"columns {missing} were added but cannot be read back")

    def _check_key(self, table: sa.Table, key_columns: list[str]) -> None:
        wanted = set(key_columns)
        if not wanted:
            raise FatalError(
                f"records for table {self.where(table.name)} have no key fields",
                hint="upsert mode needs a primary key: produce keyed records, set pk_mode: "
                "record_value with pk_fields, or use mode: insert",
            )
        if {c.name for c in table.primary_key.columns} == wanted:
            return
        if wanted not in self._unique_keys(table.name):
            raise FatalError(
                f"table {self.where(table.name)} has no primary key or unique constraint on "
                f"the record key ({', '.join(key_columns)}), which upserts need",
                hint="make the key columns the primary key, or use mode: insert",
            )

    def _unique_keys(self, name: str) -> list[set[str]]:
        inspector = sa.inspect(self._engine)
        try:
            uniques = [
                set(u["column_names"])
                for u in inspector.get_unique_constraints(name, schema=self._schema)
            ]
            uniques += [
                {str(c) for c in i["column_names"]}
                for i in inspector.get_indexes(name, schema=self._schema)
                if i.get("unique")
            ]
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, f"reading the keys of {self.where(name)}") from exc
        return uniques

    def _refresh(self, name: str) -> sa.Table | None:
        self._tables[name] = self._reflect(name)
        self.generation += 1
        return self._tables[name]

    def _reflect(self, name: str) -> sa.Table | None:
        try:
            with self._engine.connect() as conn:
                return _reflect(conn, name, self._schema)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, f"reading table {self.where(name)}") from exc

    def _ddl(self, statement: ExecutableDDLElement, doing: str) -> None:
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except sa.exc.SQLAlchemyError as exc:
            raise wrap(exc, doing) from exc

    def _check_identifier(self, name: str, what: str) -> None:
        dialect = self._engine.dialect
        limit = _IDENTIFIER_LIMITS.get(dialect.name, dialect.max_identifier_length)
        if not name or len(name) > limit:
            raise FatalError(
                f"{what} name {name!r} is empty or longer than the {limit} characters "
                f"{dialect.name} allows",
                hint="set the sink's table template to a shorter name"
                if what == "table"
                else "rename the field in the source (e.g. a column alias)",
            )


def _reflect(conn: Connection, name: str, schema: str | None) -> sa.Table | None:
    if not sa.inspect(conn).has_table(name, schema=schema):
        return None
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
