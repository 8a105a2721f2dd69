"""The relay's run-file entry: Debezium's defaults, and every bad combination refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.outbox import AdditionalField, OutboxSourceConfig


def _config(**settings: Any) -> OutboxSourceConfig:
    return OutboxSourceConfig.model_validate(
        {"name": "relay", "connector": "outbox", "database": "sqlite:///app.db", **settings}
    )


def test_defaults_follow_debeziums_outbox_event_router() -> None:
    config = _config()
    assert config.topic == "outbox.event.{aggregate_type}"
    assert config.table == "outbox" and config.mode == "polling"
    columns = config.columns
    assert (columns.id, columns.aggregate_type, columns.aggregate_id, columns.type,
            columns.payload) == ("id", "aggregatetype", "aggregateid", "type", "payload")
    assert config.placements == (AdditionalField("type", "header", "eventType"),)
    assert config.retention == dt.timedelta(0)
    assert config.invalid_op_behavior == "warn"


def test_the_default_event_type_header_follows_a_renamed_type_column() -> None:
    config = _config(columns={"type": "event_type"})
    assert config.placements == (AdditionalField("event_type", "header", "eventType"),)


def test_additional_fields_parse_debeziums_format() -> None:
    config = _config(additional_fields=["type:envelope", "created_at:header:ts"])
    assert config.placements == (
        AdditionalField("type", "envelope", "type"),
        AdditionalField("created_at", "header", "ts"),
    )
    assert _config(additional_fields=[]).placements == ()


def test_schema_qualified_tables_split() -> None:
    assert _config(table="app.events").table_name == ("app", "events")
    assert _config().table_name == (None, "outbox")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"topic": "outbox.{table}"}, "unknown variable"),
        ({"topic": "outbox.{"}, "not a valid template"),
        ({"additional_fields": ["type"]}, "column:header|envelope"),
        ({"additional_fields": ["type:body"]}, "header or envelope"),
        ({"additional_fields": ["type:header:id"]}, "event id"),
        ({"additional_fields": ["type:envelope:payload"]}, "payload"),
        ({"additional_fields": ["type:header:x", "id:header:x"]}, "placed twice"),
        ({"retention": "1h", "columns": {"relayed_at": None}}, "relayed_at"),
        ({"columns": {"payload": "id"}}, "two roles"),
        ({"mode": "log"}, "mode"),
        ({"value_format": "avro"}, "value_format"),
        ({"table": ".outbox"}, "table name"),
        ({"batch_size": 0}, "batch_size"),
        ({"retention": "soon"}, "duration"),
        ({"invalid_op_behavior": "explode"}, "invalid_op_behavior"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(**settings)
