"""The values of change events: the envelope of one row change, and unchanged TOAST columns.

Pure functions of decoded rows and the open transaction; ``_changes`` decides which events a
message makes and what offsets they carry.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.postgres import _pgoutput as pg
from connectors.postgres._tables import CapturedTable
from liberate.errors import RecordError
from liberate.records import SourceRecord


@dataclass(slots=True)
class OpenTransaction:
    """The transaction whose messages are being turned into events."""

    begin: pg.Begin
    ts_ms: int
    id: str  # the transaction block's id, "xid:commit LSN"
    messages: int = 0  # change messages seen (including skipped ones)
    records: int = 0  # events emitted (total_order)
    orders: dict[str, int] = field(default_factory=dict)  # events per topic
    last_record: SourceRecord | None = None  # the last one not yet returned by a poll
    returned_records: bool = False  # some of its records were returned by an earlier poll
    skip: int = 0  # change messages already durable before a crash: skipped

    @classmethod
    def of(cls, begin: pg.Begin) -> OpenTransaction:
        return cls(begin, pg.epoch_ms_of(begin.commit_ts), f"{begin.xid}:{begin.final_lsn}")

    def place(self, topic: str) -> tuple[int, int]:
        """The next event's ``total_order`` and ``data_collection_order`` (1-based)."""
        self.records += 1
        order = self.orders[topic] = self.orders.get(topic, 0) + 1
        return self.records, order


def change_value(
    table: CapturedTable,
    txn: OpenTransaction,
    op: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    lsn: int,
    unchanged: list[str] | None,
) -> dict[str, Any]:
    """The envelope of one change of ``table`` in ``txn`` (at WAL position ``lsn``)."""
    topic = table.topic
    txn.records = total = txn.records + 1
    orders = txn.orders
    orders[topic] = order = orders.get(topic, 0) + 1
    # A copy, not ``dict(...)``: a dict of scalars made so is not tracked by the garbage
    # collector (see ``_rowcode``).
    source = table.source_template.copy()
    source["ts_ms"] = txn.ts_ms
    source["txId"] = txn.begin.xid
    source["lsn"] = lsn
    return {
        "before": before,
        "after": after,
        "source": source,
        "op": op,
        "ts_ms": time.time_ns() // 1_000_000,
        "transaction": {"id": txn.id, "total_order": total, "data_collection_order": order},
        "unchanged": unchanged,
    }


def unchanged_columns(
    table: CapturedTable,
    new: list[Any],
    indexes: Sequence[int],
    old: Sequence[Any] | None,
    old_raw: pg.TupleData | None,
) -> list[str] | None:
    """Fill ``new``'s unchanged TOAST values from the old row when it has them (REPLICA
    IDENTITY FULL); the Avro names of the others, which have no value (None: none left)."""
    names: list[str] = []
    for index in indexes:
        if old is not None and old_raw is not None and old_raw.values[index] is not None:
            new[index] = old[index]
            continue
        if index in table.key_indexes:
            raise RecordError(
                f"an update of {table.name} did not send its key column "
                f"{table.stream_columns[index]} (an unchanged TOAST value)",
                hint=f"ALTER TABLE {table.name} REPLICA IDENTITY FULL",
            )
        name = table.field_of(index)
        if name is not None:
            names.append(name)
    return names or None
