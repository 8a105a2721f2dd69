"""The outbox helper applications import: publish domain events in the same transaction as
their own writes, and consume them exactly once.

Depends on nothing but the standard library; SQLAlchemy, psycopg, PyMySQL and pydantic are
used when the application passes their objects, never required. See docs/outbox.md.
"""

from outbox._columns import DEFAULT_COLUMNS, DEFAULT_TABLE, Columns
from outbox._consumer import DEFAULT_CONSUMER_TABLE, IdempotentConsumer
from outbox._ddl import create_table, create_table_sql
from outbox._event import RESERVED_HEADERS, OutboxError, OutboxEvent, payload_json
from outbox._publish import MESSAGE_PREFIX, message_content, publish, publish_message

__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_CONSUMER_TABLE",
    "DEFAULT_TABLE",
    "MESSAGE_PREFIX",
    "RESERVED_HEADERS",
    "Columns",
    "IdempotentConsumer",
    "OutboxError",
    "OutboxEvent",
    "create_table",
    "create_table_sql",
    "message_content",
    "payload_json",
    "publish",
    "publish_message",
]
