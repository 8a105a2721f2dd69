"""The run-file rules every table-reading source shares (``liberate.config.tables``,
``liberate.config.templates``, ``liberate.config.capture``): each source refuses the same
mistakes with the same message, at the key that is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from connectors.mysql.config import MySqlSourceConfig
from connectors.outbox import OutboxSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from connectors.query import QuerySourceConfig
from liberate.config.capture import CaptureSourceConfig

BASES: dict[type[BaseModel], dict[str, Any]] = {
    PostgresSourceConfig: {"connector": "postgres", "database": "postgresql://u@h/db"},
    MySqlSourceConfig: {"connector": "mysql", "database": "mysql://u@h/db"},
    QuerySourceConfig: {"connector": "query", "database": "sqlite:///shop.db"},
    OutboxSourceConfig: {"connector": "outbox", "database": "sqlite:///shop.db"},
}
TABLE_LISTS = (PostgresSourceConfig, MySqlSourceConfig, QuerySourceConfig)
CAPTURE = (PostgresSourceConfig, MySqlSourceConfig)


def _validate(model: type[BaseModel], **settings: Any) -> Any:
    return model.model_validate({"name": "shop", **BASES[model], **settings})


def _errors(model: type[BaseModel], **settings: Any) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        _validate(model, **settings)
    return [(tuple(e["loc"]), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize("model", TABLE_LISTS, ids=lambda m: m.__name__)
def test_a_table_listed_twice_is_refused_at_tables(model: type[BaseModel]) -> None:
    [(loc, message)] = _errors(model, tables=["orders", "orders"])
    assert loc == ("tables",)
    assert message.startswith("Value error, listed more than once: ")
    assert message.endswith("orders")  # postgres names it with its schema: public.orders


def test_postgres_counts_a_table_with_and_without_its_default_schema_as_one() -> None:
    assert _errors(PostgresSourceConfig, tables=["orders", "public.orders"]) == [
        (("tables",), "Value error, listed more than once: public.orders")
    ]


@pytest.mark.parametrize("model", list(BASES), ids=lambda m: m.__name__)
def test_a_misspelt_topic_variable_is_refused_at_topic(model: type[BaseModel]) -> None:
    tables = {} if model is OutboxSourceConfig else {"tables": ["orders"]}
    [(loc, message)] = _errors(model, topic="{source}.{tabel}", **tables)
    assert loc == ("topic",)
    assert message.startswith("Value error, unknown variable(s) {tabel}; use {")


@pytest.mark.parametrize(
    ("model", "settings"),
    [
        (PostgresSourceConfig, {"tables": [" .orders"]}),
        (QuerySourceConfig, {"tables": [" .orders"]}),
        (OutboxSourceConfig, {"table": " .orders"}),
    ],
    ids=["postgres", "query", "outbox"],
)
def test_a_table_without_a_schema_before_its_dot_is_refused(
    model: type[BaseModel], settings: dict[str, Any]
) -> None:
    [(loc, message)] = _errors(model, **settings)
    assert loc == (next(iter(settings)),)
    assert message == "Value error, ' .orders' is not a table name ('table' or 'schema.table')"


@pytest.mark.parametrize("model", (PostgresSourceConfig, QuerySourceConfig),
                         ids=lambda m: m.__name__)
def test_key_columns_of_an_unlisted_table_or_without_columns_are_refused(
    model: type[BaseModel],
) -> None:
    [(_, message)] = _errors(model, tables=["orders"], key_columns={"order": []})
    assert "key_columns names tables not listed in tables: ['order']" in message
    assert "key_columns needs at least one column" in message


@pytest.mark.parametrize("model", CAPTURE, ids=lambda m: m.__name__)
def test_heartbeats_go_to_the_sources_topic_unless_named_or_turned_off(
    model: type[CaptureSourceConfig],
) -> None:
    assert _validate(model, tables=["orders"]).heartbeat_topic_name == (
        "__liberate-heartbeat.shop"
    )
    assert _validate(model, tables=["orders"], heartbeat_topic="beats").heartbeat_topic_name == (
        "beats"
    )
    assert _validate(model, tables=["orders"], heartbeat_topic="").heartbeat_topic_name is None


@pytest.mark.parametrize("model", CAPTURE, ids=lambda m: m.__name__)
def test_capture_sources_follow_deletes_with_tombstones_and_snapshot_in_chunks_of_10000(
    model: type[CaptureSourceConfig],
) -> None:
    config = _validate(model, tables=["orders"])
    assert config.tombstones_on_delete is True
    assert config.snapshot_chunk_size == 10_000
    [(loc, _)] = _errors(model, tables=["orders"], snapshot_chunk_size=0)
    assert loc == ("snapshot_chunk_size",)
