"""Reconcile one source table with one target table: counts, range checksums, then keys.

Both tables are read through SQLAlchemy only, and hashed in Python (``_values``), so any two
dialects compare (PostgreSQL to SQLite, MariaDB to PostgreSQL). The key space is cut into
ranges of the key columns (boundaries are keys of the larger side at even row offsets, read
with ``ORDER BY key LIMIT 1 OFFSET n``); a range whose count and order-independent checksum
agree on both sides is equal. A range that differs is cut again, until it holds at most
``leaf_rows`` rows on each side: then its rows are compared key by key. A range empty on one
side needs no recursion: every key on the other side is missing or extra.

Collations differ between databases: text key columns are compared in code-point order on
every dialect that can (``BINARY_COLLATIONS``), so both sides cut the key space alike. Where
that is not possible a key may fall into one range on one side and into the next on the other:
a key found missing in one range and extra in another is compared by its row digest at the
end, which settles it as equal or different.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from liberate.verify._values import (
    DIGEST_MODULUS,
    Converter,
    Normalised,
    normalise_row,
    row_digest,
)

Key = tuple[Normalised, ...]
RawKey = tuple[Any, ...]
#: a half-open range of raw key values: [low, high); None is unbounded
KeyRange = tuple[RawKey | None, RawKey | None]

#: collations that order text by code point on each dialect, so that both sides cut the key
#: space at the same places (PostgreSQL's and MariaDB's defaults sort case-insensitively or by
#: locale, SQLite by bytes). A dialect not listed compares in its own order; keys that then
#: land in different ranges on each side are settled at the end (``settle_moved_keys``).
BINARY_COLLATIONS = {
    "postgresql": "C",
    "mysql": "utf8mb4_bin",
    "mariadb": "utf8mb4_bin",
    "sqlite": "BINARY",
}

DEFAULT_PARTS = 16
DEFAULT_LEAF_ROWS = 1000
MAX_DEPTH = 12
STREAM_ROWS = 5000


@dataclass
class Side:
    """One table on one connection, with the columns compared (key columns first)."""

    conn: Connection
    table: sa.Table
    key: list[str]
    columns: list[str]
    #: per column of ``columns``: how to read its values as the source's type (None: as is)
    converters: list[Converter | None] = field(default_factory=list)

    def key_columns(self) -> list[sa.ColumnElement[Any]]:
        """The key columns as ranges compare and order them: text in code-point order."""
        collation = BINARY_COLLATIONS.get(self.conn.dialect.name)
        columns: list[sa.ColumnElement[Any]] = []
        for name in self.key:
            column: sa.ColumnElement[Any] = self.table.c[name]
            if collation is not None and isinstance(column.type, sa.String):
                column = column.collate(collation)
            columns.append(column)
        return columns

    def selected(self) -> list[sa.ColumnElement[Any]]:
        return [self.table.c[name] for name in self.columns]


@dataclass
class Differences:
    """The keys that differ, and the counts of each kind (the key lists are complete here;
    the report caps them)."""

    missing: dict[Key, int] = field(default_factory=dict)  # in the source only: key -> digest
    extra: dict[Key, int] = field(default_factory=dict)  # in the target only
    different: list[Key] = field(default_factory=list)
    source_rows: int = 0
    target_rows: int = 0
    ranges_compared: int = 0

    def settle_moved_keys(self) -> None:
        """Keys missing in one range and extra in another (collation order): compare them."""
        for key in [k for k in self.missing if k in self.extra]:
            if self.missing.pop(key) != self.extra.pop(key):
                self.different.append(key)


@dataclass(frozen=True)
class _Summary:
    rows: int
    checksum: int


def reconcile(
    source: Side,
    target: Side,
    *,
    parts: int = DEFAULT_PARTS,
    leaf_rows: int = DEFAULT_LEAF_ROWS,
) -> Differences:
    """The differences between ``source`` and ``target`` (same key and column names)."""
    found = Differences()
    whole: KeyRange = (None, None)
    left, right = _summary(source, whole), _summary(target, whole)
    found.source_rows, found.target_rows = left.rows, right.rows
    _compare(source, target, whole, left, right, found, parts, leaf_rows, depth=0)
    found.settle_moved_keys()
    return found


def _compare(
    source: Side,
    target: Side,
    bounds: KeyRange,
    left: _Summary,
    right: _Summary,
    found: Differences,
    parts: int,
    leaf_rows: int,
    *,
    depth: int,
) -> None:
    found.ranges_compared += 1
    if left == right:
        return
    if left.rows == 0 or right.rows == 0:
        into = found.extra if left.rows == 0 else found.missing
        side = target if left.rows == 0 else source
        for key, digest in row_digests(side, bounds):
            into[key] = digest
        return
    if max(left.rows, right.rows) <= leaf_rows or depth >= MAX_DEPTH:
        _compare_rows(source, target, bounds, found)
        return
    larger = source if left.rows >= right.rows else target
    cuts = _boundaries(larger, bounds, max(left.rows, right.rows), parts)
    if not cuts:
        _compare_rows(source, target, bounds, found)
        return
    edges: list[RawKey | None] = [bounds[0], *cuts, bounds[1]]
    for low, high in itertools.pairwise(edges):
        part: KeyRange = (low, high)
        _compare(source, target, part, _summary(source, part), _summary(target, part), found,
                 parts, leaf_rows, depth=depth + 1)


def _compare_rows(source: Side, target: Side, bounds: KeyRange, found: Differences) -> None:
    left = dict(row_digests(source, bounds))
    right = dict(row_digests(target, bounds))
    for key, digest in left.items():
        other = right.pop(key, None)
        if other is None:
            found.missing[key] = digest
        elif other != digest:
            found.different.append(key)
    found.extra.update(right)


def _where(side: Side, bounds: KeyRange) -> list[sa.ColumnElement[bool]]:
    columns = side.key_columns()
    low, high = bounds
    conditions: list[sa.ColumnElement[bool]] = []
    if len(columns) == 1:
        if low is not None:
            conditions.append(columns[0] >= low[0])
        if high is not None:
            conditions.append(columns[0] < high[0])
        return conditions
    if low is not None:
        conditions.append(sa.tuple_(*columns) >= sa.tuple_(*low))
    if high is not None:
        conditions.append(sa.tuple_(*columns) < sa.tuple_(*high))
    return conditions


def _rows(side: Side, bounds: KeyRange) -> Iterator[Sequence[Any]]:
    query = sa.select(*side.selected()).where(*_where(side, bounds))
    result = side.conn.execution_options(yield_per=STREAM_ROWS).execute(query)
    try:
        yield from result
    finally:
        result.close()


def row_digests(side: Side, bounds: KeyRange) -> Iterator[tuple[Key, int]]:
    """The normalised key and the digest of each row of ``side`` in ``bounds``."""
    width = len(side.key)
    for row in _rows(side, bounds):
        values = normalise_row(row, side.converters)
        yield values[:width], row_digest(values)


def _summary(side: Side, bounds: KeyRange) -> _Summary:
    rows = 0
    checksum = 0
    for _, digest in row_digests(side, bounds):
        rows += 1
        checksum = (checksum + digest) % DIGEST_MODULUS
    return _Summary(rows, checksum)


def _boundaries(side: Side, bounds: KeyRange, rows: int, parts: int) -> list[RawKey]:
    """Keys of ``side`` that cut ``bounds`` into about ``parts`` ranges of equal row counts."""
    step = max(1, rows // parts)
    keys = side.key_columns()
    cuts: list[RawKey] = []
    for offset in range(step, rows, step):
        query = (
            sa.select(*keys).where(*_where(side, bounds)).order_by(*keys).offset(offset).limit(1)
        )
        row = side.conn.execute(query).first()
        if row is None:
            break
        key = tuple(row)
        if not cuts or key != cuts[-1]:
            cuts.append(key)
    return cuts
