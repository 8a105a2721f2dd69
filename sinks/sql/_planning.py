"""``liberate sink plan``: the DDL a sink would run for the schemas in the registry, as text.

Nothing is run: the target tables are only reflected. Each consumed topic gets a comment line
naming its table, then the statements (``CREATE TABLE``, ``ALTER TABLE ... ADD COLUMN``,
widenings), then one comment per unsafe change with what ``evolution.unsafe`` will do.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.ddl import ExecutableDDLElement

from liberate.errors import LiberateError
from liberate.schema.avro import AvroSchema
from sinks.sql._errors import wrap
from sinks.sql._events import envelope_row_schema
from sinks.sql._offsets import OffsetStore
from sinks.sql._parking import ParkedStore
from sinks.sql._shape import ShapeRules, column_name, shape_columns
from sinks.sql._tables import TableCatalog
from sinks.sql.config import SqlSinkConfig, table_name_for


def plan_lines(
    settings: SqlSinkConfig,
    engine: Engine,
    offsets: OffsetStore,
    parking: ParkedStore,
    schemas: Mapping[str, tuple[AvroSchema | None, AvroSchema | None]],
) -> list[str]:
    """SQL statements (``;``-terminated) and ``--`` comments; see the module doc."""
    dialect = engine.dialect
    lines: list[str] = []
    try:
        with engine.connect() as conn:
            for store in (offsets.table, parking.table):
                if not sa.inspect(conn).has_table(store.name, schema=store.schema):
                    lines.append(f"-- the sink's own table {store.fullname}")
                    lines.append(_sql(sa.schema.CreateTable(store), engine))
                    lines.extend(_sql(sa.schema.CreateIndex(i), engine) for i in store.indexes)
    except sa.exc.SQLAlchemyError as exc:
        raise wrap(exc, "reading the target database") from exc
    catalog = TableCatalog(
        engine, schema=settings.target_schema, auto_create=settings.auto_create,
        auto_evolve=settings.auto_evolve, unsafe=settings.evolution.unsafe,
    )
    rules = ShapeRules.of(settings)
    for topic in sorted(schemas):
        key_schema, value_schema = schemas[topic]
        table = table_name_for(settings.table, topic)
        where = catalog.where(table)
        lines.append(f"-- {topic} -> {where} ({dialect.name})")
        if value_schema is None:
            lines.append("--   no value schema registered for this topic yet")
            continue
        row_schema = envelope_row_schema(value_schema) or value_schema
        try:
            columns = shape_columns(
                row_schema, key_schema if settings.pk_mode == "record_key" else None, rules
            )
            written = {c.column for c in columns}
            excluded = [n for n in (column_name(f) for f in row_schema.fields)
                        if n not in written]
            changes = catalog.changes(table, columns, mode=settings.mode, excluded=excluded)
        except LiberateError as exc:
            lines.append(f"--   the sink would stop: {exc.message}")
            continue
        statements = changes.statements()
        if changes.create is not None and not settings.auto_create:
            lines.append("--   the table does not exist and auto_create is off: the sink would "
                         "stop")
        elif (changes.added or changes.widened) and not settings.auto_evolve:
            lines.append("--   auto_evolve is off: the sink would stop; the changes needed:")
        lines.extend(_sql(statement, engine) for statement in statements)
        policy = settings.evolution.unsafe
        outcome = "the sink stops" if policy == "fail" else "ignored, the table stays as it is"
        lines.extend(f"--   unsafe ({outcome}): {f}" for f in changes.unsafe)
        if not statements and not changes.unsafe:
            lines.append("--   up to date")
    return lines


def _sql(statement: ExecutableDDLElement, engine: Engine) -> str:
    return str(statement.compile(dialect=engine.dialect)).strip() + ";"
