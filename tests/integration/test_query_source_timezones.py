"""Timestamp modes against servers whose local time is not UTC.

Naive timestamp columns hold the database's local wall-clock time; the source's upper bound must
be on the same clock, or rows appear hours late (or the delay window vanishes).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from liberate.config.base import DatabaseSettings
from liberate.database import database_url
from tests.integration._query_support import (
    TIMESTAMP,
    engine_for,
    ids,
    query_config,
    read_everything,
)


def _timestamps_table(url: str, column_type: sa.types.TypeEngine[dt.datetime]) -> sa.Table:
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("updated_at", column_type, nullable=False),
    )
    engine = engine_for(url)
    metadata.create_all(engine)
    engine.dispose()
    return table


def test_postgres_naive_timestamps_compare_with_the_database_local_time(postgres_url: str) -> None:
    name = database_url(DatabaseSettings(database=postgres_url)).database
    engine = engine_for(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tokyo'"))
    engine.dispose()
    table = _timestamps_table(postgres_url, sa.DateTime())
    engine = engine_for(postgres_url)  # new sessions take the database's time zone
    with engine.begin() as conn:
        stamp = sa.func.localtimestamp() - sa.text("interval '1 second'")
        conn.execute(table.insert().values(id=1, updated_at=stamp))
    engine.dispose()
    records = read_everything(
        query_config(postgres_url, timestamp_column="updated_at", timestamp_delay="0s")
    )
    assert ids(records) == [1]


def test_postgres_timestamptz_offsets_are_utc(postgres_url: str) -> None:
    table = _timestamps_table(postgres_url, sa.DateTime(timezone=True))
    tokyo = dt.timezone(dt.timedelta(hours=9))
    engine = engine_for(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            table.insert(), [{"id": 1, "updated_at": dt.datetime(2024, 5, 1, 21, 0, tzinfo=tokyo)}]
        )
    engine.dispose()
    (record,) = read_everything(
        query_config(postgres_url, timestamp_column="updated_at", timestamp_delay="0s")
    )
    assert record.offset["timestamp"] == "2024-05-01T12:00:00.000000+00:00"
    assert record.value is not None
    assert record.value["updated_at"] == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def mysql_server_at_utc_plus_3(mysql_url: str) -> Iterator[str]:
    """``mysql_url`` on a server whose default time zone is +03:00 for the test."""
    engine = engine_for(mysql_url)
    with engine.connect() as conn:
        previous = conn.execute(sa.text("SELECT @@global.time_zone")).scalar()
        conn.execute(sa.text("SET GLOBAL time_zone = '+03:00'"))
    engine.dispose()
    try:
        yield mysql_url
    finally:
        engine = engine_for(mysql_url)
        with engine.connect() as conn:
            conn.execute(sa.text("SET GLOBAL time_zone = :zone"), {"zone": previous})
        engine.dispose()


def test_mysql_datetime_compares_with_the_server_local_time(
    mysql_server_at_utc_plus_3: str,
) -> None:
    url = mysql_server_at_utc_plus_3
    table = _timestamps_table(url, TIMESTAMP)
    engine = engine_for(url)  # sessions start at the server's time zone, +03:00
    with engine.begin() as conn:
        conn.execute(table.insert().values(id=1, updated_at=sa.text("NOW(6) - INTERVAL 1 SECOND")))
    engine.dispose()
    records = read_everything(
        query_config(url, timestamp_column="updated_at", timestamp_delay="0s")
    )
    assert ids(records) == [1]


def test_mysql_timestamp_columns_are_read_as_utc_instants(mysql_server_at_utc_plus_3: str) -> None:
    url = mysql_server_at_utc_plus_3
    table = _timestamps_table(url, mysql.TIMESTAMP(fsp=6))
    engine = engine_for(url)
    with engine.begin() as conn:  # written at +03:00: 15:00 local is 12:00 UTC
        conn.execute(table.insert(), [{"id": 1, "updated_at": dt.datetime(2024, 5, 1, 15, 0)}])
        conn.execute(table.insert().values(id=2, updated_at=sa.text("NOW(6) - INTERVAL 1 SECOND")))
    engine.dispose()
    records = read_everything(
        query_config(url, timestamp_column="updated_at", timestamp_delay="0s")
    )
    assert ids(records) == [1, 2]
    assert records[0].offset["timestamp"] == "2024-05-01T12:00:00.000000+00:00"
    assert records[0].value is not None
    assert records[0].value["updated_at"] == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
