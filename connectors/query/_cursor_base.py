"""The cursor contract of the query source, and the key columns' share of offsets and filters.

A *cycle* reads a target up to a bound fixed when the cycle begins (the database clock minus
``timestamp_delay`` for the timestamp modes, ``MAX(incrementing)`` for incrementing, the end of
the key order for bulk), in batches. Every query is built by small hooks that subclasses may
override: ``build_query -> apply_filters -> apply_order -> apply_limit``; every value from an
offset is a bind parameter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from connectors.query._targets import Target
from connectors.query.offsets import KEY_PREFIX, PollingOffset, key_decoder, key_encoder
from liberate.errors import PrerequisiteError
from liberate.records import Primitive

Row = Sequence[Any]
OffsetMap = dict[str, Primitive]


class PollingCursor(ABC):
    """The reading position of one target in one mode, and the statements that move it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.cycle_done = True

    # -- statement hooks ------------------------------------------------------------------

    def statement(self, limit: int) -> sa.Select[Any]:
        """The next batch query: at most ``limit`` rows after the current position."""
        query = self.build_query()
        query = self.apply_filters(query)
        query = self.apply_order(query)
        return self.apply_limit(query, limit)

    def build_query(self) -> sa.Select[Any]:
        return sa.select(*self.target.columns).select_from(self.target.from_clause)

    @abstractmethod
    def apply_filters(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Restrict ``query`` to rows after the position and inside this cycle's bound."""

    @abstractmethod
    def apply_order(self, query: sa.Select[Any]) -> sa.Select[Any]:
        """Order ``query`` the way positions advance."""

    def apply_limit(self, query: sa.Select[Any], limit: int) -> sa.Select[Any]:
        return query.limit(limit)

    # -- position -------------------------------------------------------------------------

    @abstractmethod
    def begin_cycle(self, conn: Connection) -> None:
        """Fix the bound of a new cycle (reads the database clock or a maximum)."""

    @abstractmethod
    def advance(self, rows: Sequence[Row], *, last_of_cycle: bool) -> list[OffsetMap]:
        """The offset after each of ``rows`` (read in order); moves the position past them."""

    @abstractmethod
    def position(self) -> PollingOffset:
        """The current position, as stored offsets express it."""

    @abstractmethod
    def unordered_rows(self) -> ColumnElement[bool] | None:
        """Rows the mode cannot order (NULL in an ordering column), or None if none can exist."""

    @abstractmethod
    def nullable_ordering_columns(self) -> list[str]:
        """The ordering columns that may hold NULL (what ``unordered_rows`` looks at)."""

    def lag(self) -> dict[str, Any]:
        """How far behind the database clock or maximum (at the cycle's start) the position is."""
        return {}

    def pending_rows(self) -> ColumnElement[bool]:
        """The rows this cycle has still to read (after ``begin_cycle``)."""
        where = self.apply_filters(self.build_query()).whereclause
        return sa.true() if where is None else where

    @property
    def between_cycles(self) -> bool:
        """True when the stored position ends a cycle and the next one reads everything anew."""
        return False

    # -- shared helpers -------------------------------------------------------------------

    def _column_index(self, name: str) -> int:
        return self.target.schema.columns.index(name)

    def _nullable(self, names: Sequence[str]) -> list[ColumnElement[Any]]:
        return [self.target.from_clause.c[n] for n in names if n in self.target.nullable]

    def _not_null(self, query: sa.Select[Any], names: Sequence[str]) -> sa.Select[Any]:
        # Rows with NULL in an ordering column have no place in the order: never read (they
        # are reported by ``unordered_rows``), in the first batch of a cycle as in the others.
        nullable = self._nullable(names)
        return query.where(*(c.is_not(None) for c in nullable)) if nullable else query


class KeyCodec:
    """Reads and writes the ``key.<column>`` entries of offsets for a list of columns."""

    def __init__(self, target: Target, names: Sequence[str]) -> None:
        self.names = tuple(names)
        columns = [target.column(n, role="key column") for n in names]
        self.columns = columns
        self.positions = tuple(target.schema.columns.index(n) for n in names)
        self.fields = tuple(KEY_PREFIX + n for n in names)
        self.encoders = tuple(key_encoder(c.type) for c in columns)
        self.decoders = tuple(key_decoder(c.type) for c in columns)
        #: (offset field, row position) of a single key stored as it is read, else None
        self.simple: tuple[str, int] | None = None
        if len(names) == 1 and self.encoders[0] is None:
            self.simple = (self.fields[0], self.positions[0])

    def encode(self, row: Row) -> list[Primitive]:
        return [
            row[i] if encode is None else encode(row[i])
            for i, encode in zip(self.positions, self.encoders, strict=True)
        ]

    def decode(self, stored: PollingOffset, where: str) -> tuple[Any, ...] | None:
        if not stored.key:
            return None
        if tuple(stored.key) != self.names:
            raise PrerequisiteError(
                f"the stored offset of {where} was made with key columns "
                f"{', '.join(stored.key)}, now {', '.join(self.names)}",
                hint="restore the previous key_columns, or reset this source's offsets to read "
                "the table again",
            )
        try:
            return tuple(
                decode(stored.key[name])
                for name, decode in zip(self.names, self.decoders, strict=True)
            )
        except (TypeError, ValueError) as exc:
            raise PrerequisiteError(
                f"the stored offset of {where} has a key that does not fit its columns: {exc}",
                hint="reset this source's offsets to read the table again",
            ) from exc

    def after(self, values: tuple[Any, ...]) -> ColumnElement[bool]:
        """Rows whose key sorts after ``values``."""
        binds = [
            sa.bindparam(None, v, type_=c.type) for c, v in zip(self.columns, values, strict=True)
        ]
        if len(self.columns) == 1:
            return self.columns[0] > binds[0]
        return sa.tuple_(*self.columns) > sa.tuple_(*binds)


def require_integer(column: ColumnElement[Any], where: str) -> None:
    """PrerequisiteError unless ``column`` holds integers (an incrementing column must)."""
    column_type = column.type
    is_integer = isinstance(column_type, sa.Integer) or (
        isinstance(column_type, sa.Numeric)
        and not isinstance(column_type, sa.Float)
        and column_type.scale == 0
        and column_type.precision is not None
    )
    if not is_integer:
        raise PrerequisiteError(
            f"incrementing_column {column.key} of {where} has type {column_type}, not an integer",
            hint="incrementing_column must name an integer column that grows with every new "
            "row, such as an auto-increment id",
        )
