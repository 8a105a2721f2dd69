"""One captured table: its topic, Avro schemas, and how its rows become change events.

Built from the reflected table (the catalog, as the snapshot reads it) in the column order of
the pgoutput Relation message (as the stream sends it), so one object serves ``r`` events from
the snapshot and ``c``/``u``/``d``/``t`` events from the WAL alike.

Every non-key column of the envelope's row record is nullable: under REPLICA IDENTITY DEFAULT
the ``before`` of a delete carries only the key, and an unchanged TOAST value has no value at
all (it is null in ``after`` and named in the envelope's ``unchanged`` field). A column the
catalog declares NOT NULL keeps that fact as the field's ``liberate.not_null`` attribute, so a
sink creates it NOT NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from liberate import __version__
from liberate.envelope import envelope_schema, source_schema
from liberate.schema.avro import AvroSchema
from liberate.schema.tables import TableSchema, build_table_schema
from liberate.schema.types import NOT_NULL_ATTRIBUTE

CONNECTOR = "postgresql"

#: the ``source`` block of PostgreSQL events: the common fields plus the WAL position
SOURCE_SCHEMA = source_schema(
    CONNECTOR,
    [
        {"name": "txId", "type": ["null", "long"], "default": None},
        {"name": "lsn", "type": ["null", "long"], "default": None},
    ],
)


@dataclass(frozen=True, slots=True)
class CapturedTable:
    """A table the source captures, in one schema version."""

    name: str  # schema.table
    schema_name: str
    table_name: str
    topic: str
    schema: TableSchema
    key_schema: AvroSchema
    value_schema: AvroSchema  # the envelope
    #: for each schema column, its index in the stream tuple (None: same order, same length)
    positions: tuple[int, ...] | None
    #: stream tuple indexes of the key columns
    key_indexes: tuple[int, ...]
    #: the stream tuple's column names, in order
    stream_columns: tuple[str, ...]
    #: the ``source`` block of its events, to be copied (``copy()``) and completed
    source_template: dict[str, Any]

    def value_of_stream(self, values: Sequence[Any]) -> dict[str, Any]:
        """The row record of a loaded stream tuple."""
        if self.positions is None:
            return self.schema.value_of(values)
        return self.schema.value_of([values[i] for i in self.positions])

    def source(self, *, ts_ms: int, snapshot: str, tx_id: int | None, lsn: int | None
               ) -> dict[str, Any]:
        """The ``source`` block of one event."""
        block = self.source_template.copy()
        block["ts_ms"] = ts_ms
        block["snapshot"] = snapshot
        block["txId"] = tx_id
        block["lsn"] = lsn
        return block

    def field_of(self, stream_index: int) -> str | None:
        """The Avro field of a stream column (None when the schema does not have it)."""
        name = self.stream_columns[stream_index]
        try:
            return self.schema.fields[self.schema.columns.index(name)]
        except ValueError:
            return None


def captured_table(
    table: sa.Table,
    *,
    topic: str,
    source_name: str,
    database: str,
    key_columns: Sequence[str] | None,
    stream_columns: Sequence[str] | None = None,
) -> CapturedTable:
    """The captured form of reflected ``table``.

    ``stream_columns`` is the column order of the Relation message (default: the table's);
    columns the catalog no longer has are left out of the schema, and columns the Relation does
    not have yet are not in it either.
    """
    # pgoutput does not send generated columns (before PostgreSQL 18): neither does the snapshot.
    reflected = [c.name for c in table.columns if c.computed is None]
    order = list(stream_columns) if stream_columns is not None else reflected
    columns = [c for c in order if c in reflected]
    schema = build_table_schema(table, namespace=topic, key_columns=key_columns, columns=columns,
                                dialect="postgresql")
    keys = set(schema.key_columns)
    row_fields = []
    for column, spec in zip(schema.columns, schema.row_fields, strict=True):
        field = dict(spec)
        if column not in keys and not (
            isinstance(field["type"], list) and "null" in field["type"]
        ):
            field["type"] = ["null", field["type"]]
            field["default"] = None
            field[NOT_NULL_ATTRIBUTE] = True
        row_fields.append(field)
    row_schema = AvroSchema({**schema.value_schema.schema, "fields": row_fields})
    positions: tuple[int, ...] | None = tuple(order.index(c) for c in columns)
    if positions == tuple(range(len(order))):
        positions = None
    return CapturedTable(
        name=f"{table.schema}.{table.name}",
        schema_name=str(table.schema),
        table_name=table.name,
        topic=topic,
        schema=schema,
        key_schema=schema.key_schema,
        value_schema=envelope_schema(row_schema, SOURCE_SCHEMA, unchanged=True),
        positions=positions,
        key_indexes=tuple(order.index(k) for k in schema.key_columns),
        stream_columns=tuple(order),
        source_template={
            "version": __version__,
            "connector": CONNECTOR,
            "name": source_name,
            "ts_ms": 0,
            "snapshot": "false",
            "db": database,
            # Plain str (not SQLAlchemy's quoted_name): see ``_rowcode``
            "schema": str(table.schema) if table.schema is not None else None,
            "table": str(table.name),
            "txId": None,
            "lsn": None,
        },
    )
