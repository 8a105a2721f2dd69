"""Database URLs and engines, shared by every SQL-speaking connector and sink.

Plain ``postgresql://`` and ``mysql://`` URLs mean the drivers we ship (psycopg 3, PyMySQL);
``+driver`` forms pass through unchanged. A password may come from ``password_file`` or the
``LIBERATE_DB_PASSWORD`` environment variable instead of the URL. URLs are only ever shown
masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

from liberate.config.base import DatabaseSettings
from liberate.errors import ConfigError, FatalError, PrerequisiteError

_DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def database_url(settings: DatabaseSettings) -> URL:
    """The SQLAlchemy URL of ``settings``, with our default drivers and the password filled in."""
    raw = settings.database.get_secret_value()
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(
            f"cannot parse database URL {mask_url(raw)}",
            hint="use a URL such as postgresql://user@host:5432/db or sqlite:///file.db",
        ) from exc
    if url.drivername in _DEFAULT_DRIVERS:
        url = url.set(drivername=_DEFAULT_DRIVERS[url.drivername])
    if url.password is None and url.get_backend_name() != "sqlite":
        password = _password_of(settings)
        if password is not None:
            url = url.set(password=password)
    return url


def _password_of(settings: DatabaseSettings) -> str | None:
    if settings.password is not None:
        return settings.password.get_secret_value()
    if settings.password_file is not None:
        return read_password_file(settings.password_file, "password_file")
    return os.environ.get("LIBERATE_DB_PASSWORD")


def read_password_file(path: Path, key: str) -> str:
    """The first line of ``path`` without surrounding whitespace (a trailing newline is usual);
    the error names ``key`` and never the file's content."""
    try:
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, UnicodeDecodeError, IndexError) as exc:
        reason = "it is empty" if isinstance(exc, IndexError) else exc.__class__.__name__
        raise ConfigError(
            f"cannot read {key} {path}: {reason}",
            hint=f"point {key} at a readable file whose first line is the password",
        ) from exc


def mask_url(url: str | URL) -> str:
    """``url`` with any password replaced by ``***``; safe to print."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def create_engine(settings: DatabaseSettings, **kwargs: Any) -> Engine:
    """An engine for ``settings``; the driver import error says what to install."""
    url = database_url(settings)
    options: dict[str, Any] = {"pool_pre_ping": True}
    if url.get_backend_name() == "sqlite":
        options = {}
        _ensure_sqlite_parent(url)
    options.update(kwargs)
    try:
        return sa.create_engine(url, **options)
    except ModuleNotFoundError as exc:
        raise FatalError(
            f"the driver for {url.drivername} is not installed ({exc.name})",
            hint=f"pip install {exc.name}",
        ) from exc


def _ensure_sqlite_parent(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def source_engine(settings: DatabaseSettings) -> Engine:
    """An engine for a source that reads an existing database.

    - SQLite: the file must exist; connecting would create an empty one and hide a wrong path.
    - MySQL/MariaDB: every connection runs at session time zone UTC, so ``TIMESTAMP`` columns
      read and compare as UTC instants (the type contract in liberate/schema/types.py).
    """
    url = database_url(settings)
    backend = url.get_backend_name()
    if backend == "sqlite":
        _require_sqlite_file(url)
    engine = create_engine(settings)
    if backend in ("mysql", "mariadb"):
        sa.event.listen(engine, "connect", _utc_session)
    return engine


def _require_sqlite_file(url: URL) -> None:
    database = url.database or ""
    if database.startswith("file:"):
        return  # a URI filename (?mode=ro...): the driver interprets it
    if database in ("", ":memory:"):
        raise PrerequisiteError(
            f"{mask_url(url)} names no database file",
            hint="a source reads an existing SQLite file: sqlite:///path/to/file.db",
        )
    path = Path(database).expanduser()
    if not path.is_file():
        raise PrerequisiteError(
            f"SQLite database file {path} does not exist",
            hint="check the path in database: (sqlite:///relative.db is relative to the "
            "working directory, sqlite:////absolute/path.db is absolute)",
        )


@sa.event.listens_for(sa.Table, "column_reflect")
def _unescape_mysql_backticks(inspector: Any, _table: sa.Table, column: dict[str, Any]) -> None:
    # SQLAlchemy reflects MySQL tables by parsing SHOW CREATE TABLE and leaves a backtick in a
    # column name doubled (`a``b` comes back as a``b), so every later statement names a column
    # that does not exist. Primary keys and indexes still match: SQLAlchemy pairs them with
    # the name as parsed, before this listener renames the column.
    if inspector.dialect.name in ("mysql", "mariadb") and "``" in column["name"]:
        column["name"] = column["name"].replace("``", "`")


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET time_zone = '+00:00'")
    finally:
        cursor.close()
