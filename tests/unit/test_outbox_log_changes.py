"""How the log relay turns the change events of its CDC source into records: inserts routed,
deletes dropped with their positions kept, polls that keep nothing stored as heartbeats.

The CDC source here is a tiny real ``Source`` replaying change events in the shape the postgres
and mysql connectors emit (Debezium's envelope), so no server is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.outbox import LogRelay, OutboxSourceConfig
from liberate.connector import Source
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import AvroSchema

PARTITION: dict[str, Primitive] = {"server": "relay"}
ROW = {"type": "record", "name": "Value", "namespace": "relay.public.outbox", "fields": [
    {"name": n, "type": ["null", "string"], "default": None}
    for n in ("id", "aggregatetype", "aggregateid", "type", "payload", "headers")
] + [{"name": "created_at", "type": ["null", {"type": "long",
                                                "logicalType": "timestamp-micros"}]}]}
ENVELOPE = AvroSchema({"type": "record", "name": "Envelope", "namespace": "relay.public.outbox",
                       "fields": [{"name": "before", "type": ["null", ROW]},
                                  {"name": "after", "type": ["null", "Value"]},
                                  {"name": "op", "type": "string"}]})


class ReplayedChanges(Source):
    """Returns the given polls of change records, one list per ``poll``."""

    config_model = OutboxSourceConfig

    def __init__(self, polls: list[list[SourceRecord]]) -> None:
        self.polls = polls
        self.partition = PARTITION

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        pass

    def poll(self) -> list[SourceRecord]:
        return self.polls.pop(0) if self.polls else []

    def caught_up(self) -> bool:
        return not self.polls

    def close(self) -> None:
        pass


def _change(op: str, event_id: str, lsn: int) -> SourceRecord:
    row = {"id": event_id, "aggregatetype": "Order", "aggregateid": "1", "type": "OrderPlaced",
           "payload": '{"n": 1}', "headers": None, "created_at": 1_700_000_000_000_000}
    value: dict[str, Any] = {"before": row if op == "d" else None,
                             "after": None if op == "d" else row, "op": op}
    return SourceRecord("relay.public.outbox", {"seq": 1}, value, None, ENVELOPE, PARTITION,
                        {"lsn": lsn}, (), 1_700_000_000_123)


def _relay(polls: list[list[SourceRecord]], **settings: Any) -> LogRelay:
    config = OutboxSourceConfig.model_validate(
        {"name": "relay", "connector": "outbox", "mode": "log",
         "database": "postgresql://app@db/shop", **settings})
    relay = LogRelay(config)
    relay.cdc = ReplayedChanges(polls)  # type: ignore[assignment]
    relay.open({"relay": {"lsn": 1}})
    return relay


def test_an_insert_deleted_in_its_transaction_relays_once_carrying_the_deletes_position() -> None:
    relay = _relay([[_change("c", "e1", 10), _change("d", "e1", 11),
                     _change("c", "e2", 12), _change("d", "e2", 13)]])
    records = relay.poll()
    assert [dict(r.headers)["id"] for r in records] == [b"e1", b"e2"]
    assert [r.offset for r in records] == [{"lsn": 11}, {"lsn": 13}]
    assert records[0].topic == "outbox.event.Order" and records[0].key == {"aggregateid": "1"}
    assert records[0].timestamp_ms == 1_700_000_000_000  # the created_at column


def test_a_poll_of_deletes_only_stores_its_position_as_a_heartbeat() -> None:
    relay = _relay([[_change("d", "e1", 20), _change("d", "e2", 21)]])
    (heartbeat,) = relay.poll()
    assert heartbeat.topic == "__liberate-heartbeat.relay"
    assert heartbeat.offset == {"lsn": 21} and heartbeat.partition == PARTITION


def test_ignored_updates_give_their_position_to_the_record_before() -> None:
    relay = _relay([[_change("c", "e1", 30), _change("u", "e1", 31)]],
                   invalid_op_behavior="ignore")
    (record,) = relay.poll()
    assert record.offset == {"lsn": 31}


def test_without_heartbeats_a_poll_of_deletes_returns_nothing() -> None:
    relay = _relay([[_change("d", "e1", 40)]], log={"heartbeat_topic": ""})
    assert relay.poll() == []
