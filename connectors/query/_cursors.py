"""The bulk and incrementing cursors, and the factory that picks a cursor for a mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from connectors.query._cursor_base import KeyCodec, OffsetMap, PollingCursor, Row, require_integer
from connectors.query._targets import Target
from connectors.query._timestamp_cursor import TimestampCursor
from connectors.query.config import QueryMode, QuerySourceConfig
from connectors.query.offsets import COMPLETE, CYCLE, INCREMENTING, PollingOffset
from liberate.records import Primitive


class BulkCursor(PollingCursor):
    """Every row of the target each cycle, in key order; a restart resumes the cycle it was in."""

    def __init__(self, target: Target, stored: PollingOffset | None) -> None:
        super().__init__(target)
        self.keys = KeyCodec(target, target.schema.key_columns)
        self.cycle = 0
        self.complete = True
        self.after: tuple[Any, ...] | None = None
        if stored is not None and stored.cycle is not None:
            self.cycle = stored.cycle
            self.complete = stored.complete
            self.after = None if stored.complete else self.keys.decode(stored, target.label)
        self._after_encoded: list[Primitive] | None = None
        if self.after is not None and stored is not None:
            self._after_encoded = [stored.key[n] for n in self.keys.names]

    def begin_cycle(self, conn: Connection) -> None:
        if self.complete:
            self.cycle += 1
            self.after = None
            self.complete = False
        self.cycle_done = False

    def apply_filters(self, query: sa.Select[Any]) -> sa.Select[Any]:
        query = self._not_null(query, self.keys.names)
        if self.after is None:
            return query
        return query.where(self.keys.after(self.after))

    def apply_order(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.order_by(*self.keys.columns)

    def advance(self, rows: Sequence[Row], *, last_of_cycle: bool) -> list[OffsetMap]:
        if last_of_cycle:
            self.cycle_done = True
            self.complete = True
        if not rows:
            return []
        cycle = self.cycle
        offsets: list[OffsetMap]
        simple = self.keys.simple
        if simple is not None:
            # The common case (one integer or text key) without per-row encoding calls.
            field, index = simple
            offsets = [{CYCLE: cycle, COMPLETE: False, field: row[index]} for row in rows]
        else:
            fields, encode = self.keys.fields, self.keys.encode
            offsets = []
            for row in rows:
                offset: OffsetMap = {CYCLE: cycle, COMPLETE: False}
                offset.update(zip(fields, encode(row), strict=True))
                offsets.append(offset)
        offsets[-1][COMPLETE] = last_of_cycle
        last = rows[-1]
        self.after = tuple(last[i] for i in self.keys.positions)
        self._after_encoded = self.keys.encode(last)
        return offsets

    # -- key ranges, for the parallel reader (``_parallel_bulk``) ----------------------------

    def boundary_statement(self, after: tuple[Any, ...] | None, skip: int) -> sa.Select[Any]:
        """The key of the row ``skip`` rows past the first one after ``after`` (none: fewer).

        An index-only range scan of ``skip`` entries, however deep into the table it starts.
        """
        query = sa.select(*self.keys.columns).select_from(self.target.from_clause)
        query = self._not_null(query, self.keys.names)
        if after is not None:
            query = query.where(self.keys.after(after))
        return query.order_by(*self.keys.columns).offset(skip).limit(1)

    def range_statement(
        self, after: tuple[Any, ...] | None, upto: tuple[Any, ...] | None, limit: int | None
    ) -> sa.Select[Any]:
        """The rows with a key after ``after`` and up to ``upto`` (inclusive), in key order."""
        query = self._not_null(self.build_query(), self.keys.names)
        if after is not None:
            query = query.where(self.keys.after(after))
        if upto is not None:
            query = query.where(sa.not_(self.keys.after(upto)))
        query = self.apply_order(query)
        return query if limit is None else query.limit(limit)

    def offset_keys(self, rows: Sequence[Row]) -> list[Any]:
        """What ``advance_read`` needs of ``rows``: the key of each, as offsets store it."""
        simple = self.keys.simple
        if simple is not None:
            index = simple[1]
            return [row[index] for row in rows]
        encode = self.keys.encode
        return [encode(row) for row in rows]

    def advance_read(
        self, keys: Sequence[Any], last: tuple[Any, ...], *, last_of_cycle: bool
    ) -> list[OffsetMap]:
        """``advance`` for rows read elsewhere: ``keys`` from ``offset_keys(rows)``, ``last``
        the key of the last row (as the driver read it)."""
        if last_of_cycle:
            self.cycle_done = True
            self.complete = True
        if not keys:
            return []
        cycle = self.cycle
        offsets: list[OffsetMap]
        simple = self.keys.simple
        if simple is not None:
            field = simple[0]
            offsets = [{CYCLE: cycle, COMPLETE: False, field: key} for key in keys]
            self._after_encoded = [keys[-1]]
        else:
            fields = self.keys.fields
            offsets = []
            for encoded in keys:
                offset: OffsetMap = {CYCLE: cycle, COMPLETE: False}
                offset.update(zip(fields, encoded, strict=True))
                offsets.append(offset)
            self._after_encoded = list(keys[-1])
        offsets[-1][COMPLETE] = last_of_cycle
        self.after = last
        return offsets

    def position(self) -> PollingOffset:
        key = {}
        if self._after_encoded is not None and not self.complete:
            key = dict(zip(self.keys.names, self._after_encoded, strict=True))
        return PollingOffset(cycle=self.cycle, complete=self.complete, key=key)

    @property
    def between_cycles(self) -> bool:
        return self.complete and self.cycle > 0

    def lag(self) -> dict[str, Any]:
        return {"cycle": self.cycle, "cycle_complete": self.complete}

    def unordered_rows(self) -> ColumnElement[bool] | None:
        nullable = self._nullable(self.keys.names)
        return sa.or_(*(c.is_(None) for c in nullable)) if nullable else None

    def nullable_ordering_columns(self) -> list[str]:
        return [n for n in self.keys.names if n in self.target.nullable]


class IncrementingCursor(PollingCursor):
    """Rows with an incrementing value above the last one read, up to the cycle's maximum."""

    def __init__(self, target: Target, column: str, stored: PollingOffset | None) -> None:
        super().__init__(target)
        self.name = column
        self.column = target.column(column, role="incrementing_column")
        require_integer(self.column, target.label)
        self.index = self._column_index(column)
        self.last: int | None = stored.incrementing if stored is not None else None
        self.maximum: int | None = None

    def begin_cycle(self, conn: Connection) -> None:
        query = sa.select(sa.func.max(self.column)).select_from(self.target.from_clause)
        maximum = conn.execute(query).scalar()
        self.maximum = None if maximum is None else int(maximum)
        self.cycle_done = False

    def apply_filters(self, query: sa.Select[Any]) -> sa.Select[Any]:
        if self.maximum is None:
            return query.where(sa.false())
        query = query.where(self.column <= sa.bindparam(None, self.maximum, type_=self.column.type))
        if self.last is not None:
            query = query.where(self.column > sa.bindparam(None, self.last, type_=self.column.type))
        return query

    def apply_order(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.order_by(self.column)

    def advance(self, rows: Sequence[Row], *, last_of_cycle: bool) -> list[OffsetMap]:
        self.cycle_done = last_of_cycle
        if not rows:
            return []
        index = self.index
        offsets: list[OffsetMap] = [{INCREMENTING: int(row[index])} for row in rows]
        self.last = int(rows[-1][index])
        return offsets

    def position(self) -> PollingOffset:
        return PollingOffset(incrementing=self.last)

    def unordered_rows(self) -> ColumnElement[bool] | None:
        return self.column.is_(None) if self.name in self.target.nullable else None

    def nullable_ordering_columns(self) -> list[str]:
        return [self.name] if self.name in self.target.nullable else []

    def lag(self) -> dict[str, Any]:
        if self.maximum is None:
            return {}
        return {"incrementing": self.last, "maximum": self.maximum}


def cursor_for(
    target: Target,
    config: QuerySourceConfig,
    stored: PollingOffset | None,
    *,
    dialect: str,
) -> PollingCursor:
    """The cursor of ``config.mode`` over ``target``, resumed from ``stored``."""
    if config.mode == QueryMode.BULK:
        return BulkCursor(target, stored)
    if config.mode == QueryMode.INCREMENTING:
        assert config.incrementing_column is not None  # the config validator ensures it
        return IncrementingCursor(target, config.incrementing_column, stored)
    return TimestampCursor(target, config, stored, dialect=dialect)
