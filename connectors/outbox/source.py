"""``OutboxSource``: the ``connector: outbox`` entry point, one relay per ``mode``.

- ``log`` (``_log_relay.LogRelay``): the outbox table's inserts (and, on PostgreSQL,
  ``pg_logical_emit_message`` events) read from the WAL / binlog by the postgres / mysql
  connector underneath. Recommended: no polling, no writes to the application's database.
- ``polling`` (``_polling.PollingRelay``): the table read with queries, for any SQLAlchemy
  database; relayed rows deleted (or marked) once durable.

Both route with the same ``EventRouter``; this class only chooses and delegates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from connectors.outbox._log_relay import LogRelay
from connectors.outbox._polling import PollingRelay
from connectors.outbox.config import OutboxSourceConfig
from liberate.config.base import SourceConfig
from liberate.connector import CheckResult, ConnectorStatus, Source
from liberate.records import Primitive, SourceRecord
from liberate.streams.base import SourceOffset


class OutboxSource(Source):
    """The outbox relay: a ``LogRelay`` or a ``PollingRelay``, by ``mode``.

    Lifecycle and threading are the chosen relay's (``stop`` from any thread).
    """

    config_model: ClassVar[type[SourceConfig]] = OutboxSourceConfig

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, OutboxSourceConfig):
            raise TypeError(
                f"OutboxSource needs an OutboxSourceConfig, not {type(config).__name__}"
            )
        super().__init__(config)
        self.relay: LogRelay | PollingRelay = (
            LogRelay(config) if config.mode == "log" else PollingRelay(config)
        )

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        self.relay.open(offsets)

    def poll(self) -> list[SourceRecord]:
        return self.relay.poll()

    def caught_up(self) -> bool:
        return self.relay.caught_up()

    def commit(self, offsets: Sequence[SourceOffset]) -> None:
        self.relay.commit(offsets)

    def stop(self) -> None:
        self.relay.stop()

    def compacts(self, topic: str) -> bool:
        return self.relay.compacts(topic)

    def check(self) -> list[CheckResult]:
        return self.relay.check()

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        return self.relay.status(offsets)

    def close(self) -> None:
        self.relay.close()
