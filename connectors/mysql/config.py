"""The run-file entry of a MySQL / MariaDB binlog source (``connector: mysql``)."""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from liberate.config.capture import CaptureSourceConfig
from liberate.config.durations import Duration
from liberate.config.tables import check_listed_once
from liberate.config.templates import template_over

SnapshotMode = Literal["initial", "never", "when_needed", "initial_only"]
TEMPLATE_VARIABLES = ("source", "database", "schema", "table")


class MySqlSourceConfig(CaptureSourceConfig):
    """Change data capture from the ROW binlog of MySQL 8 or MariaDB 10.5+."""

    connector: Literal["mysql"] = Field(description="Which source connector runs this entry")
    tables: list[str] = Field(
        description="Tables to capture, as 'table' (in the URL's database) or 'database.table'",
        min_length=1,
    )
    server_id: int | None = Field(
        default=None,
        ge=1,
        le=2**32 - 1,
        description="The replica server id this source connects with; unique among the "
        "server's replicas (default: derived from the source name, in 100000..999999)",
    )
    snapshot_mode: SnapshotMode = Field(
        default="initial",
        description="initial: snapshot the tables, then stream; never: stream from the current "
        "binlog end; when_needed: like initial, and snapshot again when the stored position is "
        "no longer on the server; initial_only: snapshot and stop",
    )
    position_mode: Literal["gtid", "file"] = Field(
        default="gtid",
        description="Resume by GTID (MariaDB: always available; MySQL: needs gtid_mode=ON) or "
        "by binlog file and position",
    )
    topic: Annotated[str, template_over(*TEMPLATE_VARIABLES)] | None = Field(
        default=None,
        description="Topic name template with {source}, {database} (or {schema}), {table}; "
        "default '{source}.{database}.{table}'",
    )
    batch_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="At most this many records per poll"
    )
    heartbeat_interval: Duration = Field(
        default=dt.timedelta(seconds=10),
        description="How often an idle server sends a heartbeat, and the least time between "
        "heartbeat records that store a position reached without captured changes",
    )

    @field_validator("tables")
    @classmethod
    def _tables_are_names(cls, tables: list[str]) -> list[str]:
        for name in tables:
            parts = name.split(".")
            if len(parts) > 2 or not all(p.strip() for p in parts):
                raise ValueError(f"{name!r} is not a table name ('table' or 'database.table')")
        check_listed_once(tables)
        return tables

    @model_validator(mode="after")
    def _heartbeat_is_positive(self) -> MySqlSourceConfig:
        if self.heartbeat_interval <= dt.timedelta(0):
            raise ValueError("heartbeat_interval must be positive")
        return self

    @property
    def replica_server_id(self) -> int:
        """The configured server id, or one derived from the source name."""
        if self.server_id is not None:
            return self.server_id
        return 100_000 + zlib.crc32(self.name.encode("utf-8")) % 900_000

    def topic_for(self, database: str, table: str) -> str:
        template = self.topic or "{source}.{database}.{table}"
        return template.format(source=self.name, database=database, schema=database, table=table)
