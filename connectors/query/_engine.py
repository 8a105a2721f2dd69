"""The query source's engine and how its database errors are classified.

- SQLite: a database file that does not exist is an error (connecting would create an empty one).
- MySQL/MariaDB: every connection runs at session time zone UTC, so ``TIMESTAMP`` columns read
  as UTC instants (the type contract in liberate/schema/types.py).
- psycopg: ``json``/``jsonb`` values load as the compact JSON text the type contract writes
  (``compact_json``) instead of dicts the converter would serialize again: the same string,
  for about half the cost (psycopg's JSON loader is Python code with a round trip of its own);
  intervals load as the contract's ISO-8601 text, months and days kept apart
  (``liberate.schema.postgres_types.register_text_loaders``).
- psycopg: a session whose time zone is one of tzdata's names for UTC (``Etc/UTC``, Debian's
  default, and its links) is set to ``UTC``, which psycopg maps to ``datetime.timezone.utc``
  rather than a ``ZoneInfo``: the same zone, and timestamptz values that cost a third less to
  encode (Python computes a ZoneInfo's offset for every datetime).
- Errors keep the driver's reason and the masked URL, never the password.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from liberate.config.base import DatabaseSettings
from liberate.database import mask_url, source_engine
from liberate.errors import FatalError, LiberateError, PrerequisiteError, RetriableError
from liberate.schema.postgres_types import register_text_loaders

# SQLSTATE classes worth a retry: connection exception, transaction rollback (serialization,
# deadlock), insufficient resources, operator intervention (shutdown, recovery conflict).
_RETRIABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
_RETRIABLE_SQLSTATES = frozenset({"55P03"})  # lock_not_available
# MySQL: lock wait timeout, deadlock, can't connect, server gone away, lost connection,
# query interrupted (KILL QUERY), server shutdown in progress.
_RETRIABLE_MYSQL_CODES = frozenset({1205, 1213, 2003, 2006, 2013, 1317, 1053})


def open_engine(settings: DatabaseSettings) -> Engine:
    """An engine for a query source: ``source_engine`` plus the psycopg session set-up above."""
    engine = source_engine(settings)
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        sa.event.listen(engine, "connect", _json_as_compact_text)
        sa.event.listen(engine, "connect", _utc_named_utc)
    return engine


_UTC_LINKS = frozenset(
    ("Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu")
)


def _utc_named_utc(dbapi_connection: Any, _record: Any) -> None:
    if dbapi_connection.info.parameter_status("TimeZone") in _UTC_LINKS:
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()  # SET is transactional; the pool rolls back on return


def _json_as_compact_text(dbapi_connection: Any, _record: Any) -> None:
    register_text_loaders(dbapi_connection.adapters)


def is_retriable(exc: DBAPIError) -> bool:
    """Whether a database error is transient (connection lost, deadlock, lock timeout)."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(exc, OperationalError) and hasattr(orig, "sqlstate") and sqlstate is None:
        return True  # psycopg: the client could not reach the server, or lost it
    if isinstance(sqlstate, str) and (
        sqlstate[:2] in _RETRIABLE_SQLSTATE_CLASSES or sqlstate in _RETRIABLE_SQLSTATES
    ):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRIABLE_MYSQL_CODES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database table is locked" in text


def driver_reason(exc: BaseException, url: URL) -> str:
    """The first line of the driver's message, with the password scrubbed should it appear."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    reason = lines[0] if lines else type(orig).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


def database_error(
    exc: DBAPIError, *, doing: str, url: URL, at_open: bool = False
) -> LiberateError:
    """``exc`` as the liberate error the runtime acts on.

    At open a failure is final (the user fixes the URL, the server or a privilege); later a
    transient one is retried.
    """
    message = f"{doing} failed on {mask_url(url)}: {driver_reason(exc, url)}"
    if at_open:
        return PrerequisiteError(
            message,
            hint="check that the database server runs and accepts this user from here, and "
            "the database URL (host, port, database name, credentials)",
        )
    if is_retriable(exc):
        return RetriableError(message, hint="retried automatically; check the database if it lasts")
    return FatalError(
        message,
        hint="if the table or its columns changed, restart the source so it reads them again",
    )
