"""What ``check`` and ``status`` report about each target, and the NULL-ordering warning."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from connectors.query._cursors import cursor_for
from connectors.query._readers import Reader, Resolver, count_rows
from connectors.query.config import QuerySourceConfig
from liberate.connector import CheckResult
from liberate.errors import LiberateError

logger = logging.getLogger("connectors.query")

NULL_HINT = (
    "rows are read in the order of these columns, and NULL has no place in it: backfill the "
    "NULLs and make the column NOT NULL, or list a fallback timestamp column "
    "(timestamp_column: [updated_at, created_at])"
)


def check_target(
    conn: Connection, config: QuerySourceConfig, label: str, resolve: Resolver
) -> list[CheckResult]:
    """The table exists, has a key, mapped types and usable offset columns; NULLs reported."""
    try:
        target = resolve()
        cursor = cursor_for(target, config, None, dialect=conn.dialect.name)
    except LiberateError as exc:
        return [CheckResult(label, False, exc.message, exc.hint)]
    key = ", ".join(target.schema.key_columns)
    results = [
        CheckResult(
            label,
            True,
            f"{len(target.schema.columns)} columns, key ({key}), mode {config.mode.value}, "
            f"topic {target.topic}",
        )
    ]
    condition = cursor.unordered_rows()
    if condition is None:
        return results
    columns = ", ".join(cursor.nullable_ordering_columns())
    count = count_rows(conn, target, condition)
    name = f"{label}: NULL in ordering columns"
    if count:
        message = f"{count} row(s) have NULL in {columns}; they are not read"
        results.append(CheckResult(name, False, message, NULL_HINT))
    else:
        message = f"warning: {columns} may hold NULL (no row does now); such rows are not read"
        results.append(CheckResult(name, True, message, "make the column(s) NOT NULL"))
    return results


def warn_unordered_rows(conn: Connection, readers: Sequence[Reader]) -> None:
    """Log a warning per target with rows whose ordering columns are NULL."""
    for reader in readers:
        condition = reader.cursor.unordered_rows()
        if condition is None:
            continue
        count = count_rows(conn, reader.target, condition)
        if count:
            logger.warning(
                "%s: %d row(s) have NULL in %s and are not read (hint: %s)",
                reader.target.label,
                count,
                ", ".join(reader.cursor.nullable_ordering_columns()),
                NULL_HINT,
            )


def backlog(conn: Connection, reader: Reader) -> dict[str, Any]:
    """How far the stored position is behind the database now (begins a cycle on ``reader``)."""
    cursor = reader.cursor
    if cursor.between_cycles:
        return {**cursor.lag(), "rows_behind": 0}
    cursor.begin_cycle(conn)
    return {**cursor.lag(), "rows_behind": count_rows(conn, reader.target, cursor.pending_rows())}
