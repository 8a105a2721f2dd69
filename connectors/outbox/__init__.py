"""The outbox relay (``connector: outbox``): outbox events to records, routed like Debezium's
outbox event router; read from the WAL / binlog (``mode: log``, ``LogRelay``) or by polling the
table (``mode: polling``, ``PollingRelay``)."""

from connectors.outbox._log_relay import LogRelay
from connectors.outbox._log_settings import LogSettings
from connectors.outbox._payloads import PayloadSchemas
from connectors.outbox._polling import PollingRelay
from connectors.outbox._routing import EventRouter, Routing, message_row
from connectors.outbox.config import AdditionalField, OutboxColumns, OutboxSourceConfig
from connectors.outbox.offsets import RelayOffset, SeqRanges
from connectors.outbox.source import OutboxSource

__all__ = [
    "AdditionalField",
    "EventRouter",
    "LogRelay",
    "LogSettings",
    "OutboxColumns",
    "OutboxSource",
    "OutboxSourceConfig",
    "PayloadSchemas",
    "PollingRelay",
    "RelayOffset",
    "Routing",
    "SeqRanges",
    "message_row",
]
