"""The polling relay's statements on the outbox table, built with SQLAlchemy Core.

- ``select_batch``: rows not yet relayed, in ``seq`` order, skipping the seqs delivered and
  still unconfirmed; payload and headers read as text (their JSON exactly as stored), the
  other columns as the type contract reads them.
- ``confirm``: delete the delivered rows, or mark them ``relayed_at`` when kept for a
  retention; idempotent, so a restart can repeat it.
- ``purge``: delete rows marked longer ago than the retention.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from connectors.outbox._routing import Routing
from connectors.outbox.config import OutboxSourceConfig
from connectors.outbox.offsets import SeqRanges
from liberate.errors import PrerequisiteError, UnsupportedTypeError
from liberate.schema.types import avro_column

# Ranges per OR-list in one statement: offsets hold at most a few hundred (see source.py).
_RANGES_PER_STATEMENT = 500
Converter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class OutboxTable:
    """The reflected outbox table, what the router reads of it and how to read it."""

    table: sa.Table
    routing: Routing
    seq: sa.Column[Any]
    relayed_at: sa.Column[Any] | None
    field_types: Mapping[str, Any]
    converters: Mapping[str, Converter]
    dialect: str

    @property
    def label(self) -> str:
        return f"{self.table.schema}.{self.table.name}" if self.table.schema else self.table.name

    def select_batch(self, skip: SeqRanges, limit: int) -> sa.Select[Any]:
        text_columns = {self.routing.payload_column, self.routing.headers_column}
        selected: list[Any] = [self.seq.label("__seq")]
        for name in self.routing.columns:
            column = self.table.c[name]
            selected.append(
                sa.cast(column, sa.Text).label(name) if name in text_columns
                else column.label(name)
            )
        query = sa.select(*selected)
        if self.relayed_at is not None:
            query = query.where(self.relayed_at.is_(None))
        if skip:
            query = query.where(sa.not_(_in_ranges(self.seq, skip.ranges())))
        return query.order_by(self.seq).limit(limit)

    def row_of(self, row: Row[Any]) -> tuple[int, dict[str, Any]]:
        """(seq, column -> value) of a selected row, typed columns converted for the router."""
        values = dict(row._mapping)
        seq = int(values.pop("__seq"))
        for name, convert in self.converters.items():
            value = values.get(name)
            if value is not None:
                values[name] = convert(value)
        return seq, values

    def confirm(self, conn: Connection, seqs: SeqRanges, *, mark: dt.datetime | None) -> int:
        """Delete (``mark`` None) or mark the rows of ``seqs``; how many rows changed."""
        changed = 0
        ranges = seqs.ranges()
        for start in range(0, len(ranges), _RANGES_PER_STATEMENT):
            where = _in_ranges(self.seq, ranges[start:start + _RANGES_PER_STATEMENT])
            statement: sa.Delete | sa.Update
            if mark is None or self.relayed_at is None:
                statement = sa.delete(self.table).where(where)
            else:
                statement = (
                    sa.update(self.table)
                    .where(where, self.relayed_at.is_(None))
                    .values({self.relayed_at.name: self.stored_time(mark)})
                )
            changed += conn.execute(statement).rowcount
        return changed

    def purge(self, conn: Connection, cutoff: dt.datetime) -> int:
        """Delete rows relayed before ``cutoff``; how many."""
        if self.relayed_at is None:
            return 0
        result = conn.execute(
            sa.delete(self.table).where(self.relayed_at < self.stored_time(cutoff))
        )
        return int(result.rowcount)

    def backlog(self, conn: Connection) -> int:
        """Rows not yet confirmed as relayed."""
        query = sa.select(sa.func.count()).select_from(self.table)
        if self.relayed_at is not None:
            query = query.where(self.relayed_at.is_(None))
        return int(conn.execute(query).scalar_one())

    def max_seq(self, conn: Connection) -> int | None:
        """The highest seq of a row not yet relayed, as this transaction sees it."""
        query = sa.select(sa.func.max(self.seq))
        if self.relayed_at is not None:
            query = query.where(self.relayed_at.is_(None))
        value = conn.execute(query).scalar_one()
        return int(value) if value is not None else None

    def stored_time(self, moment: dt.datetime) -> dt.datetime:
        """A UTC instant as ``relayed_at`` takes it: aware for PostgreSQL's timestamptz,
        naive UTC elsewhere (MySQL sessions run at UTC; SQLite stores the text as given)."""
        utc = moment.astimezone(dt.UTC)
        return utc if self.dialect == "postgresql" else utc.replace(tzinfo=None)


def _in_ranges(column: sa.Column[Any], ranges: Sequence[tuple[int, int]]) -> Any:
    return sa.or_(*(column == lo if lo == hi else column.between(lo, hi) for lo, hi in ranges))


def reflect(conn: Connection, config: OutboxSourceConfig, routing: Routing) -> OutboxTable:
    """Reflect the outbox table and check it has every column the configuration names."""
    schema, name = config.table_name
    dialect = conn.dialect.name
    try:
        table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
    except sa.exc.NoSuchTableError as exc:
        raise PrerequisiteError(
            f"outbox table {config.table} does not exist",
            hint="create it with the DDL in outbox/sql/<dialect>.sql (or outbox.create_table), "
            "or set table: to the outbox table's name",
        ) from exc
    c = config.columns
    wanted = [*routing.columns, c.seq, *([c.relayed_at] if c.relayed_at else [])]
    missing = [n for n in dict.fromkeys(wanted) if n not in table.c]
    if missing:
        raise PrerequisiteError(
            f"outbox table {config.table} has no column(s) {', '.join(missing)}",
            hint="add them (see outbox/sql/<dialect>.sql), or map the names under columns: "
            "(headers, timestamp and relayed_at may be null)",
        )
    typed = [*routing.typed_columns,
             *(p.column for p in routing.placements if p.placement == "header")]
    field_types: dict[str, Any] = {}
    converters: dict[str, Converter] = {}
    text_columns = (routing.payload_column, routing.headers_column)
    for name in dict.fromkeys(typed):
        try:
            mapped = avro_column(table.c[name], where=f"{config.table}.{name}", dialect=dialect)
        except UnsupportedTypeError as exc:
            raise PrerequisiteError(exc.message, hint=exc.hint) from exc
        field_types[name] = mapped.type
        if mapped.convert is not None and name not in text_columns:  # those are read as text
            converters[name] = mapped.convert
    return OutboxTable(
        table=table,
        routing=routing,
        seq=table.c[c.seq],
        relayed_at=table.c[c.relayed_at] if c.relayed_at else None,
        field_types=field_types,
        converters=converters,
        dialect=dialect,
    )
