"""The records that are not row changes: ``m`` events and heartbeats, as Debezium shapes them.

``m`` events are logical decoding messages (``pg_logical_emit_message``): topic
``<source name>.message``, key ``{prefix}``, value ``{op: "m", ts_ms, source, message: {prefix,
content}, transaction}`` (``transaction`` set for transactional messages).

Heartbeats go to ``__liberate-heartbeat.<source name>`` (``heartbeat_topic``; Debezium's
``__debezium-heartbeat``), a compacted topic:
key ``{serverName}``, value ``{ts_ms}``. They exist to carry an offset when no change does: the
end of a snapshot that read no row, and an idle stream whose slot moved on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from connectors.postgres._pgoutput import Message
from connectors.postgres._tables import CONNECTOR, SOURCE_SCHEMA
from connectors.postgres.config import PostgresSourceConfig
from liberate import __version__
from liberate.envelope import TRANSACTION_SCHEMA
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import AvroSchema

_NAMESPACE = "io.debezium.connector.postgresql"

MESSAGE_KEY_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "MessageKey",
        "namespace": _NAMESPACE,
        "fields": [{"name": "prefix", "type": "string"}],
    }
)

MESSAGE_VALUE_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "MessageValue",
        "namespace": _NAMESPACE,
        "fields": [
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": None},
            {"name": "source", "type": SOURCE_SCHEMA},
            {
                "name": "message",
                "type": {
                    "type": "record",
                    "name": "Message",
                    "namespace": _NAMESPACE,
                    "fields": [
                        {"name": "prefix", "type": "string"},
                        {"name": "content", "type": "bytes"},
                    ],
                },
            },
            {"name": "transaction", "type": ["null", TRANSACTION_SCHEMA], "default": None},
        ],
    }
)


def message_record(
    settings: PostgresSourceConfig,
    message: Message,
    *,
    txn_id: int | None,
    commit_lsn: int | None,
    total_order: int,
    collection_order: int,
    ts_ms: int,
    database: str,
    partition: Mapping[str, Primitive],
    offset: Mapping[str, Primitive],
) -> SourceRecord:
    """The ``m`` event of ``message`` (orders: its place in its transaction, 1-based)."""
    source = {
        "version": __version__,
        "connector": CONNECTOR,
        "name": settings.name,
        "ts_ms": ts_ms,
        "snapshot": "false",
        "db": database,
        "schema": None,
        "table": None,
        "txId": txn_id,
        "lsn": message.lsn,
    }
    transaction = None
    if txn_id is not None:
        transaction = {
            "id": f"{txn_id}:{commit_lsn}",
            "total_order": total_order,
            "data_collection_order": collection_order,
        }
    value = {
        "op": "m",
        "ts_ms": time.time_ns() // 1_000_000,
        "source": source,
        "message": {"prefix": message.prefix, "content": message.content},
        "transaction": transaction,
    }
    return SourceRecord(
        settings.message_topic,
        {"prefix": message.prefix},
        value,
        MESSAGE_KEY_SCHEMA,
        MESSAGE_VALUE_SCHEMA,
        partition,
        offset,
        (),
        ts_ms,
    )


HEARTBEAT_KEY_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "ServerNameKey",
        "namespace": "io.debezium.connector.common",
        "fields": [{"name": "serverName", "type": "string"}],
    }
)

HEARTBEAT_VALUE_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "Heartbeat",
        "namespace": "io.debezium.connector.common",
        "fields": [{"name": "ts_ms", "type": "long"}],
    }
)


def heartbeat_record(
    topic: str, source_name: str, partition: Mapping[str, Primitive],
    offset: Mapping[str, Primitive],
) -> SourceRecord:
    """A heartbeat carrying ``offset``."""
    now_ms = time.time_ns() // 1_000_000
    return SourceRecord(
        topic,
        {"serverName": source_name},
        {"ts_ms": now_ms},
        HEARTBEAT_KEY_SCHEMA,
        HEARTBEAT_VALUE_SCHEMA,
        partition,
        offset,
        (),
        now_ms,
    )
