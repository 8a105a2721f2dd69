"""The query source's engine: ``source_engine`` and a session set-up per driver (its driver
errors are classified by ``liberate.database_errors``).

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
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberate.config.base import DatabaseSettings
from liberate.database import source_engine
from liberate.schema.postgres_types import register_text_loaders


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
