"""Captured binlog events (tests/unit/data/binlog/*.events) and hand-made ones, for unit tests."""

from __future__ import annotations

import struct
from pathlib import Path

DATA = Path(__file__).parent / "data" / "binlog"


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
