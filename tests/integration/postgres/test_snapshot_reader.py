"""The shared chunked snapshot reader (connectors._snapshot) on PostgreSQL and SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors._snapshot import chunk_query, iter_chunks, key_positions, last_key
from tests.integration.postgres.conftest import Database


def composite(engine: sa.Engine) -> sa.Table:
    metadata = sa.MetaData()
    table = sa.Table(
        "pairs", metadata,
        sa.Column("a", sa.Integer, primary_key=True),
        sa.Column("b", sa.String(10), primary_key=True),
        sa.Column("v", sa.Integer),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"a": i // 4, "b": f"k{i % 4}", "v": i} for i in range(50)])
    return table


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    if request.param == "sqlite":
        return sa.create_engine(f"sqlite:///{tmp_path / 'pairs.db'}")
    db: Database = request.getfixturevalue("db")
    return sa.create_engine(db.url.replace("postgresql://", "postgresql+psycopg://"))


def test_chunks_cover_every_row_once_in_key_order(engine: sa.Engine) -> None:
    table = composite(engine)
    with engine.connect() as conn:
        chunks = list(iter_chunks(conn, table, ["a", "b"], chunk_size=7))
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    assert [row.v for chunk in chunks for row in chunk] == list(range(50))


def test_resuming_after_a_key_continues_right_after_it(engine: sa.Engine) -> None:
    table = composite(engine)
    positions = key_positions(table, ["a", "b"])
    with engine.connect() as conn:
        first = next(iter_chunks(conn, table, ["a", "b"], chunk_size=10))
        resume = last_key(first, positions)
        assert resume == (2, "k1")
        rest = [row.v for c in iter_chunks(conn, table, ["a", "b"], after_key=resume,
                                           chunk_size=10) for row in c]
    assert rest == list(range(10, 50))


def test_a_table_that_fills_whole_chunks_ends_with_one_empty_read(engine: sa.Engine) -> None:
    table = composite(engine)
    with engine.connect() as conn:
        assert [len(c) for c in iter_chunks(conn, table, ["a", "b"], chunk_size=25)] == [25, 25]


def test_selected_columns_and_their_key_positions(engine: sa.Engine) -> None:
    table = composite(engine)
    with engine.connect() as conn:
        chunk = next(iter_chunks(conn, table, ["a", "b"], chunk_size=3, columns=["v", "b", "a"]))
    assert [tuple(r) for r in chunk] == [(0, "k0", 0), (1, "k1", 0), (2, "k2", 0)]
    assert key_positions(table, ["a", "b"], ["v", "b", "a"]) == (2, 1)


def test_mysql_gets_the_expanded_comparison_with_a_leading_range() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("a", sa.Integer), sa.Column("b", sa.Integer))
    query = chunk_query(table, ["a", "b"], after_key=(1, 2), limit=5, dialect="mysql")
    text = str(query.compile(dialect=mysql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "t.a >= 1 AND (t.a > 1 OR t.a = 1 AND t.b > 2)" in text
    assert "ORDER BY t.a, t.b" in text and "LIMIT 5" in text


def test_bad_arguments_are_refused() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("a", sa.Integer))
    with pytest.raises(ValueError):
        chunk_query(table, [], after_key=None, limit=1)
    with pytest.raises(ValueError):
        chunk_query(table, ["a"], after_key=(1, 2), limit=1)
