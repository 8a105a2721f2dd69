"""The source's SQL connections and how their errors become liberate errors.

Connections are few and long-lived (control, snapshot), so the engine pools nothing and pings
nothing: a snapshot connection's first statement must be ``SET TRANSACTION SNAPSHOT``. Every
connection loads json/jsonb as the compact text the type contract writes (``compact_json``),
and intervals as its ISO-8601 text (``register_text_loaders``): snapshot rows and streamed rows
(loaded with the control connection's loaders) then hold the same string, and psycopg's dict
round trip is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from connectors.postgres.config import PostgresSourceConfig
from liberate.database import create_engine, mask_url
from liberate.errors import FatalError, LiberateError, PrerequisiteError, RetriableError
from liberate.schema.postgres_types import register_text_loaders

T = TypeVar("T")


def _json_as_compact_text(dbapi_connection: Any, _record: Any) -> None:
    register_text_loaders(dbapi_connection.adapters)


def open_engine(settings: PostgresSourceConfig) -> Engine:
    """The engine of the source's SQL connections."""
    engine = create_engine(settings, poolclass=NullPool, pool_pre_ping=False)
    sa.event.listen(engine, "connect", _json_as_compact_text)
    return engine


def reason(exc: BaseException) -> str:
    """The first line of a driver error's message."""
    if isinstance(exc, LiberateError):
        return exc.message
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def database_error(exc: BaseException, doing: str, url: URL) -> LiberateError:
    """The liberate error for a driver error met while ``doing``."""
    orig = getattr(exc, "orig", None) or exc
    message = f"{doing} on {mask_url(url)}: {reason(exc)}"
    if isinstance(orig, psycopg.errors.InsufficientPrivilege):
        return PrerequisiteError(message, hint="grant the role what it needs (see "
                                 "`liberate check`)")
    if isinstance(orig, psycopg.errors.ConfigurationLimitExceeded):
        return PrerequisiteError(message, hint="raise max_replication_slots (and restart) or "
                                 "drop unused slots")
    if isinstance(orig, psycopg.errors.ObjectInUse):
        return RetriableError(message, hint="another consumer uses the slot")
    if isinstance(orig, psycopg.OperationalError | psycopg.errors.AdminShutdown
                  | psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return RetriableError(message)
    return FatalError(message)


def guarded(doing: str, url: URL, action: Callable[[], T]) -> T:
    """Run ``action``; a driver error becomes a liberate error saying what we were doing."""
    try:
        return action()
    except LiberateError:
        raise
    except (DBAPIError, psycopg.Error) as exc:
        raise database_error(exc, doing, url) from exc
