"""How a driver error met by a source that reads a database becomes the liberate error the
runtime acts on: transient ones (a lost connection, a deadlock, a lock timeout, a server
shutting down) are retried, the others are final.

Covers the drivers liberate ships (psycopg 3, PyMySQL) and SQLite; messages keep the driver's
reason and the masked URL, never the password.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from liberate.database import mask_url
from liberate.errors import FatalError, LiberateError, PrerequisiteError, RetriableError

# SQLSTATE classes worth a retry: connection exception, transaction rollback (serialization,
# deadlock), insufficient resources, operator intervention (shutdown, recovery conflict).
_RETRIABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
_RETRIABLE_SQLSTATES = frozenset({"55P03"})  # lock_not_available
# MySQL: lock wait timeout, deadlock, can't connect, server gone away, lost connection,
# query interrupted (KILL QUERY), server shutdown in progress.
_RETRIABLE_MYSQL_CODES = frozenset({1205, 1213, 2003, 2006, 2013, 1317, 1053})


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
