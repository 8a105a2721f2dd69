"""Rows of a target to SourceRecords: the entity shape (default) or the Debezium envelope.

A query source sees rows as they are now: it cannot tell a create from an update and never sees
deletes, so every envelope has op ``r`` (read), ``before`` null. The ``source`` block carries
the offset columns: ``timestamp`` (ISO text), ``incrementing`` (long) or the bulk ``cycle``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from connectors.query._cursor_base import OffsetMap, Row
from connectors.query._targets import Target
from connectors.query.offsets import CYCLE, INCREMENTING, TIMESTAMP
from liberate.envelope import change_value, envelope_schema, source_block, source_schema
from liberate.records import SourceRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.tables import TableSchema

CONNECTOR = "query"

POSITION_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": TIMESTAMP, "type": ["null", "string"], "default": None},
    {"name": INCREMENTING, "type": ["null", "long"], "default": None},
    {"name": CYCLE, "type": ["null", "long"], "default": None},
)


class RecordFactory:
    """Builds the records of one target; schemas are built once and shared by every record."""

    def __init__(self, target: Target, *, envelope: str, source_name: str, db: str) -> None:
        self.target = target
        self.debezium = envelope == "debezium"
        self.key_schema: AvroSchema = target.schema.key_schema
        self.value_schema: AvroSchema = target.schema.value_schema
        self.source_name = source_name
        self.db = db
        self.key_of = _key_function(target.schema)
        if self.debezium:
            self.value_schema = envelope_schema(
                target.schema.value_schema, source_schema(CONNECTOR, POSITION_FIELDS)
            )

    def records(
        self,
        rows: Sequence[Row],
        offsets: Sequence[OffsetMap],
        *,
        ts_ms: int,
        snapshot: bool,
    ) -> list[SourceRecord]:
        """One record per row; ``offsets[i]`` is the offset reached after ``rows[i]``."""
        target = self.target
        topic, partition = target.topic, target.partition
        value_of, key_of = target.schema.value_of, self.key_of
        key_schema, value_schema = self.key_schema, self.value_schema
        records: list[SourceRecord] = []
        append = records.append
        if not self.debezium:
            # Values are views of the rows (no dict per row), encoded from the rows.
            row_key, row_value = target.schema.row_key, target.schema.row_value
            for row, offset in zip(rows, offsets, strict=True):
                append(
                    SourceRecord(
                        topic,
                        row_key(row),
                        row_value(row),
                        key_schema,
                        value_schema,
                        partition,
                        offset,
                        (),
                        ts_ms,
                    )
                )
            return records
        snapshot_flag = "true" if snapshot else "false"
        for row, offset in zip(rows, offsets, strict=True):
            after = value_of(row)
            source = source_block(
                connector=CONNECTOR,
                name=self.source_name,
                ts_ms=ts_ms,
                db=self.db,
                schema=target.db_schema,
                table=target.db_table,
                snapshot=snapshot_flag,
                position={
                    TIMESTAMP: offset.get(TIMESTAMP),
                    INCREMENTING: offset.get(INCREMENTING),
                    CYCLE: offset.get(CYCLE),
                },
            )
            value = change_value("r", before=None, after=after, source=source, ts_ms=ts_ms)
            append(
                SourceRecord(
                    topic,
                    key_of(after),
                    value,
                    key_schema,
                    value_schema,
                    partition,
                    offset,
                    (),
                    ts_ms,
                )
            )
        return records


def _key_function(schema: TableSchema) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``schema.key_of`` made cheap for the per-row path (one dict display for one key field)."""
    names = [schema.fields[schema.columns.index(k)] for k in schema.key_columns]
    if len(names) == 1:
        (name,) = names
        return lambda value: {name: value[name]}
    get = itemgetter(*names)
    return lambda value: dict(zip(names, get(value), strict=True))
