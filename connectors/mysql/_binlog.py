"""Binlog events from bytes: the event header and the events that move positions.

A pure decoder (no I/O): every function takes the bytes of one event, as the server sends it
after the replication packet's OK byte and without its CRC32 trailer, and returns a small
value. Row images are decoded in ``_rowcodec``, TABLE_MAP events in ``_tablemap``.

Layout (MySQL and MariaDB, binlog format v4): a 19-byte header ``timestamp u32, type u8,
server_id u32, event_size u32, log_pos u32, flags u16`` (all little-endian), then the event's
post-header and body. ``log_pos`` is the position *after* the event in its binlog file; the
server's artificial events (the first ROTATE of a dump, heartbeats) carry 0 or the position
the dump thread has reached.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from liberate.errors import FatalError

# Event type codes (MySQL binlog_event.h; MariaDB log_event.h for 160+).
START_V3 = 1
QUERY = 2
STOP = 3
ROTATE = 4
INTVAR = 5
RAND = 13
USER_VAR = 14
FORMAT_DESCRIPTION = 15
XID = 16
TABLE_MAP = 19
WRITE_ROWS_V1 = 23
UPDATE_ROWS_V1 = 24
DELETE_ROWS_V1 = 25
INCIDENT = 26
HEARTBEAT = 27
IGNORABLE = 28
ROWS_QUERY = 29
WRITE_ROWS = 30
UPDATE_ROWS = 31
DELETE_ROWS = 32
MYSQL_GTID = 33
MYSQL_ANONYMOUS_GTID = 34
MYSQL_PREVIOUS_GTIDS = 35
TRANSACTION_CONTEXT = 36
VIEW_CHANGE = 37
XA_PREPARE = 38
PARTIAL_UPDATE_ROWS = 39
TRANSACTION_PAYLOAD = 40
HEARTBEAT_V2 = 41
MYSQL_GTID_TAGGED = 42
MARIADB_ANNOTATE_ROWS = 160
MARIADB_BINLOG_CHECKPOINT = 161
MARIADB_GTID = 162
MARIADB_GTID_LIST = 163
MARIADB_START_ENCRYPTION = 164
MARIADB_QUERY_COMPRESSED = 165
MARIADB_ROWS_COMPRESSED = frozenset(range(166, 172))

ROWS_EVENTS = frozenset(
    {WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1, WRITE_ROWS, UPDATE_ROWS, DELETE_ROWS}
)

#: events whose content we cannot decode: meeting one on a captured table is fatal
UNSUPPORTED_EVENTS: dict[int, str] = {
    PARTIAL_UPDATE_ROWS: "a partial JSON update (binlog_row_value_options=PARTIAL_JSON)",
    TRANSACTION_PAYLOAD: "a compressed transaction (binlog_transaction_compression=ON)",
    MARIADB_QUERY_COMPRESSED: "a compressed query event (log_bin_compress=ON)",
    MARIADB_START_ENCRYPTION: "an encrypted binlog (encrypt_binlog=ON)",
    MYSQL_GTID_TAGGED: "a tagged GTID (MySQL 8.3+ gtid tags)",
    **{code: "a compressed rows event (log_bin_compress=ON)" for code in MARIADB_ROWS_COMPRESSED},
}

HEADER = struct.Struct("<IBIIIH")
HEADER_SIZE = HEADER.size
LOG_EVENT_ARTIFICIAL_F = 0x20

# MariaDB GTID event flags (log_event.h: Gtid_log_event::FL_*).
MARIADB_FL_STANDALONE = 0x01
MARIADB_FL_GROUP_COMMIT_ID = 0x02
MARIADB_FL_PREPARED_XA = 0x40
MARIADB_FL_COMPLETED_XA = 0x80

CHECKSUM_OFF = 0
CHECKSUM_CRC32 = 1

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_QUERY_POST_HEADER = struct.Struct("<IIBHH")
_MARIADB_GTID = struct.Struct("<QIB")
_MARIADB_GTID_ENTRY = struct.Struct("<IIQ")
_MYSQL_GTID = struct.Struct("<B16sQ")


#: the bytes of one event: ``bytes`` from the replication connection, views in tests
Event = bytes | memoryview


class BinlogDecodeError(FatalError):
    """An event could not be decoded: the bytes do not have the expected layout."""


@dataclass(frozen=True, slots=True)
class FormatDescription:
    """What a FORMAT_DESCRIPTION event says about the events after it."""

    binlog_version: int
    server_version: str
    header_length: int
    post_header_lengths: bytes
    checksum: int

    def post_header_length(self, event_type: int) -> int:
        index = event_type - 1
        if 0 <= index < len(self.post_header_lengths):
            return self.post_header_lengths[index]
        return 0

    @property
    def table_id_size(self) -> int:
        """6 bytes on every server since 5.1.4; 4 when TABLE_MAP's post-header is 6 long."""
        return 4 if self.post_header_length(TABLE_MAP) == 6 else 6

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.server_version.lower()


