"""Table and column names with quotes (double, single, backtick), spaces, semicolons, upper
case and SQL keywords round-trip: the query source (incrementing mode, so a name is also in
the WHERE and ORDER BY) and the SQL sink on SQLite, PostgreSQL and MariaDB, and the
PostgreSQL and MySQL CDC sources (publication or binlog, snapshot and stream) into a sink on
the same server. The target table carries the same awkward name; the rows read back through
SQLAlchemy's quoting must equal the source's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberate.config.base import DatabaseSettings
from liberate.database import create_engine
from tests.integration._security_support import liberate
from tests.servers import (
    Server,
    create_mysql_database,
    create_postgres_database,
    drop_mysql_database,
    drop_postgres_database,
    new_database_name,
)

TABLE = "Select \"Order\"; x'y"
KEY = "Key Col"
COLUMNS = (KEY, "from", "it's \"q\"; --x", "UPPER", "tick`col")
TOPIC = "weird.orders"


def _yaml(text: str) -> str:
    """A YAML single-quoted scalar of ``text``."""
    return "'" + text.replace("'", "''") + "'"


def _engine(url: str) -> sa.Engine:
    from pydantic import SecretStr

    return create_engine(DatabaseSettings(database=SecretStr(url)))


def _table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        TABLE,
        metadata,
        sa.Column(KEY, sa.Integer, primary_key=True, autoincrement=False),
        sa.Column(COLUMNS[1], sa.String(50), nullable=False),
        sa.Column(COLUMNS[2], sa.String(50)),
        sa.Column(COLUMNS[3], sa.Integer),
        sa.Column(COLUMNS[4], sa.String(50)),
    )


def _row(i: int) -> dict[str, Any]:
    return {KEY: i, "from": f"a; DROP TABLE x -- {i}", COLUMNS[2]: f"'{i}\"", "UPPER": i * 10,
            "tick`col": f"`{i}`"}


def _create_source(url: str, rows: range) -> None:
    engine = _engine(url)
    try:
        table = _table(sa.MetaData())
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [_row(i) for i in rows])
    finally:
        engine.dispose()


def _write(url: str, statement: Any, rows: list[dict[str, Any]] | None = None) -> None:
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(statement, rows) if rows else conn.execute(statement)
    finally:
        engine.dispose()


def _rows(url: str) -> list[dict[str, Any]]:
    engine = _engine(url)
    try:
        table = sa.Table(TABLE, sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            result = conn.execute(sa.select(*(table.c[c] for c in COLUMNS)).order_by(table.c[KEY]))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def _run_once(tmp_path: Path, source: str, target: str) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: weird
{source}
sinks:
  - name: wh
    connector: sql
    database: {target}
    topics: [{TOPIC}]
    table: {_yaml(TABLE)}
""")
    result = liberate(tmp_path, "run", "--once", str(run_file))
    assert result.returncode == 0, result.stderr


def _query_source(url: str) -> str:
    return f"""\
    connector: query
    database: {url}
    tables: [{_yaml(TABLE)}]
    mode: incrementing
    incrementing_column: {_yaml(KEY)}
    topic: {TOPIC}"""


@pytest.fixture
def second_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A second database of the kind of the test's ``db`` parameter (the sink's target)."""
    kind = request.node.callspec.params["db"]
    if kind == "sqlite":
        yield f"sqlite:///{request.getfixturevalue('tmp_path') / 'target.db'}"
        return
    server: Server = request.getfixturevalue(
        "postgres_server" if kind == "postgresql" else "mysql_server"
    )
    name = new_database_name()
    if kind == "postgresql":
        url = create_postgres_database(server, name)
        yield url
        drop_postgres_database(server, name)
    else:
        url = create_mysql_database(server, name)
        yield url
        drop_mysql_database(server, name)


@pytest.mark.parametrize(
    "db",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql"),
        pytest.param("mysql", id="mariadb"),
    ],
)
def test_awkward_names_round_trip_through_the_query_source_and_the_sql_sink(
    db: str, request: pytest.FixtureRequest, second_database: str, tmp_path: Path
) -> None:
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mysql": "mysql_url"}[db]
    source_url: str = request.getfixturevalue(fixture)
    _create_source(source_url, range(1, 6))
    _run_once(tmp_path, _query_source(source_url), second_database)
    assert _rows(second_database) == [_row(i) for i in range(1, 6)]

    _write(source_url, _table(sa.MetaData()).insert(), [_row(i) for i in range(6, 9)])
    _run_once(tmp_path, _query_source(source_url), second_database)
    assert _rows(second_database) == [_row(i) for i in range(1, 9)]


@pytest.mark.parametrize("connector", ["postgres", "mysql"])
def test_awkward_names_round_trip_through_change_data_capture(
    connector: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Snapshot, then an insert, an update and a delete streamed into a sink of the same kind."""
    kind = "postgres" if connector == "postgres" else "mysql"
    server: Server = request.getfixturevalue(f"{kind}_server")
    source_url: str = request.getfixturevalue(f"{kind}_url")
    create, drop = (
        (create_postgres_database, drop_postgres_database)
        if kind == "postgres"
        else (create_mysql_database, drop_mysql_database)
    )
    target_name = new_database_name()
    target = create(server, target_name)
    qualified = ("public." if kind == "postgres" else "") + TABLE
    try:
        _create_source(source_url, range(1, 4))
        source = f"""\
    connector: {connector}
    database: {source_url}
    tables: [{_yaml(qualified)}]
    topic: {TOPIC}"""
        _run_once(tmp_path, source, target)
        assert _rows(target) == [_row(i) for i in range(1, 4)]

        table = _table(sa.MetaData())
        _write(source_url, table.insert(), [_row(i) for i in range(4, 6)])
        _write(source_url, table.update().where(table.c[KEY] == 2).values({"UPPER": -2}))
        _write(source_url, table.delete().where(table.c[KEY] == 3))
        _run_once(tmp_path, source, target)
        expected = [_row(i) for i in (1, 2, 4, 5)]
        expected[1]["UPPER"] = -2
        assert _rows(source_url) == expected
        assert _rows(target) == expected
    finally:
        drop(server, target_name)

