"""Custom queries: typed by the database, wrapped as a subquery, on every database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from connectors.query import QuerySource
from connectors.query._targets import describe_query
from liberate.errors import UnsupportedTypeError
from liberate.schema.avro import encode
from tests.integration._query_support import (
    BASE_TIME,
    create_orders,
    engine_for,
    ids,
    insert,
    order,
    query_config,
    read_everything,
)


def _shop(url: str) -> None:
    metadata = sa.MetaData()
    customers = sa.Table(
        "customers",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40), nullable=False),
    )
    orders = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("total", sa.Numeric(10, 2), nullable=False),
    )
    engine = engine_for(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(customers.insert(), [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}])
        conn.execute(
            orders.insert(),
            [
                {"id": 10, "customer_id": 1, "total": Decimal("12.50")},
                {"id": 11, "customer_id": 2, "total": Decimal("3.25")},
                {"id": 12, "customer_id": 1, "total": Decimal("7.00")},
            ],
        )
    engine.dispose()


@pytest.mark.parametrize("db", ["postgresql", "mysql"])
def test_a_join_with_computed_columns_is_typed_by_the_database(
    db: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url" if db == "postgresql" else "mysql_url")
    _shop(url)
    query = (
        "SELECT o.id AS order_id, c.name AS customer, o.total, o.total * 2 AS doubled, "
        "CAST(o.id AS CHAR(10)) AS code "
        "FROM orders o JOIN customers c ON c.id = o.customer_id"
    )
    config = query_config(
        url, query=query, key_columns=["order_id"], incrementing_column="order_id", batch_size=2
    )
    records = read_everything(config)
    assert [r.key for r in records] == [{"order_id": 10}, {"order_id": 11}, {"order_id": 12}]
    first = records[0]
    assert first.topic == "shop"
    assert first.partition == {"query": "shop"}
    assert first.value is not None
    assert first.value["customer"] == "ada"
    assert first.value["total"] == Decimal("12.50")
    # PostgreSQL types o.total * 2 as unconstrained NUMERIC: exact decimal text (types.md).
    assert str(first.value["doubled"]) == "25.00"
    assert first.value["code"].strip() == "10"  # PostgreSQL pads CHAR(n)
    assert first.value_schema is not None
    fields = {f["name"]: f["type"] for f in first.value_schema.schema["fields"]}
    assert fields["total"] == [
        "null",
        {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
    ]
    for record in records:
        assert record.value_schema is not None
        encode(1, record.value_schema, record.value)


def test_colons_and_percent_signs_in_a_custom_query_stay_literal(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(1), order(2, label="other")])
    query = "SELECT id, label FROM orders WHERE label LIKE 'order-%' AND label <> 'a:b %s'"
    records = read_everything(query_config(any_db_url, query=query, key_columns=["id"]))
    assert ids(records) == [1]


def test_a_custom_query_reads_in_timestamp_mode(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(i) for i in (3, 1, 2)])
    config = query_config(
        any_db_url,
        query="SELECT id, updated_at FROM orders WHERE id <> 2",
        key_columns=["id"],
        timestamp_column="updated_at",
        timestamp_delay="0s",
        batch_size=1,
    )
    records = read_everything(config)
    assert ids(records) == [1, 3]
    assert records[-1].offset == {
        "timestamp": (BASE_TIME + dt.timedelta(seconds=3)).isoformat(timespec="microseconds"),
        "key.id": 3,
    }


def test_describing_a_query_twice_on_one_connection_leaves_nothing_behind(any_db_url: str) -> None:
    create_orders(any_db_url)
    engine = engine_for(any_db_url)
    try:
        with engine.connect() as conn:
            first = describe_query(conn, "SELECT id, label FROM orders")
            second = describe_query(conn, "SELECT label FROM orders")
            assert [c.name for c in first.columns] == ["id", "label"]
            assert [c.name for c in second.columns] == ["label"]
    finally:
        engine.dispose()


def test_sqlite_computed_columns_are_refused_with_a_hint(sqlite_url: str) -> None:
    create_orders(sqlite_url)
    config = query_config(
        sqlite_url, query="SELECT id, id * 2 AS doubled FROM orders", key_columns=["id"]
    )
    with pytest.raises(UnsupportedTypeError, match="doubled") as caught:
        QuerySource(config).open({})
    assert caught.value.hint is not None and "SQLite" in caught.value.hint
