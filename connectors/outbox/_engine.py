"""The relay's engine: the run file's database, with sessions that read instants as UTC.

- SQLite: the database file must exist (connecting would create an empty one, and the outbox
  table lives in the application's file).
- MySQL/MariaDB: every connection runs at session time zone UTC, so ``TIMESTAMP`` columns
  (``created_at``, ``relayed_at``) read and compare as UTC instants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from liberate.config.base import DatabaseSettings
from liberate.database import create_engine, database_url, mask_url
from liberate.errors import PrerequisiteError


def relay_engine(settings: DatabaseSettings) -> Engine:
    """An engine on the outbox's database."""
    url = database_url(settings)
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            raise PrerequisiteError(
                f"{mask_url(url)} names no database file",
                hint="point database: at the application's SQLite file: sqlite:///path/app.db",
            )
        if not database.startswith("file:") and not Path(database).expanduser().is_file():
            raise PrerequisiteError(
                f"SQLite database file {database} does not exist",
                hint="point database: at the application's SQLite file (sqlite:///relative.db "
                "is relative to the working directory, sqlite:////absolute.db absolute)",
            )
    engine = create_engine(settings)
    if backend in ("mysql", "mariadb"):
        sa.event.listen(engine, "connect", _utc_session)
    return engine


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET time_zone = '+00:00'")
    finally:
        cursor.close()
