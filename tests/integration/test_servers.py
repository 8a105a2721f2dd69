"""The throwaway servers come up ready for CDC, and every test gets a database of its own."""

from __future__ import annotations

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.servers import Server


def _pg_setting(url: str, name: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def _mysql_query(url: str, query: str) -> tuple[object, ...]:
    parsed = make_url(url)
    conn = pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database or None,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    return tuple(row)


def test_postgres_has_logical_wal_and_replication_slots(postgres_url: str) -> None:
    assert _pg_setting(postgres_url, "wal_level") == "logical"
    assert int(_pg_setting(postgres_url, "max_replication_slots")) >= 10
    assert int(_pg_setting(postgres_url, "max_wal_senders")) >= 10


def test_postgres_user_may_create_a_logical_slot(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('t_slot', 'pgoutput')")
        row = conn.execute(
            "SELECT plugin FROM pg_replication_slots WHERE slot_name = 't_slot'"
        ).fetchone()
    assert row == ("pgoutput",)  # the fixture drops the slot with the database


def test_mariadb_writes_a_full_row_binlog(mysql_url: str) -> None:
    row = _mysql_query(
        mysql_url,
        "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@binlog_row_metadata, @@server_id",
    )
    assert row == (1, "ROW", "FULL", "FULL", 1)


def test_database_urls_use_plain_schemes(postgres_url: str, mysql_url: str) -> None:
    assert make_url(postgres_url).drivername == "postgresql"
    assert make_url(mysql_url).drivername == "mysql"


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_an_empty_database(round_: int, any_db_url: str) -> None:
    # Both rounds create the same table: the second would fail if the database were shared.
    url = make_url(any_db_url)
    url = url.set(
        drivername={"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}.get(
            url.drivername, url.drivername
        )
    )
    engine = sa.create_engine(url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE isolation_probe (id INTEGER PRIMARY KEY)"))
            conn.execute(sa.text("INSERT INTO isolation_probe VALUES (:n)"), {"n": round_})
    finally:
        engine.dispose()


def test_per_test_database_is_dropped_afterwards(postgres_server: Server) -> None:
    from tests.servers import create_postgres_database, drop_postgres_database

    create_postgres_database(postgres_server, "lt_dropcheck")
    drop_postgres_database(postgres_server, "lt_dropcheck")
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = 'lt_dropcheck'"
        ).fetchone()
    assert row == (0,)


def test_postgres_server_survives_fast_restart_and_kill(postgres_server: Server) -> None:
    postgres_server.restart()
    assert _pg_setting(postgres_server.url, "wal_level") == "logical"
    postgres_server.kill()
    postgres_server.start()
    assert _pg_setting(postgres_server.url, "wal_level") == "logical"


def test_mariadb_server_survives_kill(mysql_server: Server) -> None:
    mysql_server.kill()
    mysql_server.start()
    assert _mysql_query(mysql_server.url, "SELECT @@binlog_format") == ("ROW",)
