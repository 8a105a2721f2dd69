"""Driver errors of the three target databases, sorted by what the sink must do about them.

psycopg reports SQLSTATE codes, PyMySQL MySQL error numbers, sqlite3 its result-code names;
each is mapped to one ``Failure``. Messages keep the driver's own text (which names the
constraint and the offending key) but never the SQL parameters or the URL.
"""

from __future__ import annotations

import sqlite3
from enum import Enum
from typing import Any

import sqlalchemy as sa

from liberate.errors import FatalError, LiberateError, RecordError, RetriableError


class Failure(Enum):
    """What a database error means for the write that hit it."""

    RETRY = "retry"  # connection lost, deadlock, serialization failure, lock timeout
    RECORD = "record"  # a row is refused: constraint violation, value out of range or too long
    PRIVILEGE = "privilege"  # the user may not do this
    MISSING = "missing"  # a table, column or schema is not there (any more)
    FATAL = "fatal"  # anything else: a bug or a setup problem that retrying will not fix


_PG_RETRY_PREFIXES = ("08", "53", "57P0", "40001", "40P01", "55P03", "57014")
_PG_MISSING = frozenset({"42P01", "42703", "3F000", "3D000"})

_MYSQL_RETRY = frozenset(
    {1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055, 4031}
)
_MYSQL_RECORD = frozenset(
    {1048, 1062, 1264, 1265, 1292, 1366, 1367, 1406, 1451, 1452, 1586, 1690, 3819, 4025}
)
_MYSQL_PRIVILEGE = frozenset({1044, 1045, 1142, 1143, 1227, 1370})
_MYSQL_MISSING = frozenset({1049, 1054, 1146})

_SQLITE_RETRY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_SQLITE_RECORD = ("SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_TOOBIG", "SQLITE_RANGE")
_SQLITE_PRIVILEGE = ("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")

PRIVILEGE_HINT = (
    "grant the sink's database user CREATE on the target schema (for auto_create and the "
    "offsets table), SELECT, INSERT, UPDATE, DELETE on the target tables, and on PostgreSQL "
    "TEMPORARY on the database (rows are staged in a temporary table)"
)


def driver_error(exc: BaseException) -> BaseException:
    """The DB-API exception inside a SQLAlchemy error (or ``exc`` itself)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def failure_of(exc: BaseException) -> Failure:
    """Classify a SQLAlchemy or DB-API error."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return Failure.RETRY
    if isinstance(exc, sa.exc.DisconnectionError | sa.exc.TimeoutError):
        return Failure.RETRY
    if isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError):
        return Failure.RECORD  # a bind processor refused a value
    orig = driver_error(exc)
    if isinstance(orig, sqlite3.Error):
        return _sqlite(orig)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return _mysql(args[0])  # PyMySQL: (errno, message); errno is finer than its sqlstate
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _postgres(sqlstate)
    return _by_class(exc, orig)


def _postgres(sqlstate: str) -> Failure:
    if sqlstate.startswith(_PG_RETRY_PREFIXES):
        return Failure.RETRY
    if sqlstate.startswith(("23", "22")):
        return Failure.RECORD
    if sqlstate == "42501":
        return Failure.PRIVILEGE
    if sqlstate in _PG_MISSING:
        return Failure.MISSING
    return Failure.FATAL


def _mysql(code: int) -> Failure:
    if code in _MYSQL_RETRY:
        return Failure.RETRY
    if code in _MYSQL_RECORD:
        return Failure.RECORD
    if code in _MYSQL_PRIVILEGE:
        return Failure.PRIVILEGE
    if code in _MYSQL_MISSING:
        return Failure.MISSING
    return Failure.FATAL


def _sqlite(orig: sqlite3.Error) -> Failure:
    name = getattr(orig, "sqlite_errorname", "") or ""
    message = str(orig)
    if name.startswith(_SQLITE_RETRY) or "database is locked" in message:
        return Failure.RETRY
    if name.startswith(_SQLITE_RECORD) or isinstance(orig, sqlite3.IntegrityError):
        return Failure.RECORD
    if name.startswith(_SQLITE_PRIVILEGE) or "readonly database" in message:
        return Failure.PRIVILEGE
    if message.startswith(("no such table", "no such column", "unknown database")):
        return Failure.MISSING
    return Failure.FATAL


def _by_class(exc: BaseException, orig: BaseException) -> Failure:
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.DataError):
        return Failure.RECORD
    if isinstance(exc, sa.exc.OperationalError) or type(orig).__name__ == "OperationalError":
        return Failure.RETRY
    return Failure.FATAL


def message_of(exc: BaseException, *, limit: int = 500) -> str:
    """The driver's message, without the SQL statement and its parameters."""
    orig = driver_error(exc)
    args: tuple[Any, ...] = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        text = f"({args[0]}) {args[1]}"  # PyMySQL: (code, message)
    elif isinstance(exc, sa.exc.StatementError) and orig is exc:
        text = str(exc.orig) if exc.orig is not None else exc.__class__.__name__
    else:
        text = str(orig)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def wrap(exc: BaseException, doing: str) -> LiberateError:
    """The liberate error for a database error hit while ``doing`` something."""
    failure = failure_of(exc)
    text = f"{doing} failed: {message_of(exc)}"
    if failure is Failure.RETRY:
        return RetriableError(text, hint="transient database failure; the runtime retries")
    if failure is Failure.RECORD:
        return RecordError(text)
    if failure is Failure.PRIVILEGE:
        return FatalError(text, hint=PRIVILEGE_HINT)
    if failure is Failure.MISSING:
        return FatalError(
            text, hint="create the missing schema or database, or fix the sink's schema setting"
        )
    return FatalError(text, hint="see the database message above")
