"""The Debezium change-event envelope (contract, DESIGN §3).

Value ``{before, after, source, op, ts_ms, transaction}``; op codes ``r`` snapshot read,
``c`` create, ``u`` update, ``d`` delete, ``t`` truncate, ``m`` message. The record names
follow Debezium (``<namespace>.Envelope``, ``<namespace>.Value``), so tools that read
Debezium topics read these unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from liberate import __version__
from liberate.schema.avro import AvroSchema

Op = Literal["r", "c", "u", "d", "t", "m"]

#: fields every ``source`` block has, before the connector's own position fields
COMMON_SOURCE_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "version", "type": "string"},
    {"name": "connector", "type": "string"},
    {"name": "name", "type": "string"},
    {"name": "ts_ms", "type": "long"},
    {"name": "snapshot", "type": ["string", "null"], "default": "false"},
    {"name": "db", "type": "string"},
    {"name": "schema", "type": ["null", "string"], "default": None},
    {"name": "table", "type": ["null", "string"], "default": None},
)

TRANSACTION_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "ConnectDefault",
    "namespace": "event.block",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"},
    ],
}


#: Optional envelope field (liberate's extension, compatible: it has a default) naming the
#: ``after`` columns whose value did not change and was not sent (PostgreSQL unchanged TOAST
#: values). Their ``after`` value is null and means "keep the current value", never "set NULL";
#: readers that do not know the field ignore it. Null or absent: every column has its value.
UNCHANGED_FIELD: dict[str, Any] = {
    "name": "unchanged",
    "type": ["null", {"type": "array", "items": "string"}],
    "default": None,
}


def source_schema(connector: str, position_fields: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``source`` record of ``connector``: common fields plus its position fields."""
    return {
        "type": "record",
        "name": "Source",
        "namespace": f"io.debezium.connector.{connector}",
        "fields": [*COMMON_SOURCE_FIELDS, *position_fields],
    }


def envelope_schema(
    row_schema: AvroSchema, source: Mapping[str, Any], *, unchanged: bool = False
) -> AvroSchema:
    """The envelope schema around a table's row record (``<namespace>.Value``).

    ``unchanged`` adds the optional ``unchanged`` field (``UNCHANGED_FIELD``) at the end.
    """
    row = row_schema.schema
    namespace = row.get("namespace")
    row_name = f"{namespace}.{row['name']}" if namespace else row["name"]
    return AvroSchema(
        {
            "type": "record",
            "name": "Envelope",
            "namespace": namespace,
            "connect.name": f"{namespace}.Envelope" if namespace else "Envelope",
            "fields": [
                {"name": "before", "type": ["null", row], "default": None},
                {"name": "after", "type": ["null", row_name], "default": None},
                {"name": "source", "type": dict(source)},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": ["null", "long"], "default": None},
                {"name": "transaction", "type": ["null", TRANSACTION_SCHEMA], "default": None},
                *([dict(UNCHANGED_FIELD)] if unchanged else []),
            ],
        }
    )


def source_block(
    *,
    connector: str,
    name: str,
    ts_ms: int,
    db: str,
    schema: str | None,
    table: str | None,
    snapshot: str = "false",
    position: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``source`` value: the common fields plus the connector's position fields."""
    block: dict[str, Any] = {
        "version": __version__,
        "connector": connector,
        "name": name,
        "ts_ms": ts_ms,
        "snapshot": snapshot,
        "db": db,
        "schema": schema,
        "table": table,
    }
    if position:
        block.update(position)
    return block


def change_value(
    op: Op,
    *,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    source: Mapping[str, Any],
    ts_ms: int,
    transaction: Mapping[str, Any] | None = None,
    unchanged: Sequence[str] | None = None,
) -> dict[str, Any]:
    """An envelope value; ``unchanged`` (for schemas made with ``unchanged=True``) names the
    ``after`` columns whose value was not sent."""
    value: dict[str, Any] = {
        "before": before,
        "after": after,
        "source": source,
        "op": op,
        "ts_ms": ts_ms,
        "transaction": transaction,
    }
    if unchanged is not None:
        value["unchanged"] = list(unchanged)
    return value
