"""Driver errors of the three databases map to what the sink must do (real exception classes)."""

from __future__ import annotations

import sqlite3

import psycopg
import pymysql
import pytest
import sqlalchemy as sa

from liberate.errors import FatalError, RecordError, RetriableError
from sinks.sql._errors import Failure, failure_of, message_of, wrap


def wrapped(orig: BaseException, cls: type[sa.exc.DBAPIError] = sa.exc.DBAPIError) -> BaseException:
    """``orig`` as SQLAlchemy raises it from a statement."""
    return cls("INSERT INTO t VALUES (%(secret)s)", {"secret": "hunter2"}, orig)


@pytest.mark.parametrize(
    ("orig", "failure"),
    [
        (psycopg.errors.UniqueViolation("duplicate key"), Failure.RECORD),
        (psycopg.errors.NotNullViolation("null value"), Failure.RECORD),
        (psycopg.errors.StringDataRightTruncation("too long"), Failure.RECORD),
        (psycopg.errors.NumericValueOutOfRange("overflow"), Failure.RECORD),
        (psycopg.errors.DeadlockDetected("deadlock"), Failure.RETRY),
        (psycopg.errors.SerializationFailure("serialize"), Failure.RETRY),
        (psycopg.errors.AdminShutdown("terminating"), Failure.RETRY),
        (psycopg.OperationalError("connection refused"), Failure.RETRY),
        (psycopg.errors.InsufficientPrivilege("permission denied"), Failure.PRIVILEGE),
        (psycopg.errors.UndefinedTable("no table"), Failure.MISSING),
        (psycopg.errors.UndefinedColumn("no column"), Failure.MISSING),
        (psycopg.errors.SyntaxError("syntax"), Failure.FATAL),
        (pymysql.err.IntegrityError(1062, "Duplicate entry"), Failure.RECORD),
        (pymysql.err.DataError(1406, "Data too long"), Failure.RECORD),
        (pymysql.err.OperationalError(1213, "Deadlock found"), Failure.RETRY),
        (pymysql.err.OperationalError(2013, "Lost connection"), Failure.RETRY),
        (pymysql.err.OperationalError(1142, "INSERT command denied"), Failure.PRIVILEGE),
        (pymysql.err.ProgrammingError(1146, "Table doesn't exist"), Failure.MISSING),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), Failure.RECORD),
        (sqlite3.OperationalError("database is locked"), Failure.RETRY),
        (sqlite3.OperationalError("no such table: t"), Failure.MISSING),
        (sqlite3.OperationalError("attempt to write a readonly database"), Failure.PRIVILEGE),
        (sqlite3.OperationalError("near \"x\": syntax error"), Failure.FATAL),
    ],
)
def test_driver_errors_are_classified(orig: BaseException, failure: Failure) -> None:
    assert failure_of(wrapped(orig)) is failure
    assert failure_of(orig) is failure  # raw driver errors too (COPY runs beside SQLAlchemy)


def test_pymysql_errno_wins_over_its_sqlstate() -> None:
    missing = pymysql.err.ProgrammingError(1146, "Table 'db.t' doesn't exist")
    missing.sqlstate = "42S02"  # PyMySQL >= 1.1 sets it
    assert failure_of(missing) is Failure.MISSING


def test_an_invalidated_connection_is_retried() -> None:
    lost = sa.exc.DBAPIError("SELECT 1", None, psycopg.errors.SyntaxError("x"),
                             connection_invalidated=True)
    assert failure_of(lost) is Failure.RETRY


def test_messages_keep_the_driver_text_but_not_the_statement_or_its_parameters() -> None:
    error = wrapped(pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'"))
    text = message_of(error)
    assert text == "(1062) Duplicate entry '1' for key 'PRIMARY'"
    assert "hunter2" not in str(wrap(error, "writing"))


def test_wrap_picks_the_liberate_error_and_a_hint() -> None:
    assert isinstance(wrap(wrapped(psycopg.errors.DeadlockDetected("d")), "w"), RetriableError)
    assert isinstance(wrap(wrapped(psycopg.errors.UniqueViolation("u")), "w"), RecordError)
    denied = wrap(wrapped(psycopg.errors.InsufficientPrivilege("p")), "w")
    assert isinstance(denied, FatalError) and denied.hint and "GRANT" in denied.hint.upper()
