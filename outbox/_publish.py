"""``publish``: write an event into the outbox inside the caller's open transaction.

Nothing here commits, rolls back or talks to a broker: the event becomes visible exactly when
the application's own transaction commits, and disappears with it when it rolls back. The
relay (``connector: outbox``) takes it from there.
"""

from __future__ import annotations

import json
from typing import Any

from outbox._columns import DEFAULT_COLUMNS, DEFAULT_TABLE, Columns
from outbox._connection import executor
from outbox._event import OutboxError, OutboxEvent
from outbox._sql import qualified, quote, statement

#: the default prefix of ``publish_message`` messages (what a log-based relay filters on)
MESSAGE_PREFIX = "outbox"


def publish(
    conn: Any,
    event: OutboxEvent,
    *,
    table: str = DEFAULT_TABLE,
    schema: str | None = None,
    columns: Columns = DEFAULT_COLUMNS,
    delete_after_insert: bool = False,
) -> str:
    """Insert ``event`` into the outbox table in ``conn``'s current transaction; its id.

    ``conn`` is a SQLAlchemy Connection or Session, or a DB-API connection (psycopg 3,
    PyMySQL, sqlite3, ...). ``table``/``schema``/``columns`` name the outbox table and its
    columns (Debezium's names by default). ``delete_after_insert`` deletes the row again in the
    same transaction: the table stays empty while a log-based relay still reads the insert from
    the WAL or binlog (Debezium's recommended clean-up). Never commits.
    """
    ex = executor(conn)
    d = ex.dialect
    names = [columns.id, columns.aggregate_type, columns.aggregate_id, columns.type,
             columns.payload]
    values: list[Any] = [event.id, event.aggregate_type, event.aggregate_id, event.type,
                         event.payload_json]
    if event.headers:
        if columns.headers is None:
            raise OutboxError(
                "the event has headers but the outbox columns name no headers column: add one "
                "(see outbox/sql/) and set Columns(headers=...), or publish without headers"
            )
        names.append(columns.headers)
        values.append(json.dumps(dict(event.headers), ensure_ascii=False, separators=(",", ":")))
    target = qualified(d, table, schema)
    params = ex.params()
    insert = statement(
        "INSERT INTO", target,
        "(" + ", ".join(quote(d, n, what="column name") for n in names) + ")",
        "VALUES (" + params.list(values) + ")",
    )
    ex.execute(insert, params)
    if delete_after_insert:
        params = ex.params()
        ex.execute(
            statement("DELETE FROM", target, "WHERE", quote(d, columns.id), "=", params(event.id)),
            params,
        )
    return event.id


def publish_message(
    conn: Any,
    event: OutboxEvent,
    *,
    prefix: str = MESSAGE_PREFIX,
    columns: Columns = DEFAULT_COLUMNS,
) -> str:
    """PostgreSQL only: emit ``event`` as a transactional logical decoding message; its id.

    No table at all: ``pg_logical_emit_message(true, prefix, content)`` writes the event into
    the WAL, and logical decoding delivers it when (and only if) the transaction commits. The
    content is one JSON object keyed by the ``columns`` names (``message_content``). Needs
    ``wal_level=logical`` and a log-based relay; a polling relay cannot see these events.
    """
    ex = executor(conn)
    if ex.dialect != "postgresql":
        raise OutboxError(
            f"publish_message needs PostgreSQL (pg_logical_emit_message), not {ex.dialect}: "
            "use publish() with an outbox table"
        )
    if not prefix:
        raise OutboxError("the message prefix must not be empty")
    params = ex.params()
    ex.fetchone(
        statement(
            "SELECT pg_logical_emit_message(true,",
            "CAST(" + params(prefix) + " AS text),",
            "CAST(" + params(message_content(event, columns)) + " AS text))",
        ),
        params,
    )
    return event.id


def message_content(event: OutboxEvent, columns: Columns = DEFAULT_COLUMNS) -> str:
    """The JSON content of ``publish_message``: the outbox row as one object.

    Keys are the ``columns`` names; ``payload`` is the payload as a JSON value (not a string);
    ``headers`` (an object of strings) is present only when the event has headers::

        {"id": "7f1c...", "aggregatetype": "Order", "aggregateid": "42",
         "type": "OrderCreated", "payload": {"total": "12.50"}}
    """
    content: dict[str, Any] = {
        columns.id: event.id,
        columns.aggregate_type: event.aggregate_type,
        columns.aggregate_id: event.aggregate_id,
        columns.type: event.type,
        columns.payload: None if event.payload_json is None else json.loads(event.payload_json),
    }
    if event.headers:
        content[columns.headers or "headers"] = dict(event.headers)
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))
