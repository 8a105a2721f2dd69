"""The outbox relay (``connector: outbox``): outbox rows to records, routed like Debezium's
outbox event router."""

from connectors.outbox._routing import EventRouter, Routing, message_row
from connectors.outbox.config import AdditionalField, OutboxColumns, OutboxSourceConfig
from connectors.outbox.offsets import RelayOffset, SeqRanges
from connectors.outbox.source import OutboxSource

__all__ = [
    "AdditionalField",
    "EventRouter",
    "OutboxColumns",
    "OutboxSource",
    "OutboxSourceConfig",
    "RelayOffset",
    "Routing",
    "SeqRanges",
    "message_row",
]
