"""Chunked, resumable, key-ordered reading of a whole table (the snapshot of a CDC source).

Shared by the log-based connectors (PostgreSQL WAL, MySQL binlog). A table is read in chunks
of at most ``chunk_size`` rows in key order with keyset pagination::

    SELECT cols FROM t WHERE (k1, k2) > (:a, :b) ORDER BY k1, k2 LIMIT :n

so a chunk costs one index range scan however deep into the table it starts, and the last key
of a chunk is all it takes to resume after it (store it in the source offset).

Usage::

    positions = key_positions(table, ["id"])
    for chunk in iter_chunks(conn, table, ["id"], after_key=stored_or_none, chunk_size=10_000):
        emit(chunk); store(last_key(chunk, positions))  # resume later with after_key=that

The caller owns the transaction (and its isolation level / snapshot): every chunk is read on
``conn`` as it is. Key columns must be NOT NULL (a primary key or a unique NOT NULL index): a
row whose key is NULL compares to nothing and would never be read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.elements import ColumnElement

Key = tuple[Any, ...]

#: dialects whose optimizer turns a row-value comparison into an index range scan
_ROW_VALUE_DIALECTS = frozenset({"postgresql", "sqlite"})


def chunk_query(
    table: sa.Table,
    key_columns: Sequence[str],
    *,
    after_key: Key | None,
    limit: int,
    columns: Sequence[str] | None = None,
    dialect: str = "postgresql",
) -> sa.Select[Any]:
    """The SELECT of the chunk after ``after_key`` (from the start when None), in key order.

    ``columns`` selects and orders the columns (all of the table's by default). ``dialect``
    chooses the form of a composite-key comparison: a row value ``(k1, k2) > (a, b)`` where
    the optimizer ranges over it, the equivalent ``k1 >= a AND (k1 > a OR (k1 = a AND k2 > b))``
    elsewhere (MySQL/MariaDB).
    """
    if not key_columns:
        raise ValueError("a chunked snapshot needs at least one key column")
    keys = [table.c[name] for name in key_columns]
    selected = [table.c[name] for name in columns] if columns else list(table.columns)
    query = sa.select(*selected).order_by(*keys).limit(limit)
    if after_key is not None:
        if len(after_key) != len(keys):
            raise ValueError(f"after_key has {len(after_key)} values for {len(keys)} key columns")
        query = query.where(after(keys, after_key, dialect=dialect))
    return query


def after(
    keys: Sequence[ColumnElement[Any]], values: Key, *, dialect: str = "postgresql"
) -> ColumnElement[bool]:
    """The condition "the key ``keys`` sorts after ``values``" (lexicographic order)."""
    if len(keys) == 1:
        single: ColumnElement[bool] = keys[0] > values[0]
        return single
    if dialect in _ROW_VALUE_DIALECTS:
        row_after: ColumnElement[bool] = sa.tuple_(*keys) > sa.tuple_(*values)
        return row_after
    # (k1 > a) OR (k1 = a AND k2 > b) OR ...; the leading k1 >= a gives the optimizer a range.
    branches: list[ColumnElement[bool]] = []
    for i, key in enumerate(keys):
        equal = [keys[j] == values[j] for j in range(i)]
        branches.append(sa.and_(*equal, key > values[i]))
    return sa.and_(keys[0] >= values[0], sa.or_(*branches))


def iter_chunks(
    conn: Connection,
    table: sa.Table,
    key_columns: Sequence[str],
    *,
    after_key: Key | None = None,
    chunk_size: int = 10_000,
    columns: Sequence[str] | None = None,
) -> Iterator[list[Row[Any]]]:
    """Yield the rows of ``table`` after ``after_key`` in key order, ``chunk_size`` at a time.

    Every chunk is non-empty; the iteration ends after the first chunk shorter than
    ``chunk_size`` (or an empty read). Rows carry ``columns`` (default: all) in that order.
    The key of the last row of a chunk (``last_key``) resumes right after it.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    positions = key_positions(table, key_columns, columns)
    dialect = conn.dialect.name
    position = after_key
    while True:
        query = chunk_query(
            table,
            key_columns,
            after_key=position,
            limit=chunk_size,
            columns=columns,
            dialect=dialect,
        )
        rows = list(conn.execute(query).all())
        if not rows:
            return
        yield rows
        if len(rows) < chunk_size:
            return
        position = tuple(rows[-1][i] for i in positions)


def key_positions(
    table: sa.Table, key_columns: Sequence[str], columns: Sequence[str] | None = None
) -> tuple[int, ...]:
    """Where the key columns sit in a row of ``columns`` (default: all of the table's)."""
    names = list(columns) if columns else [c.name for c in table.columns]
    missing = [k for k in key_columns if k not in names]
    if missing:
        raise ValueError(f"key column(s) {', '.join(missing)} are not among the selected columns")
    return tuple(names.index(k) for k in key_columns)


def last_key(chunk: Sequence[Sequence[Any]], positions: Sequence[int]) -> Key:
    """The key of the last row of ``chunk`` (``positions`` from ``key_positions``)."""
    row = chunk[-1]
    return tuple(row[i] for i in positions)
