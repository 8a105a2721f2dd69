"""The SQL sink's config model: defaults, validation, and the table-name template."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sinks.sql.config import SqlSinkConfig, table_name_for


def validate(**overrides: Any) -> SqlSinkConfig:
    raw: dict[str, Any] = {"name": "wh", "connector": "sql", "database": "sqlite:///w.db",
                           "topics": ["shop.orders"]}
    raw.update(overrides)
    return SqlSinkConfig.model_validate(raw)


def test_defaults_upsert_into_tables_created_and_evolved_from_the_records() -> None:
    config = validate()
    assert config.mode == "upsert"
    assert config.table == "{table}"
    assert config.target_schema is None
    assert (config.auto_create, config.auto_evolve, config.delete_enabled) == (True, True, True)
    assert config.offsets_table == "liberate_sink_offsets"
    assert config.batch_size > 0


def test_schema_key_sets_the_target_schema() -> None:
    assert validate(schema="warehouse").target_schema == "warehouse"


@pytest.mark.parametrize(
    "overrides",
    [
        {"topics": []},
        {"topics": ["a"], "topics_regex": "a.*"},
        {"topics": [], "topics_regex": "("},
        {"mode": "merge"},
        {"table": "{tabel}"},
        {"table": "{table!r}"},
        {"table": "{table"},
        {"batch_size": 0},
        {"unknown_key": 1},
        {"connector": "jdbc"},
        {"database": "not a url"},
        {"mode": "merge"},
        {"pk_mode": "record_value"},  # needs pk_fields
        {"pk_fields": ["id"]},  # only with record_value
        {"pk_mode": "none", "mode": "upsert"},  # append-only has no key to upsert by
        {"fields_include": ["a"], "fields_exclude": ["a"]},
        {"errors": {"tolerance": "some"}},
        {"errors": {"deadletterqueue.topic.name": "shop.orders"}},  # a consumed topic
        {"topics": [], "topics_regex": "wh.*", "name": "wh"},  # wh.dlq matches the regex
        {"evolution": {"unsafe": "warn"}},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validate(**overrides)


def test_topics_regex_alone_is_enough() -> None:
    assert validate(topics=[], topics_regex=r"shop\..*").topics_regex == r"shop\..*"


def test_every_field_is_described_for_the_json_schema() -> None:
    properties = SqlSinkConfig.model_json_schema(by_alias=True)["properties"]
    assert "schema" in properties
    assert [name for name, spec in properties.items() if not spec.get("description")] == []


@pytest.mark.parametrize(
    ("template", "topic", "table"),
    [
        ("{table}", "shop.public.orders", "orders"),
        ("{table}", "shop.orders", "orders"),
        ("{table}", "orders", "orders"),
        ("{topic}", "shop.public.orders", "shop.public.orders"),
        ("{schema}_{table}", "shop.public.orders", "public_orders"),
        ("{schema}_{table}", "shop.orders", "_orders"),
        ("{source}__{table}", "shop.public.orders", "shop__orders"),
        ("{source}x", "orders", "x"),
        ("outbox_{table}", "outbox.event.order", "outbox_order"),
    ],
)
def test_table_template_placeholders_come_from_the_topic_segments(
    template: str, topic: str, table: str
) -> None:
    assert table_name_for(template, topic) == table


def test_append_only_defaults_to_insert_mode() -> None:
    assert validate(pk_mode="none").mode == "insert"


def test_dead_letter_topic_defaults_to_the_sink_name() -> None:
    assert validate().dead_letter_topic == "wh.dlq"
    assert validate(errors={"deadletterqueue.topic.name": "x.errors"}).dead_letter_topic == \
        "x.errors"


def test_new_settings_default_to_the_safe_choice() -> None:
    config = validate()
    assert (config.pk_mode, config.truncate_enabled, config.evolution.unsafe,
            config.errors.tolerance) == ("record_key", False, "fail", "none")
