"""The timestamp axis of the timestamp modes: how rows are ordered and compared by time.

Three things differ between databases and are kept here:

- **What "now" is for a column.** Time-zone-aware columns (PostgreSQL ``timestamptz``, MySQL
  ``TIMESTAMP`` read with the session time zone at UTC) compare with the database clock as an
  instant. Naive columns hold wall-clock time as the application wrote it, which is almost always
  the database's local time: PostgreSQL ``LOCALTIMESTAMP`` (session time zone = the server
  default, which we leave alone), MySQL the server's default zone (``@@global.time_zone``,
  because our own session runs at UTC), SQLite UTC (its ``CURRENT_TIMESTAMP`` is UTC).
- **How values are compared.** SQLite stores timestamps as text, in several shapes:
  ``CURRENT_TIMESTAMP`` writes ``2024-05-01 10:00:00``, SQLAlchemy ``...10:00:00.000000``,
  ``isoformat()`` ``2024-05-01T10:00:00``. Compared as text, equal instants differ, so the axis
  compares a normalized text (``YYYY-MM-DD HH:MM:SS.ffffff``) and keeps an index-friendly
  prefilter on the raw column.
- **How a Python datetime is bound.** Through the column's own type elsewhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.elements import ColumnElement

from liberate.errors import PrerequisiteError

Kind = Literal["aware", "naive", "utc-naive"]

_UTC = dt.UTC


def timestamp_kind(column_type: sa.types.TypeEngine[Any]) -> Kind:
    """How a timestamp column's values relate to instants.

    ``aware``: the driver returns aware datetimes; ``utc-naive``: naive values that are UTC
    (MySQL ``TIMESTAMP`` read at session time zone UTC); ``naive``: local wall-clock time.
    """
    if isinstance(column_type, mysql.TIMESTAMP):
        return "utc-naive"
    if isinstance(column_type, sa.DateTime) and column_type.timezone:
        return "aware"
    return "naive"


def as_kind(value: dt.datetime, kind: Kind) -> dt.datetime:
    """``value`` made comparable with a column of ``kind`` (aware values become UTC)."""
    if kind == "aware":
        return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    if value.tzinfo is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    return value


def offset_text(value: dt.datetime) -> str:
    """The ISO text of a timestamp as offsets store it (microseconds; aware values in UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(_UTC)
    return value.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class TimestampAxis:
    """The ordering value of a timestamp mode over one or more columns (COALESCE'd)."""

    columns: tuple[ColumnElement[Any], ...]
    kind: Kind
    dialect: str

    @classmethod
    def over(
        cls, columns: Sequence[ColumnElement[Any]], *, dialect: str, where: str
    ) -> TimestampAxis:
        """The axis of ``columns``; they must all be timestamps of one kind."""
        kinds = set()
        for column in columns:
            if not isinstance(column.type, sa.DateTime):
                raise PrerequisiteError(
                    f"timestamp_column {column.key} of {where} has type {column.type}, "
                    "not a timestamp",
                    hint="timestamp_column must name DATETIME/TIMESTAMP columns "
                    "(or use incrementing mode with an integer column)",
                )
            kinds.add(timestamp_kind(column.type))
        if len(kinds) > 1:
            raise PrerequisiteError(
                f"the timestamp columns of {where} mix time-zone-aware and naive types",
                hint="list timestamp columns of one kind only (all with or all without time zone)",
            )
        return cls(tuple(columns), kinds.pop(), dialect)

    @property
    def _sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def raw(self) -> ColumnElement[Any]:
        """The stored value (COALESCE of the columns)."""
        if len(self.columns) == 1:
            return self.columns[0]
        coalesced: ColumnElement[Any] = sa.func.coalesce(*self.columns)
        return coalesced

    @property
    def expression(self) -> ColumnElement[Any]:
        """What WHERE and ORDER BY use."""
        if not self._sqlite:
            return self.raw
        raw = self.raw
        seconds = sa.func.replace(sa.func.substr(raw, 1, 19), "T", " ")
        fraction = sa.func.substr(sa.func.substr(raw, 21).concat("000000"), 1, 6)
        return seconds.concat(".").concat(fraction)

    def bind(self, value: dt.datetime) -> ColumnElement[Any]:
        """``value`` as a parameter comparable with ``expression``."""
        value = as_kind(value, self.kind)
        if self._sqlite:
            return sa.literal(value.strftime("%Y-%m-%d %H:%M:%S.%f"), sa.String())
        return sa.bindparam(None, value, type_=self.columns[0].type)

    def at_or_after(self, value: dt.datetime) -> ColumnElement[bool]:
        """``expression >= value``, with an index-friendly superset filter on SQLite."""
        condition = self.expression >= self.bind(value)
        if self._sqlite and len(self.columns) == 1:
            # Every stored shape of an instant >= value sorts at or after value's whole second
            # written with a space (a 'T' sorts after the space), so this raw comparison is a
            # superset the column's index can serve.
            floor = as_kind(value, self.kind).strftime("%Y-%m-%d %H:%M:%S")
            condition = sa.and_(self.raw >= sa.literal(floor, sa.String()), condition)
        return condition

    def is_null(self) -> ColumnElement[bool]:
        return self.raw.is_(None)

    def clock(self) -> ColumnElement[Any]:
        """The database's current time in this axis' terms (see the module docstring)."""
        if self.dialect == "postgresql":
            return sa.func.localtimestamp() if self.kind == "naive" else sa.func.now()
        if self.dialect in ("mysql", "mariadb"):
            utc_now = sa.func.utc_timestamp(6)
            if self.kind != "naive":
                return utc_now
            return sa.func.convert_tz(utc_now, "+00:00", sa.literal_column("@@global.time_zone"))
        if self._sqlite:
            return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")
        return sa.func.current_timestamp()

    def clock_value(self, raw: Any) -> dt.datetime | None:
        """The fetched ``clock()`` as a datetime of this axis' kind (None if unknown)."""
        if raw is None:
            return None
        if isinstance(raw, str):
            raw = dt.datetime.fromisoformat(raw)
        if not isinstance(raw, dt.datetime):
            return None
        return as_kind(raw, self.kind)