@dataclass(frozen=True, slots=True)
class Rotate:
    """The binlog continues in ``file`` at ``position``."""

    file: str
    position: int


@dataclass(frozen=True, slots=True)
class Query:
    """A statement: ``BEGIN``, ``COMMIT``, DDL, or statement-based DML (not decoded)."""

    thread_id: int
    database: str
    sql: str
    error_code: int


@dataclass(frozen=True, slots=True)
class MariadbGtid:
    """The start of a MariaDB event group: GTID ``domain-server-seq`` and its flags."""

    domain_id: int
    server_id: int
    sequence: int
    flags: int

    @property
    def standalone(self) -> bool:
        """A group without BEGIN/COMMIT: one statement (DDL) that ends the transaction."""
        return bool(self.flags & MARIADB_FL_STANDALONE)

    @property
    def text(self) -> str:
        return f"{self.domain_id}-{self.server_id}-{self.sequence}"


@dataclass(frozen=True, slots=True)
class MysqlGtid:
    """The start of a MySQL transaction: GTID ``uuid:number``."""

    uuid: str
    number: int

    @property
    def text(self) -> str:
        return f"{self.uuid}:{self.number}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The server is idle; its dump thread stands at ``file``/``position``."""

    file: str
    position: int


def format_description(event: Event) -> FormatDescription:
    """Decode a FORMAT_DESCRIPTION event (without its checksum trailer, like every event).

    On servers that support checksums the event ends with the checksum algorithm byte,
    whether checksums are on or not.
    """
    data = bytes(event)
    offset = HEADER_SIZE
    binlog_version = _U16.unpack_from(data, offset)[0]
    server_version = data[offset + 2 : offset + 52].split(b"\0", 1)[0].decode("ascii", "replace")
    header_length = data[offset + 56]
    lengths_start = offset + 57
    has_algorithm = _supports_checksum(server_version)
    checksum = data[-1] if has_algorithm else CHECKSUM_OFF
    lengths_end = len(data) - 1 if has_algorithm else len(data)
    if binlog_version != 4 or header_length != HEADER_SIZE:
        raise BinlogDecodeError(
            f"binlog format v{binlog_version} with a {header_length}-byte header is not supported",
            hint="liberate reads binlog format v4 (MySQL 5.0+ and MariaDB)",
        )
    if checksum not in (CHECKSUM_OFF, CHECKSUM_CRC32):
        raise BinlogDecodeError(f"unknown binlog checksum algorithm {checksum}")
    return FormatDescription(
        binlog_version=binlog_version,
        server_version=server_version,
        header_length=header_length,
        post_header_lengths=data[lengths_start:lengths_end],
        checksum=checksum,
    )


def _supports_checksum(server_version: str) -> bool:
    # Checksums arrived in MySQL 5.6.1 and MariaDB 5.3; older servers end the FDE at the table.
    digits = server_version.split("-", 1)[0].split(".")
    try:
        major, minor, patch = (int("".join(c for c in d if c.isdigit()) or 0) for d in digits[:3])
    except ValueError:
        return True
    if "mariadb" in server_version.lower():
        return (major, minor) >= (5, 3)
    return (major, minor, patch) >= (5, 6, 1)


