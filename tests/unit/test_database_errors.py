"""How a source's driver errors become liberate errors (``liberate.database_errors``), on real
SQLite errors: a locked database is retried, a missing table is final, a failure at open is a
prerequisite, and a password never appears in the message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from liberate.database_errors import database_error, is_retriable
from liberate.errors import FatalError, PrerequisiteError, RetriableError


def _error_of(engine: sa.Engine, statement: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught, engine.connect() as connection:
        connection.execute(sa.text(statement))
    return caught.value


def test_a_database_locked_by_another_writer_is_retriable(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE orders (id INTEGER)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")
    try:
        engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
        exc = _error_of(engine, "SELECT * FROM orders")
        engine.dispose()
    finally:
        holder.rollback()
        holder.close()
    assert is_retriable(exc)
    url = make_url(f"sqlite:///{path}")
    assert isinstance(database_error(exc, doing="reading orders", url=url), RetriableError)


def test_a_missing_table_is_final_and_at_open_a_prerequisite(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    exc = _error_of(engine, "SELECT * FROM orders")
    engine.dispose()
    url = make_url(f"sqlite:///{tmp_path / 'shop.db'}")
    assert not is_retriable(exc)
    later = database_error(exc, doing="reading orders", url=url)
    assert isinstance(later, FatalError) and not isinstance(later, RetriableError)
    assert later.message.startswith("reading orders failed on sqlite:///")
    assert later.message.endswith(": no such table: orders")
    at_open = database_error(exc, doing="opening", url=url, at_open=True)
    assert isinstance(at_open, PrerequisiteError)


def test_the_password_is_scrubbed_from_the_drivers_reason(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    exc = _error_of(engine, "SELECT * FROM s3cret")
    engine.dispose()
    url = make_url("postgresql://shop:s3cret@db.example/shop")
    message = database_error(exc, doing="reading", url=url).message
    assert "s3cret" not in message
    assert message == "reading failed on postgresql://shop:***@db.example/shop: no such table: ***"
