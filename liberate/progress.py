"""Progress of long snapshots and bulk loads: rows done, rate and time left.

On a terminal (stderr is a TTY and logs are text) a one-line bar is redrawn in place, at most
every ``REDRAW_S``; otherwise a log line is written every ``LOG_EVERY_S``. Loads that finish
within ``QUIET_S`` show nothing at all, so short polls stay silent. The total is an estimate
(``estimate_rows``: the catalog's row estimate on PostgreSQL and MySQL, ``count(*)`` on
SQLite), so the bar may end short of 100 % or go past it; the rate and the rows are exact.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("liberate.progress")

QUIET_S = 2.0
REDRAW_S = 0.25
LOG_EVERY_S = 10.0
BAR_WIDTH = 24

_draw_lock = threading.Lock()


class RowProgress:
    """The progress of reading ``total`` (estimated, or None) rows of ``label``.

    Used from the thread that reads; ``advance`` is cheap between redraws.
    """

    def __init__(self, label: str, total: int | None, *, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        from liberate import logs

        self.label = label
        self.total = total if total and total > 0 else None
        self.done = 0
        self._stream = stream or sys.stderr
        self._terminal = (terminal if terminal is not None
                          else logs.log_format() == "text" and _isatty(self._stream))
        self._started = time.monotonic()
        self._shown_at = self._started
        self._drawn = False
        self._logged_at = self._started

    def advance(self, rows: int) -> None:
        """``rows`` more were read."""
        self.done += rows
        now = time.monotonic()
        if now - self._started < QUIET_S:
            return
        if self._terminal:
            if now - self._shown_at >= REDRAW_S or not self._drawn:
                self._draw(now)
        elif now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.info("%s", self.describe(now))

    def close(self) -> None:
        """The load ended: finish the bar (or log the total of a long load)."""
        now = time.monotonic()
        if self._terminal and self._drawn:
            self._draw(now, final=True)
        elif not self._terminal and now - self._started >= LOG_EVERY_S:
            log.info("%s: done, %s rows in %s", self.label, f"{self.done:,}",
                     _duration(now - self._started))

    def describe(self, now: float | None = None) -> str:
        """``label: 12,000/100,000 rows (12%), 5,000 rows/s, 18s left``."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total is not None:
            text += f"/{self.total:,} rows ({min(100.0, 100.0 * self.done / self.total):.0f}%)"
        else:
            text += " rows"
        text += f", {rate:,.0f} rows/s"
        if self.total is not None and rate > 0 and self.done < self.total:
            text += f", {_duration((self.total - self.done) / rate)} left"
        return text

    def _draw(self, now: float, *, final: bool = False) -> None:
        self._shown_at = now
        self._drawn = True
        bar = ""
        if self.total is not None:
            filled = min(BAR_WIDTH, int(BAR_WIDTH * self.done / self.total))
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
        with _draw_lock:
            self._stream.write("\r\x1b[2K" + bar + self.describe(now) + ("\n" if final else ""))
            self._stream.flush()


def estimate_rows(conn: Connection, table: sa.Table) -> int | None:
    """About how many rows ``table`` has, cheaply: PostgreSQL ``pg_class.reltuples``, MySQL
    ``information_schema.TABLES.TABLE_ROWS``, else ``count(*)``. None when unknown.

    Safe inside a snapshot's transaction: catalog reads only on PostgreSQL and MySQL."""
    # In a savepoint: a failed estimate must not abort the snapshot transaction it runs in.
    savepoint = conn.begin_nested() if conn.in_transaction() else None
    try:
        value = _estimate(conn, table)
    except SQLAlchemyError as exc:
        if savepoint is not None:
            savepoint.rollback()
        log.debug("cannot estimate the rows of %s: %s", table.name, exc)
        return None
    if savepoint is not None:
        savepoint.commit()
    return value


def _estimate(conn: Connection, table: sa.Table) -> int | None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        quoted = conn.dialect.identifier_preparer.format_table(table)
        value = conn.execute(
            sa.text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"),
            {"t": quoted},
        ).scalar()
        # reltuples is -1 (PostgreSQL 14+) or 0 for a table never vacuumed or analyzed:
        # then unknown, rather than a count(*) that reads the whole table once more.
        return int(value) if value is not None and int(value) > 0 else None
    elif dialect in ("mysql", "mariadb"):
        value = conn.execute(
            sa.text("SELECT TABLE_ROWS FROM information_schema.TABLES "
                    "WHERE TABLE_SCHEMA = COALESCE(:s, DATABASE()) AND TABLE_NAME = :t"),
            {"s": table.schema, "t": table.name},
        ).scalar()
        return None if value is None else int(value)
    count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
    return None if count is None else int(count)


def estimate_total(conn: Connection, tables: Iterable[sa.FromClause]) -> int | None:
    """The sum of ``estimate_rows`` over ``tables``; None when any is unknown (or a query)."""
    total = 0
    for table in tables:
        estimate = estimate_rows(conn, table) if isinstance(table, sa.Table) else None
        if estimate is None:
            return None
        total += estimate
    return total


def snapshot_progress(conn: Connection, source: str, tables: Iterable[sa.Table]) -> RowProgress:
    """The progress of the snapshot of ``tables`` by the CDC source ``source``."""
    return RowProgress(f"source {source}: snapshot", estimate_total(conn, tables))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