def rotate(event: Event) -> Rotate:
    position = _U64.unpack_from(event, HEADER_SIZE)[0]
    name = bytes(event[HEADER_SIZE + 8 :]).decode("utf-8")
    return Rotate(name, position)


def query(event: Event) -> Query:
    thread_id, _, db_len, error_code, status_len = _QUERY_POST_HEADER.unpack_from(
        event, HEADER_SIZE
    )
    start = HEADER_SIZE + _QUERY_POST_HEADER.size + status_len
    database = bytes(event[start : start + db_len]).decode("utf-8", "replace")
    # The statement is in the session's character set; utf8mb4 is the default everywhere
    # that matters, and a statement we cannot decode exactly is only ever quoted back.
    sql = bytes(event[start + db_len + 1 :]).decode("utf-8", "replace")
    return Query(thread_id, database, sql, error_code)


def xid(event: Event) -> int:
    value: int = _U64.unpack_from(event, HEADER_SIZE)[0]
    return value


def mariadb_gtid(event: Event) -> MariadbGtid:
    sequence, domain, flags = _MARIADB_GTID.unpack_from(event, HEADER_SIZE)
    server_id = _U32.unpack_from(event, 5)[0]
    return MariadbGtid(domain, server_id, sequence, flags)


def mariadb_gtid_list(event: Event) -> list[MariadbGtid]:
    """The GTID_LIST at the start of each MariaDB binlog: the last GTID of every domain."""
    count = _U32.unpack_from(event, HEADER_SIZE)[0] & 0x0FFFFFFF
    offset = HEADER_SIZE + 4
    entries: list[MariadbGtid] = []
    for _ in range(count):
        domain, server_id, sequence = _MARIADB_GTID_ENTRY.unpack_from(event, offset)
        entries.append(MariadbGtid(domain, server_id, sequence, 0))
        offset += _MARIADB_GTID_ENTRY.size
    return entries


def mysql_gtid(event: Event) -> MysqlGtid:
    _, sid, number = _MYSQL_GTID.unpack_from(event, HEADER_SIZE)
    h = sid.hex()
    uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return MysqlGtid(uuid, number)


def heartbeat(event: Event) -> Heartbeat:
    """A HEARTBEAT (file name in the body, position in the header) or MySQL's HEARTBEAT_V2.

    HEARTBEAT_V2 (MySQL 8.0.26+, untested here) is a list of ``field u8, length, value`` with
    field 1 the file name and 2 the position, ended by field 0; an unreadable one only loses
    the coordinates, which are advisory.
    """
    if event[4] == HEARTBEAT:
        log_pos = _U32.unpack_from(event, 13)[0]
        return Heartbeat(bytes(event[HEADER_SIZE:]).decode("utf-8", "replace"), log_pos)
    data = bytes(event)
    file, position = "", 0
    offset = HEADER_SIZE
    try:
        while offset < len(data) and data[offset] != 0:
            field = data[offset]
            length, offset = length_encoded_int(data, offset + 1)
            value = data[offset : offset + length]
            offset += length
            if field == 1:
                file = value.decode("utf-8", "replace")
            elif field == 2:
                position = length_encoded_int(value, 0)[0]
    except (IndexError, BinlogDecodeError):
        return Heartbeat("", 0)
    return Heartbeat(file, position)


def length_encoded_int(data: bytes | memoryview, offset: int) -> tuple[int, int]:
    """A MySQL length-encoded integer at ``offset``: ``(value, offset after it)``."""
    first = data[offset]
    if first < 0xFB:
        return first, offset + 1
    if first == 0xFC:
        return data[offset + 1] | data[offset + 2] << 8, offset + 3
    if first == 0xFD:
        return int.from_bytes(data[offset + 1 : offset + 4], "little"), offset + 4
    if first == 0xFE:
        return int.from_bytes(data[offset + 1 : offset + 9], "little"), offset + 9
    raise BinlogDecodeError(f"invalid length-encoded integer prefix 0x{first:02x}")
