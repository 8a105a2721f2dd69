"""Tables, rows and configs for the query source tests, alike on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine

from connectors.query import QuerySource, QuerySourceConfig
from liberate.config.base import DatabaseSettings
from liberate.database import database_url
from liberate.records import SourceRecord
from tests.conformance.source import drain

#: a naive timestamp with microseconds on every database (MySQL DATETIME defaults to seconds)
TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BASE_TIME = dt.datetime(2024, 5, 1, 12, 0, 0)


def engine_for(url: str) -> Engine:
    """An engine on ``url`` with liberate's default drivers."""
    return sa.create_engine(database_url(DatabaseSettings(database=url)))


def orders_table(
    metadata: sa.MetaData, name: str = "orders", *, nullable_ts: bool = False
) -> sa.Table:
    """``id`` primary key, ``label`` text, ``updated_at`` naive timestamp."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=nullable_ts),
    )


def create_orders(url: str, name: str = "orders", *, nullable_ts: bool = False) -> sa.Table:
    """Create the orders table in ``url``'s database."""
    metadata = sa.MetaData()
    table = orders_table(metadata, name, nullable_ts=nullable_ts)
    engine = engine_for(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    return table


def insert(url: str, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` and commit."""
    rows = list(rows)
    if not rows:
        return
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def order(id_: int, *, at: dt.datetime | None = None, label: str | None = None) -> dict[str, Any]:
    """An orders row; ``updated_at`` defaults to ``BASE_TIME`` plus ``id_`` seconds."""
    return {
        "id": id_,
        "label": label or f"order-{id_}",
        "updated_at": at if at is not None else BASE_TIME + dt.timedelta(seconds=id_),
    }


def query_config(url: str, **settings: Any) -> QuerySourceConfig:
    """A query source named ``shop`` on ``url`` reading ``orders`` unless told otherwise."""
    values: dict[str, Any] = {"name": "shop", "connector": "query", "database": url}
    if "query" not in settings:
        values["tables"] = ["orders"]
    values.update(settings)
    return QuerySourceConfig.model_validate(values)


def read_everything(
    config: QuerySourceConfig, offsets: Mapping[str, Any] | None = None
) -> list[SourceRecord]:
    """Open a source, drain it, close it."""
    source = QuerySource(config)
    source.open(offsets or {})
    try:
        return drain(source)
    finally:
        source.close()


def ids(records: Iterable[SourceRecord]) -> list[int]:
    """The ``id`` key of each record, in order."""
    return [int(r.key["id"]) for r in records if r.key is not None]


def db_clock(url: str) -> dt.datetime:
    """The database's current local time (naive), as a naive timestamp column sees it."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            name = conn.dialect.name
            if name == "sqlite":
                text = conn.execute(
                    sa.select(sa.func.strftime("%Y-%m-%d %H:%M:%f", "now"))
                ).scalar()
                return dt.datetime.fromisoformat(str(text))
            expression = sa.func.localtimestamp() if name == "postgresql" else sa.func.now(6)
            value = conn.execute(sa.select(expression)).scalar()
            assert isinstance(value, dt.datetime)
            return value.replace(tzinfo=None)
    finally:
        engine.dispose()
