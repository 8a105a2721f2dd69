"""The ``log:`` block of a log-mode relay, and the CDC source config it becomes.

A log-mode relay *is* a PostgreSQL or MySQL change-data-capture source of one table (the
outbox), so its settings are that connector's: the block lists the ones a relay may set, and
``cdc_config`` validates them with the CDC connector's own model (``PostgresSourceConfig``,
``MySqlSourceConfig``), whose rules and messages apply unchanged. Fields left out keep the CDC
connector's defaults, except ``snapshot_mode``: ``never`` (Debezium's advice for outbox
tables: old rows were relayed before, or never should be).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.mysql.config import MySqlSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from liberate.config.base import StrictModel
from liberate.config.durations import Duration

Dialect = Literal["postgresql", "mysql"]
CdcConfig = PostgresSourceConfig | MySqlSourceConfig

#: settings only the postgres connector has, and only the mysql connector has
POSTGRES_ONLY = ("slot", "publication", "streaming", "max_batch")
MYSQL_ONLY = ("server_id", "position_mode", "batch_size")
#: the relay's default snapshot mode (the CDC connectors default to initial)
DEFAULT_SNAPSHOT_MODE = "never"


def _pg(name: str) -> Any:
    return Field(default=None, description=f"PostgreSQL: {_described(PostgresSourceConfig, name)}")


def _my(name: str) -> Any:
    return Field(default=None, description=f"MySQL/MariaDB: {_described(MySqlSourceConfig, name)}")


def _both(name: str) -> Any:
    return Field(default=None, description=_described(PostgresSourceConfig, name))


def _described(model: type[StrictModel], name: str) -> str:
    return model.model_fields[name].description or name


class LogSettings(StrictModel):
    """Settings of the CDC connector under a log-mode relay (validated by that connector's
    model; an unset field keeps its default there)."""

    slot: str | None = _pg("slot")
    publication: str | None = _pg("publication")
    streaming: bool | None = _pg("streaming")
    max_batch: int | None = _pg("max_batch")
    server_id: int | None = _my("server_id")
    position_mode: Literal["gtid", "file"] | None = _my("position_mode")
    batch_size: int | None = _my("batch_size")
    snapshot_mode: Literal["initial", "never", "when_needed", "initial_only"] | None = Field(
        default=None,
        description="never (the relay's default): relay only events committed after the "
        "relay first started | initial: relay the rows in the table first, then stream | "
        "when_needed, initial_only: as the CDC connectors",
    )
    snapshot_chunk_size: int | None = _both("snapshot_chunk_size")
    heartbeat_interval: Duration | None = _both("heartbeat_interval")
    heartbeat_topic: str | None = _both("heartbeat_topic")


def dialect_of(database: SecretStr) -> Dialect | None:
    """``postgresql`` or ``mysql`` (MariaDB too) for a database URL; None for any other."""
    try:
        backend = make_url(database.get_secret_value()).get_backend_name()
    except ArgumentError:
        return None
    if backend == "postgresql":
        return "postgresql"
    if backend in ("mysql", "mariadb"):
        return "mysql"
    return None


def cdc_config(
    log: LogSettings | None,
    *,
    name: str,
    database: SecretStr,
    password_file: Path | None,
    table: str,
    message_prefix: str | None,
) -> CdcConfig:
    """The config of the CDC source that reads ``table`` for the relay ``name``.

    Raises ``ValueError`` (with pydantic's ``ValidationError`` as the cause) naming the
    ``log`` key at fault, or a setting of the other database.
    """
    dialect = dialect_of(database)
    if dialect is None:
        raise ValueError(
            "mode: log needs a PostgreSQL or MySQL/MariaDB database (postgresql://, mysql://); "
            "use mode: polling for other databases"
        )
    chosen = log.model_dump(exclude_none=True) if log is not None else {}
    foreign = MYSQL_ONLY if dialect == "postgresql" else POSTGRES_ONLY
    wrong = [key for key in foreign if key in chosen]
    if wrong:
        other = "MySQL/MariaDB" if dialect == "postgresql" else "PostgreSQL"
        raise ValueError(f"log: {', '.join(wrong)} only apply to {other}")
    chosen.setdefault("snapshot_mode", DEFAULT_SNAPSHOT_MODE)
    common: dict[str, Any] = {
        "name": name, "database": database, "password_file": password_file,
        "tables": [table], "tombstones_on_delete": False,
    }
    if dialect == "postgresql":
        messages = {"messages": message_prefix is not None,
                    "message_prefixes": [message_prefix] if message_prefix else []}
        return PostgresSourceConfig.model_validate(
            {"connector": "postgres", **common, **messages, **chosen}
        )
    return MySqlSourceConfig.model_validate({"connector": "mysql", **common, **chosen})
