"""Captured binlog events (tests/unit/data/binlog/*.events) and hand-made ones, for unit tests."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.mysql._catalog import Catalog
from connectors.mysql.config import MySqlSourceConfig

DATA = Path(__file__).parent / "data" / "binlog"
#: the database of the ``transactions`` capture
TRANSACTIONS_DB = "cap_transactions"

C = TypeVar("C", bound=Catalog)


def transactions_catalog(kind: type[C] = Catalog) -> C:  # type: ignore[assignment]
    """A catalog (of class ``kind``) of the ``transactions`` capture's orders table, described
    as reflection would describe it at the end of the scenario."""
    db = TRANSACTIONS_DB
    config = MySqlSourceConfig(
        name="shop", connector="mysql", database=f"mysql://u@h/{db}", tables=["orders"],
    )
    catalog = kind(config, [(db, "orders")], {})
    orders = sa.Table(
        "orders", sa.MetaData(),
        sa.Column("id", mysql.INTEGER(), primary_key=True),
        sa.Column("qty", mysql.INTEGER(), nullable=False),
        sa.Column("status", mysql.VARCHAR(10)),
        schema=db,
    )
    catalog.snapshot_tables[(db, "orders")] = catalog.describe(orders)
    return catalog


def load_events(name: str) -> list[bytes]:
    """The events of ``<name>.events`` (see capture.py there), in binlog order."""
    data = (DATA / f"{name}.events").read_bytes()
    events: list[bytes] = []
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        events.append(data[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return events


def event_type(event: bytes) -> int:
    return event[4]


def end_position(event: bytes) -> int:
    """The header's log_pos: the position after the event."""
    value: int = struct.unpack_from("<I", event, 13)[0]
    return value


def start_position(event: bytes) -> int:
    """Where the event starts in its binlog file (log_pos minus the header's event size)."""
    (size,) = struct.unpack_from("<I", event, 9)
    return end_position(event) - int(size)


def header(event_type: int, body: bytes, *, log_pos: int = 0, server_id: int = 1,
           timestamp: int = 1_700_000_000, flags: int = 0) -> bytes:
    """A whole event: a v4 header for ``body`` (sizes as if a CRC32 followed)."""
    size = 19 + len(body) + 4
    return struct.pack("<IBIIIH", timestamp, event_type, server_id, size, log_pos, flags) + body


def query_event(database: str, sql: str, *, log_pos: int = 0) -> bytes:
    """A QUERY event running ``sql`` with ``database`` current (no status variables)."""
    db = database.encode()
    post = struct.pack("<IIBHH", 7, 0, len(db), 0, 0)
    return header(2, post + db + b"\x00" + sql.encode(), log_pos=log_pos)
