"""The query source's config model: defaults, inferred modes and every impossible combination."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import entry_points
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.query import QueryMode, QuerySource, QuerySourceConfig


def config(**settings: Any) -> QuerySourceConfig:
    values: dict[str, Any] = {
        "name": "shop",
        "connector": "query",
        "database": "sqlite:///shop.db",
        "tables": ["orders"],
    }
    values.update(settings)
    return QuerySourceConfig.model_validate(values)


def problems(**settings: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        config(**settings)
    return str(caught.value)


def test_defaults_read_whole_tables_in_entity_shape_every_five_seconds() -> None:
    cfg = config()
    assert cfg.mode == QueryMode.BULK
    assert cfg.envelope == "entity"
    assert cfg.batch_size == 10_000
    assert cfg.timestamp_delay == dt.timedelta(seconds=5)
    assert cfg.schedule.interval == dt.timedelta(seconds=5)
    assert cfg.topic_for("main", "orders") == "shop.orders"


@pytest.mark.parametrize(
    ("settings", "mode"),
    [
        ({"incrementing_column": "id"}, QueryMode.INCREMENTING),
        ({"timestamp_column": "updated_at"}, QueryMode.TIMESTAMP),
        (
            {"timestamp_column": "updated_at", "incrementing_column": "id"},
            QueryMode.TIMESTAMP_INCREMENTING,
        ),
    ],
)
def test_an_omitted_mode_follows_the_offset_columns_given(
    settings: dict[str, Any], mode: QueryMode
) -> None:
    assert config(**settings).mode == mode


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "incrementing"}, "mode incrementing needs incrementing_column"),
        ({"mode": "timestamp"}, "mode timestamp needs timestamp_column"),
        (
            {"mode": "timestamp+incrementing", "timestamp_column": "t"},
            "needs incrementing_column",
        ),
        ({"mode": "bulk", "incrementing_column": "id"}, "incrementing_column is not used"),
        (
            {"mode": "incrementing", "incrementing_column": "id", "timestamp_delay": "1s"},
            "timestamp_delay is not used",
        ),
        ({"tables": []}, "give either tables"),
        ({"query": "SELECT 1 AS x", "key_columns": ["x"]}, "exclusive"),
        ({"tables": [], "query": "SELECT 1 AS x"}, "needs key_columns"),
        ({"key_columns": {"returns": ["id"]}}, "not listed in tables"),
        ({"key_columns": []}, "at least one column"),
        ({"tables": ["orders", "orders"]}, "listed more than once"),
        ({"tables": ["a.orders", "b.orders"]}, "add {schema} to the topic template"),
        ({"topic": "{source}.{tabel}"}, "unknown variable(s) {tabel}"),
        (
            {"tables": [], "query": "SELECT 1 AS x", "key_columns": ["x"], "topic": "{table}"},
            "only use {source}",
        ),
        ({"timestamp_column": "t", "timestamp_delay": "-1s"}, "timestamp_delay"),
        ({"schedule": "often"}, "neither an interval"),
        ({"batch_size": 0}, "batch_size"),
        ({"surprise": 1}, "surprise"),
        ({"tables": ["."]}, "not a table name"),
    ],
)
def test_impossible_combinations_are_refused_with_the_fix(
    settings: dict[str, Any], message: str
) -> None:
    assert message in problems(**settings)


def test_a_custom_query_loses_its_trailing_semicolon_and_defaults_its_topic_to_the_source() -> None:
    cfg = config(tables=[], query="SELECT id FROM orders;  ", key_columns=["id"])
    assert cfg.query == "SELECT id FROM orders"
    assert cfg.topic_for("", "") == "shop"


def test_key_columns_may_differ_per_table() -> None:
    cfg = config(tables=["orders", "events"], key_columns={"events": ["region", "seq"]})
    assert cfg.key_columns_for("events") == ["region", "seq"]
    assert cfg.key_columns_for("orders") is None


def test_timestamp_columns_accept_one_name_or_a_coalesce_list() -> None:
    assert config(timestamp_column="updated_at").timestamp_columns == ("updated_at",)
    both = config(timestamp_column=["updated_at", "created_at"])
    assert both.timestamp_columns == ("updated_at", "created_at")


def test_schedules_take_intervals_and_cron_expressions() -> None:
    assert config(schedule="500ms").schedule.interval == dt.timedelta(milliseconds=500)
    assert config(schedule="*/5 * * * *").schedule.cron is not None
    assert "cron" in problems(schedule="61 * * * *")


def test_every_field_is_described_in_the_json_schema() -> None:
    schema = QuerySourceConfig.model_json_schema()
    undocumented = [n for n, p in schema["properties"].items() if not p.get("description")]
    assert undocumented == []
    assert schema["additionalProperties"] is False


def test_the_config_dumps_to_what_validates_again() -> None:
    cfg = config(timestamp_column="updated_at", timestamp_delay="2s", schedule="1m")
    dumped = cfg.model_dump(mode="json")
    dumped["database"] = "sqlite:///shop.db"  # SecretStr dumps masked
    assert QuerySourceConfig.model_validate(dumped) == cfg


def test_the_entry_point_names_the_query_source() -> None:
    (entry,) = [e for e in entry_points(group="liberate.sources") if e.name == "query"]
    assert entry.load() is QuerySource
    assert QuerySource.config_model is QuerySourceConfig
