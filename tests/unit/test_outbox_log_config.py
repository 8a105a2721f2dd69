"""``mode: log``: the ``log:`` block is validated by the postgres / mysql connector's own
model, and settings that only polling uses are refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.mysql import MySqlSourceConfig
from connectors.outbox import OutboxSourceConfig
from connectors.postgres.config import PostgresSourceConfig, SnapshotMode
from liberate.config.loader import load_run_file

PG = "postgresql://app@db/shop"
MY = "mysql://app@db/shop"


def _config(database: str, **settings: Any) -> OutboxSourceConfig:
    return OutboxSourceConfig.model_validate(
        {"name": "shop-outbox", "connector": "outbox", "database": database, "mode": "log",
         **settings}
    )


def test_on_postgresql_the_relay_is_a_postgres_source_of_the_outbox_table() -> None:
    config = _config(PG, table="app.outbox", log={"slot": "shop_outbox", "max_batch": 50})
    cdc = config.cdc_config()
    assert isinstance(cdc, PostgresSourceConfig)
    assert cdc.name == "shop-outbox" and cdc.tables == ["app.outbox"]
    assert cdc.slot_name == "shop_outbox" and cdc.publication_name == "liberate_shop_outbox"
    assert cdc.snapshot_mode is SnapshotMode.NEVER and cdc.max_batch == 50
    assert cdc.messages and cdc.message_prefixes == ["outbox"]
    assert not cdc.tombstones_on_delete
    assert config.schedule is None  # the log is waited on, not polled


def test_on_mysql_the_relay_is_a_mysql_source_of_the_outbox_table() -> None:
    config = _config(MY, log={"server_id": 4242, "snapshot_mode": "initial",
                              "heartbeat_interval": "5s"})
    cdc = config.cdc_config()
    assert isinstance(cdc, MySqlSourceConfig)
    assert cdc.tables == ["outbox"] and cdc.replica_server_id == 4242
    assert cdc.snapshot_mode == "initial"
    assert cdc.heartbeat_interval == dt.timedelta(seconds=5)


def test_message_prefix_null_relays_table_inserts_only() -> None:
    cdc = _config(PG, message_prefix=None).cdc_config()
    assert isinstance(cdc, PostgresSourceConfig) and not cdc.messages


def test_polling_keeps_its_one_second_schedule() -> None:
    config = OutboxSourceConfig.model_validate(
        {"name": "r", "connector": "outbox", "database": "sqlite:///x.db"})
    assert config.schedule is not None and config.schedule.text == "1s"


@pytest.mark.parametrize(
    ("database", "settings", "message"),
    [
        ("sqlite:///x.db", {}, "mode: log needs a PostgreSQL or MySQL"),
        (PG, {"log": {"server_id": 7}}, "server_id only apply to MySQL"),
        (MY, {"log": {"slot": "s"}}, "slot only apply to PostgreSQL"),
        (PG, {"log": {"slot": "Bad-Slot"}}, r"log\.slot: .*lower-case"),
        (MY, {"log": {"heartbeat_interval": "0s"}}, "heartbeat_interval must be positive"),
        (PG, {"log": {"snapshot_mode": "sometimes"}}, "snapshot_mode"),
        (PG, {"log": {"unknown": 1}}, "unknown"),
        (PG, {"retention": "1h"}, "retention is only used with mode: polling"),
        (PG, {"schedule": "5s"}, "schedule is only used with mode: polling"),
        (PG, {"batch_size": 10}, "batch_size is only used with mode: polling"),
    ],
)
def test_bad_log_settings_are_refused_with_the_reason(
    database: str, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(database, **settings)


@pytest.mark.parametrize("key", [{"log": {"slot": "s"}}, {"message_prefix": "events"}])
def test_log_settings_are_refused_in_polling_mode(key: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="only used with mode: log"):
        _config(PG, mode="polling", **key)


def test_the_shipped_log_mode_example_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # its schema file is named relative to the repository
    monkeypatch.delenv("SHOP_DATABASE", raising=False)
    (source,) = load_run_file(str(root / "config" / "outbox_log.yaml")).sources
    assert isinstance(source, OutboxSourceConfig) and source.mode == "log"
    assert sorted(source.value_schemas()) == ["OrderPaid", "OrderPlaced"]
    assert source.value_schemas()["OrderPlaced"].name == "com.shop.events.OrderPlaced"
