"""The cursor of the timestamp modes (``timestamp`` and ``timestamp+incrementing``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from connectors.query._cursor_base import KeyCodec, OffsetMap, PollingCursor, Row, require_integer
from connectors.query._targets import Target
from connectors.query._timestamps import TimestampAxis, as_kind, offset_text
from connectors.query.config import QueryMode, QuerySourceConfig
from connectors.query.offsets import INCREMENTING, TIMESTAMP, PollingOffset
from liberate.errors import FatalError
from liberate.records import Primitive


class TimestampCursor(PollingCursor):
    """Rows by (timestamp, tie-breaker) after the last one read and older than the bound.

    The tie-breaker is the incrementing column (``timestamp+incrementing``) or the key
    (``timestamp``): rows sharing a timestamp are read in tie-breaker order, and the offset keeps
    both values, so a batch or a restart that ends inside such a group loses no row and repeats
    none (the fix of kafka-connect-jdbc#598).
    """

    def __init__(
        self,
        target: Target,
        config: QuerySourceConfig,
        stored: PollingOffset | None,
        *,
        dialect: str,
    ) -> None:
        super().__init__(target)
        self.ts_names = config.timestamp_columns
        self.axis = TimestampAxis.over(
            [target.column(n, role="timestamp_column") for n in self.ts_names],
            dialect=dialect,
            where=target.label,
        )
        self.ts_positions = tuple(self._column_index(n) for n in self.ts_names)
        self.delay = config.timestamp_delay
        self.initial = config.timestamp_initial
        self.incrementing: IncrementingTieBreak | None = None
        self.keys: KeyCodec | None = None
        if config.mode == QueryMode.TIMESTAMP_INCREMENTING:
            assert config.incrementing_column is not None  # the config validator ensures it
            self.incrementing = IncrementingTieBreak(target, config.incrementing_column)
            self.tiebreak = [self.incrementing.column]
            self.tiebreak_names: tuple[str, ...] = (self.incrementing.name,)
        else:
            self.keys = KeyCodec(target, target.schema.key_columns)
            self.tiebreak = list(self.keys.columns)
            self.tiebreak_names = self.keys.names
        self.last_ts: dt.datetime | None = None
        self.last_tiebreak: tuple[Any, ...] | None = None
        self._last_ts_text: str | None = None
        self._last_key_encoded: list[Primitive] | None = None
        if stored is not None and stored.timestamp is not None:
            self._resume(stored)
        self.bound: dt.datetime | None = None
        self.clock: dt.datetime | None = None

    def _resume(self, stored: PollingOffset) -> None:
        value = stored.timestamp_value
        assert value is not None
        self.last_ts = as_kind(value, self.axis.kind)
        self._last_ts_text = stored.timestamp
        if self.incrementing is not None:
            if stored.incrementing is not None:
                self.last_tiebreak = (stored.incrementing,)
        elif self.keys is not None:
            self.last_tiebreak = self.keys.decode(stored, self.target.label)
            if self.last_tiebreak is not None:
                self._last_key_encoded = [stored.key[n] for n in self.keys.names]

    def begin_cycle(self, conn: Connection) -> None:
        raw = conn.execute(sa.select(self.axis.clock())).scalar()
        clock = self.axis.clock_value(raw)
        if clock is None:
            raise FatalError(
                f"cannot read the database clock for {self.target.label} (got {raw!r})",
                hint="check the server's time zone settings",
            )
        self.clock = clock
        self.bound = clock - self.delay
        self.cycle_done = False

    def apply_filters(self, query: sa.Select[Any]) -> sa.Select[Any]:
        axis = self.axis
        assert self.bound is not None, "begin_cycle() comes first"
        query = query.where(axis.expression < axis.bind(self.bound))
        query = self._not_null(query, self.tiebreak_names)
        if self.last_ts is None:
            if self.initial is not None:
                query = query.where(axis.at_or_after(self.initial))
            return query
        at = axis.bind(self.last_ts)
        if self.last_tiebreak is None:
            # An offset without a tie-breaker (written in another mode): reading the rows at
            # its timestamp again repeats some, skipping them could lose some.
            return query.where(axis.at_or_after(self.last_ts))
        binds = [
            sa.bindparam(None, v, type_=c.type)
            for c, v in zip(self.tiebreak, self.last_tiebreak, strict=True)
        ]
        same_time_later = (
            self.tiebreak[0] > binds[0]
            if len(binds) == 1
            else sa.tuple_(*self.tiebreak) > sa.tuple_(*binds)
        )
        later = sa.or_(axis.expression > at, sa.and_(axis.expression == at, same_time_later))
        return query.where(axis.at_or_after(self.last_ts), later)

    def apply_order(self, query: sa.Select[Any]) -> sa.Select[Any]:
        return query.order_by(self.axis.expression, *self.tiebreak)

    def advance(self, rows: Sequence[Row], *, last_of_cycle: bool) -> list[OffsetMap]:
        self.cycle_done = last_of_cycle
        if not rows:
            return []
        timestamp_of = self._timestamp_of()
        texts = [offset_text(timestamp_of(row)) for row in rows]
        offsets: list[OffsetMap]
        last = rows[-1]
        if self.incrementing is not None:
            index = self.incrementing.index
            offsets = [
                {TIMESTAMP: text, INCREMENTING: int(row[index])}
                for text, row in zip(texts, rows, strict=True)
            ]
            self.last_tiebreak = (int(last[index]),)
        elif self.keys is not None and self.keys.simple is not None:
            field, key_index = self.keys.simple
            offsets = [
                {TIMESTAMP: text, field: row[key_index]}
                for text, row in zip(texts, rows, strict=True)
            ]
            self.last_tiebreak = (last[key_index],)
            self._last_key_encoded = [last[key_index]]
        else:
            assert self.keys is not None
            fields, encode = self.keys.fields, self.keys.encode
            offsets = []
            for text, row in zip(texts, rows, strict=True):
                offset: OffsetMap = {TIMESTAMP: text}
                offset.update(zip(fields, encode(row), strict=True))
                offsets.append(offset)
            self.last_tiebreak = tuple(last[i] for i in self.keys.positions)
            self._last_key_encoded = self.keys.encode(last)
        self.last_ts = as_kind(timestamp_of(last), self.axis.kind)
        self._last_ts_text = texts[-1]
        return offsets

    def _timestamp_of(self) -> Callable[[Row], dt.datetime]:
        positions = self.ts_positions
        if self.axis.kind == "utc-naive":
            # MySQL TIMESTAMP: naive values read at session time zone UTC; offsets say so.
            pick = self._pick_timestamp(positions)
            return lambda row: pick(row).replace(tzinfo=dt.UTC)
        return self._pick_timestamp(positions)

    @staticmethod
    def _pick_timestamp(positions: tuple[int, ...]) -> Callable[[Row], dt.datetime]:
        if len(positions) == 1:
            index = positions[0]
            return lambda row: row[index]

        def first_not_null(row: Row) -> dt.datetime:
            for index in positions:
                value: dt.datetime | None = row[index]
                if value is not None:
                    return value
            raise AssertionError("the query excludes rows whose timestamps are all NULL")

        return first_not_null

    def position(self) -> PollingOffset:
        if self._last_ts_text is None:
            return PollingOffset()
        if self.incrementing is not None:
            last = self.last_tiebreak[0] if self.last_tiebreak else None
            return PollingOffset(timestamp=self._last_ts_text, incrementing=last)
        assert self.keys is not None
        key = {}
        if self._last_key_encoded is not None:
            key = dict(zip(self.keys.names, self._last_key_encoded, strict=True))
        return PollingOffset(timestamp=self._last_ts_text, key=key)

    def unordered_rows(self) -> ColumnElement[bool] | None:
        conditions: list[ColumnElement[bool]] = []
        if self._timestamps_nullable:
            conditions.append(self.axis.is_null())
        conditions.extend(c.is_(None) for c in self._nullable(self.tiebreak_names))
        return sa.or_(*conditions) if conditions else None

    def nullable_ordering_columns(self) -> list[str]:
        names = list(self.ts_names) if self._timestamps_nullable else []
        return names + [n for n in self.tiebreak_names if n in self.target.nullable]

    @property
    def _timestamps_nullable(self) -> bool:
        # With COALESCE, a row is unordered only when every listed column may be NULL.
        return all(n in self.target.nullable for n in self.ts_names)

    def lag(self) -> dict[str, Any]:
        if self.clock is None or self.last_ts is None:
            return {}
        return {"behind_s": round((self.clock - self.last_ts).total_seconds(), 3)}


class IncrementingTieBreak:
    """The incrementing column used as the tie-breaker of ``timestamp+incrementing``."""

    def __init__(self, target: Target, name: str) -> None:
        self.name = name
        self.column = target.column(name, role="incrementing_column")
        require_integer(self.column, target.label)
        self.index = target.schema.columns.index(name)
