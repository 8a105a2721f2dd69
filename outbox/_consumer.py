"""``IdempotentConsumer``: process each event once, although the stream may deliver it twice.

Streams deliver at least once (a consumer that crashes before committing its offset sees the
same records again), so a consumer with side effects in a database keeps the ids of the events
it has processed, *in the same transaction as those side effects*::

    consumer = IdempotentConsumer("billing")
    with engine.begin() as conn:                 # the consumer's own transaction
        if consumer.mark(conn, event_id):        # first delivery: recorded, go on
            charge(conn, order)                  # the side effects, same transaction
        # a redelivery: mark() returned False and nothing else is done

Either both the side effects and the id commit, or neither does. Two instances handling the
same event at once serialize on the primary key: the second waits for the first and then sees
the id (or inserts it, if the first rolled back).

Ids are kept until ``purge`` removes the ones older than a retention that must exceed the
longest redelivery window (how far back a consumer can be rewound).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from outbox._connection import Executor, executor
from outbox._sql import Dialect, dialect_named, qualified, quote, statement

DEFAULT_CONSUMER_TABLE = "processed_events"

_TYPES: dict[Dialect, tuple[str, str]] = {  # (text type, timestamp type)
    "postgresql": ("VARCHAR(255)", "TIMESTAMPTZ"),
    "mysql": ("VARCHAR(255)", "DATETIME(6)"),
    "sqlite": ("TEXT", "TEXT"),
}


class IdempotentConsumer:
    """Records processed event ids in ``table``, one set per consumer ``name``.

    Every method runs in the caller's open transaction and never commits. Timestamps are UTC.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        table: str = DEFAULT_CONSUMER_TABLE,
        schema: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("the consumer name must be a non-empty string")
        self.name = name
        self.table = table
        self.schema = schema

    def mark(self, conn: Any, event_id: str) -> bool:
        """Record ``event_id`` as processed; True on its first delivery, False on a repeat.

        Call it first in the transaction that handles the event, and skip the event when it
        returns False.
        """
        ex = executor(conn)
        d = ex.dialect
        params = ex.params()
        values = params.list([self.name, str(event_id), _stored_time(d, _now())])
        columns = "(" + ", ".join(quote(d, c) for c in ("consumer", "event_id", "processed_at"))
        target = self._target(ex)
        if d == "postgresql":
            sql = statement("INSERT INTO", target, columns + ")", "VALUES (" + values + ")",
                            "ON CONFLICT DO NOTHING")
        elif d == "mysql":
            # IGNORE turns only the duplicate key into "0 rows": our values fit the columns.
            sql = statement("INSERT IGNORE INTO", target, columns + ")",
                            "VALUES (" + values + ")")
        else:
            sql = statement("INSERT OR IGNORE INTO", target, columns + ")",
                            "VALUES (" + values + ")")
        return ex.execute(sql, params) == 1

    def seen(self, conn: Any, event_id: str) -> bool:
        """Whether ``event_id`` has been marked (by a committed or this transaction)."""
        ex = executor(conn, in_transaction=False)
        d = ex.dialect
        params = ex.params()
        row = ex.fetchone(
            statement(
                "SELECT 1 FROM", self._target(ex),
                "WHERE", quote(d, "consumer"), "=", params(self.name),
                "AND", quote(d, "event_id"), "=", params(str(event_id)),
            ),
            params,
        )
        return row is not None

    def purge(self, conn: Any, older_than: dt.timedelta) -> int:
        """Forget ids processed more than ``older_than`` ago; how many were removed.

        Keep ids longer than a redelivery can happen: a forgotten id is processed again.
        """
        if older_than < dt.timedelta(0):
            raise ValueError("older_than must not be negative")
        ex = executor(conn, in_transaction=False)
        d = ex.dialect
        params = ex.params()
        return ex.execute(
            statement(
                "DELETE FROM", self._target(ex),
                "WHERE", quote(d, "consumer"), "=", params(self.name),
                "AND", quote(d, "processed_at"), "<", params(_stored_time(d, _now() - older_than)),
            ),
            params,
        )

    def create_table_sql(self, dialect: str) -> list[str]:
        """The statements that create this consumer's table (and its index) on ``dialect``."""
        return _create_statements(dialect_named(dialect), self.table, self.schema)

    def create_table(self, conn: Any) -> None:
        """Create the table if missing (MySQL/MariaDB: DDL commits implicitly)."""
        ex = executor(conn, in_transaction=False)
        for sql in _create_statements(ex.dialect, self.table, self.schema):
            ex.execute(sql)

    def _target(self, ex: Executor) -> str:
        return qualified(ex.dialect, self.table, self.schema)


def _create_statements(d: Dialect, table: str, schema: str | None) -> list[str]:
    text, timestamp = _TYPES[d]
    target = qualified(d, table, schema)
    index = quote(d, f"{table}_processed_at", what="index name")
    columns = ", ".join([
        f"{quote(d, 'consumer')} {text} NOT NULL",
        f"{quote(d, 'event_id')} {text} NOT NULL",
        f"{quote(d, 'processed_at')} {timestamp} NOT NULL",
        f"PRIMARY KEY ({quote(d, 'consumer')}, {quote(d, 'event_id')})",
    ])
    if d == "mysql":
        # MySQL has no CREATE INDEX IF NOT EXISTS (MariaDB has): the index goes inline.
        key = f"KEY {index} ({quote(d, 'processed_at')})"
        return [statement("CREATE TABLE IF NOT EXISTS", target, f"({columns}, {key})")]
    on = qualified(d, table, schema) if d == "postgresql" else quote(d, table)
    index_target = index if d == "postgresql" or schema is None else (
        quote(d, schema) + "." + index
    )
    return [
        statement("CREATE TABLE IF NOT EXISTS", target, f"({columns})"),
        statement("CREATE INDEX IF NOT EXISTS", index_target, "ON", on,
                  f"({quote(d, 'processed_at')})"),
    ]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stored_time(d: Dialect, moment: dt.datetime) -> Any:
    """``moment`` (UTC) as the ``processed_at`` column of ``d`` stores it.

    PostgreSQL: the aware instant (TIMESTAMPTZ). MySQL: naive UTC (DATETIME has no zone, so the
    session time zone cannot shift it). SQLite: ISO text, which sorts like the instants.
    """
    if d == "postgresql":
        return moment
    naive = moment.astimezone(dt.UTC).replace(tzinfo=None)
    if d == "mysql":
        return naive
    return naive.isoformat(sep=" ", timespec="microseconds")
