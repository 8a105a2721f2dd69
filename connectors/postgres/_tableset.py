"""The configured tables: their keys, reflected definitions, and the forms the snapshot, the
stream and the watermark rule use.

One ``TableSet`` per open source. ``load`` checks that every table exists and has a key (the
configured ``key_columns``, the primary key, or the replica identity index) before anything is
created; the rest builds, per table, what each phase needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from connectors.postgres import _catalog as catalog
from connectors.postgres._changes import RelationState
from connectors.postgres._pgoutput import Relation
from connectors.postgres._rowcode import relation_code
from connectors.postgres._snapshotting import SnapshotTable, snapshot_table
from connectors.postgres._tables import CapturedTable, captured_table
from connectors.postgres._values import KeyText, RowLoader
from connectors.postgres._watermarks import WatermarkFilter
from connectors.postgres.config import PostgresSourceConfig, split_name
from connectors.postgres.offsets import Watermark
from liberate.errors import PrerequisiteError


class TableSet:
    """The source's tables, in configuration order (the snapshot's order)."""

    def __init__(
        self, settings: PostgresSourceConfig, database: str, keys: dict[str, list[str]]
    ) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys  # qualified name -> key columns
        self.names = [".".join(split_name(n)) for n in settings.tables]
        self._reflected: dict[str, sa.Table] = {}
        self._key_types: dict[str, list[int]] | None = None

    @classmethod
    def load(cls, control: Connection, settings: PostgresSourceConfig, database: str
             ) -> TableSet:
        """Check that every table exists and has a key; PrerequisiteError otherwise."""
        missing: list[str] = []
        keys: dict[str, list[str]] = {}
        keyless: list[str] = []
        for name in settings.tables:
            schema, table = split_name(name)
            facts = catalog.table_facts(control, schema, table)
            if facts is None:
                missing.append(f"{schema}.{table}")
                continue
            key = (settings.key_columns_for(schema, table) or list(facts.primary_key)
                   or list(facts.identity_columns))
            if key:
                keys[f"{schema}.{table}"] = key
            else:
                keyless.append(f"{schema}.{table}")
        if missing:
            raise PrerequisiteError(
                f"table(s) {', '.join(missing)} not found in database {database}",
                hint="check tables: (spelling, 'schema.table' for another schema than public)",
            )
        if keyless:
            raise PrerequisiteError(
                f"table {keyless[0]} has no primary key",
                hint="add a primary key, or set key_columns: to the columns that identify a "
                f"row (and ALTER TABLE {keyless[0]} REPLICA IDENTITY FULL so deletes carry them)",
            )
        return cls(settings, database, keys)

    # -- captured forms ------------------------------------------------------------------------

    def captured(self, reflected: sa.Table, relation: Relation | None = None) -> CapturedTable:
        """The captured form of a reflected table (in the Relation's column order if given)."""
        schema, table = str(reflected.schema), reflected.name
        name = f"{schema}.{table}"
        self._reflected[name] = reflected
        return captured_table(
            reflected,
            topic=self.settings.topic_for(schema, table),
            source_name=self.settings.name,
            database=self.database,
            key_columns=self.keys[name],
            stream_columns=[c.name for c in relation.columns] if relation is not None else None,
        )

    def snapshot_tables(self, conn: Connection) -> list[SnapshotTable]:
        """Every table as the snapshot transaction ``conn`` sees it (catalog included)."""
        return [self._snapshot_table(conn, *split_name(name)) for name in self.names]

    def _snapshot_table(self, conn: Connection, schema: str, table: str) -> SnapshotTable:
        facts = catalog.table_facts(conn, schema, table)
        if facts is None:
            raise PrerequisiteError(f"table {schema}.{table} not found")
        reflected = catalog.reflect_table(conn, schema, table)
        captured = self.captured(reflected)
        key_types = type_oids(conn, reflected, captured.schema.key_columns)
        return snapshot_table(
            captured, reflected, facts.relfilenode, KeyText(catalog.driver(conn), key_types)
        )

    def relation_state(self, control: Connection, relation: Relation) -> RelationState:
        """What the stream needs for a Relation message (None parts: a table not captured)."""
        name = f"{relation.namespace}.{relation.name}"
        if name not in self.keys:
            return RelationState(relation, None, None)
        if catalog.table_facts(control, relation.namespace, relation.name) is None:
            raise PrerequisiteError(f"table {name} was dropped while being captured")
        reflected = catalog.reflect_table(control, relation.namespace, relation.name)
        table = self.captured(reflected, relation)
        oids = [c.type_oid for c in relation.columns]
        bases = catalog.base_types(control, oids)
        loader = RowLoader(catalog.driver(control), [bases.get(o, o) for o in oids], where=name)
        row, key = relation_code(table, loader)
        return RelationState(relation, table, loader, row, key)

    # -- the watermark rule ----------------------------------------------------------------------

    def watermark_filter(self, control: Connection, watermarks: Sequence[Watermark]
                         ) -> WatermarkFilter:
        """The filter of a resumed snapshot's watermarks, comparing keys in database order."""

        def load_key(table: str, texts: Sequence[str]) -> tuple[Any, ...]:
            return KeyText(catalog.driver(control), self._types(control)[table]).load(texts)

        def compare(table: str, left: Sequence[str], right: Sequence[str]) -> bool:
            reflected = self._reflected_table(control, table)
            types = [reflected.c[k].type for k in self.keys[table]]
            lhs = sa.tuple_(*[sa.cast(sa.literal(v, sa.Text), t)
                              for v, t in zip(left, types, strict=True)])
            rhs = sa.tuple_(*[sa.cast(sa.literal(v, sa.Text), t)
                              for v, t in zip(right, types, strict=True)])
            return bool(control.execute(sa.select(lhs > rhs)).scalar())

        return WatermarkFilter(
            watermarks,
            {name: i for i, name in enumerate(self.names)},
            key_types=self._types(control),
            load_key=load_key,
            compare_in_database=compare,
        )

    def _types(self, control: Connection) -> dict[str, list[int]]:
        if self._key_types is None:
            self._key_types = {
                name: type_oids(control, self._reflected_table(control, name), keys)
                for name, keys in self.keys.items()
            }
        return self._key_types

    def _reflected_table(self, control: Connection, name: str) -> sa.Table:
        reflected = self._reflected.get(name)
        if reflected is None:
            reflected = self._reflected[name] = catalog.reflect_table(
                control, *split_name(name)
            )
        return reflected


def type_oids(conn: Connection, table: sa.Table, columns: Sequence[str]) -> list[int]:
    """The type oids of ``columns`` of ``table`` (domains resolved to their base types)."""
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, a.atttypid FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0"
        ),
        {"schema": str(table.schema), "table": table.name},
    ).all()
    types = {str(r[0]): int(r[1]) for r in rows}
    oids = [types[c] for c in columns]
    bases = catalog.base_types(conn, oids)
    return [bases.get(o, o) for o in oids]
