"""Prerequisites, check() and topic naming of the query source on every database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from connectors.query import QuerySource
from liberate.errors import PrerequisiteError, RetriableError, UnsupportedTypeError
from tests.conformance.source import drain, offsets_after
from tests.integration._query_support import (
    create_orders,
    engine_for,
    ids,
    insert,
    order,
    query_config,
    read_everything,
)
from tests.servers import Server

# SQLite gives a column declared without a type no type at all.
_UNMAPPED_TYPE = {"postgresql": "POINT", "mysql": "GEOMETRY", "sqlite": ""}


def test_a_missing_table_is_a_prerequisite_error_naming_it(any_db_url: str) -> None:
    create_orders(any_db_url)
    source = QuerySource(query_config(any_db_url, tables=["orders", "nope"]))
    with pytest.raises(PrerequisiteError, match=r"table nope not found in ") as caught:
        source.open({})
    assert caught.value.hint


def test_a_table_without_a_primary_key_needs_key_columns(any_db_url: str) -> None:
    engine = engine_for(any_db_url)
    sa.Table("log", sa.MetaData(), sa.Column("line", sa.String(20))).create(engine)
    engine.dispose()
    with pytest.raises(PrerequisiteError, match="has no primary key") as caught:
        QuerySource(query_config(any_db_url, tables=["log"])).open({})
    assert caught.value.hint is not None and "key_columns" in caught.value.hint


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"incrementing_column": "nope"}, "incrementing_column nope not found in orders"),
        ({"incrementing_column": "label"}, "incrementing_column label of orders has type"),
        ({"timestamp_column": "label"}, "timestamp_column label of orders has type"),
        ({"timestamp_column": ["updated_at", "nope"]}, "timestamp_column nope not found"),
        ({"key_columns": ["nope"]}, "key column"),
    ],
)
def test_offset_and_key_columns_must_exist_with_a_fitting_type(
    any_db_url: str, settings: dict[str, object], message: str
) -> None:
    create_orders(any_db_url)
    with pytest.raises(PrerequisiteError, match=message):
        QuerySource(query_config(any_db_url, **settings)).open({})


@pytest.mark.filterwarnings("ignore:Did not recognize type")
def test_a_column_type_without_avro_mapping_is_named(any_db_url: str) -> None:
    engine = engine_for(any_db_url)
    type_name = _UNMAPPED_TYPE[engine.dialect.name]
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE odd (id INTEGER PRIMARY KEY, shape {type_name})"))
    engine.dispose()
    with pytest.raises(UnsupportedTypeError, match=r"odd\.shape"):
        QuerySource(query_config(any_db_url, tables=["odd"])).open({})


def test_check_reports_each_table_with_what_to_fix(any_db_url: str) -> None:
    table = create_orders(any_db_url, nullable_ts=True)
    insert(any_db_url, table, [order(1)])
    config = query_config(any_db_url, tables=["orders", "nope"], timestamp_column="updated_at")
    results = {r.name: r for r in QuerySource(config).check()}
    assert results["database"].ok
    assert results["orders"].ok and "key (id)" in results["orders"].message
    nulls = results["orders: NULL in ordering columns"]
    assert nulls.ok and nulls.message.startswith("warning: updated_at may hold NULL")
    assert not results["nope"].ok and results["nope"].hint


def test_check_fails_when_rows_would_be_skipped_for_null_timestamps(any_db_url: str) -> None:
    table = create_orders(any_db_url, nullable_ts=True)
    insert(any_db_url, table, [order(1), {**order(2), "updated_at": None}])
    config = query_config(any_db_url, timestamp_column="updated_at")
    results = {r.name: r for r in QuerySource(config).check()}
    nulls = results["orders: NULL in ordering columns"]
    assert not nulls.ok
    assert nulls.message == "1 row(s) have NULL in updated_at; they are not read"


def test_check_writes_nothing(any_db_url: str) -> None:
    create_orders(any_db_url)
    engine = engine_for(any_db_url)
    before = sorted(sa.inspect(engine).get_table_names())
    engine.dispose()
    config = query_config(any_db_url, query="SELECT id, label FROM orders", key_columns=["id"])
    assert all(r.ok for r in QuerySource(config).check())
    engine = engine_for(any_db_url)
    assert sorted(sa.inspect(engine).get_table_names()) == before
    assert "liberate_query_shape" not in sa.inspect(engine).get_view_names()
    engine.dispose()


def test_topic_template_takes_the_default_schema(any_db_url: str) -> None:
    table = create_orders(any_db_url)
    insert(any_db_url, table, [order(1)])
    engine = engine_for(any_db_url)
    with engine.connect() as conn:
        default_schema = sa.inspect(conn).default_schema_name
    engine.dispose()
    (record,) = read_everything(query_config(any_db_url, topic="{source}.{schema}.{table}"))
    assert record.topic == f"shop.{default_schema}.orders"


@pytest.mark.parametrize("db", ["postgresql", "sqlite"])
def test_schema_qualified_tables_keep_their_schema(db: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url" if db == "postgresql" else "sqlite_url")
    engine = engine_for(url)
    schema = "sales" if db == "postgresql" else "main"
    if db == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(schema))
    metadata = sa.MetaData(schema=schema)
    table = sa.Table("orders", metadata, sa.Column("id", sa.Integer, primary_key=True))
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1}])
    engine.dispose()
    config = query_config(
        url,
        tables=[f"{schema}.orders"],
        topic="{source}.{schema}.{table}",
        envelope="debezium",
    )
    (record,) = read_everything(config)
    assert record.topic == f"shop.{schema}.orders"
    assert record.partition == {"table": f"{schema}.orders"}
    assert record.value is not None and record.value["source"]["schema"] == schema


def test_a_restarted_server_is_reconnected_without_losing_rows(
    postgres_server: Server, postgres_url: str
) -> None:
    table = create_orders(postgres_url)
    insert(postgres_url, table, [order(1)])
    source = QuerySource(query_config(postgres_url, incrementing_column="id"))
    source.open({})
    try:
        assert ids(drain(source)) == [1]
        postgres_server.restart()
        insert(postgres_url, table, [order(2)])
        assert ids(drain(source)) == [2]
    finally:
        source.close()


def test_a_server_gone_during_a_run_is_retriable_and_a_reopen_resumes(
    postgres_server: Server, postgres_url: str
) -> None:
    table = create_orders(postgres_url)
    insert(postgres_url, table, [order(1)])
    source = QuerySource(query_config(postgres_url, incrementing_column="id"))
    source.open({})
    try:
        first = drain(source)
        engine = engine_for(postgres_url)  # the test server commits asynchronously: flush first
        with engine.connect() as conn:
            conn.execute(sa.text("CHECKPOINT"))
        engine.dispose()
        postgres_server.kill()
        try:
            with pytest.raises(RetriableError):
                source.poll()
            source.close()
            with pytest.raises(RetriableError):  # re-opened by the runtime's retry
                source.open(offsets_after(first))
        finally:
            postgres_server.start()
        insert(postgres_url, table, [order(2)])
        source.open(offsets_after(first))
        assert ids(drain(source)) == [2]
    finally:
        source.close()
