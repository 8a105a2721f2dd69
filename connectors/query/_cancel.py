"""Interrupting a query that runs in another thread, so ``stop()`` makes ``poll()`` return soon.

Each driver has its own way: psycopg sends a cancel request (``cancel_safe``), sqlite3
interrupts the connection, and PyMySQL has none, so a second connection runs ``KILL QUERY``
with the server thread id of the first.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

logger = logging.getLogger(__name__)


class QueryCanceller:
    """Tracks the driver connection running a query now and can interrupt it from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: Any = None
        self._engine: Engine | None = None

    @contextlib.contextmanager
    def running(self, engine: Engine, connection: PoolProxiedConnection) -> Iterator[None]:
        """Mark ``connection`` as the one running queries for the duration of the block."""
        with self._lock:
            self._active, self._engine = connection.driver_connection, engine
        try:
            yield
        finally:
            with self._lock:
                self._active = self._engine = None

    def cancel(self) -> None:
        """Interrupt the running query, if any. Best effort: failures are logged, not raised."""
        with self._lock:
            active, engine = self._active, self._engine
        if active is None or engine is None:
            return
        try:
            _cancel(engine, active)
        except (SQLAlchemyError, OSError, AttributeError) as exc:
            logger.debug("could not interrupt the running query: %s", exc)
        except Exception as exc:  # a driver error class we do not import; stop must not fail
            logger.debug("could not interrupt the running query: %r", exc)


def _cancel(engine: Engine, connection: Any) -> None:
    backend = engine.dialect.name
    if backend == "postgresql" and hasattr(connection, "cancel_safe"):
        connection.cancel_safe(timeout=5.0)
    elif backend == "sqlite":
        connection.interrupt()
    elif backend in ("mysql", "mariadb") and hasattr(connection, "thread_id"):
        thread_id = int(connection.thread_id())
        with engine.connect() as other:
            other.execute(sa.text("KILL QUERY :thread_id"), {"thread_id": thread_id})
    elif hasattr(connection, "cancel"):
        connection.cancel()
