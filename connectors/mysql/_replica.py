"""A replication connection on PyMySQL: register as a replica, request a dump, read raw events.

PyMySQL does the handshake, authentication, TLS and the few SET statements; after the dump
request this module reads the socket itself. PyMySQL's packet reader costs two buffered reads
and a packet object per event; reading 256 KB at a time and slicing complete packets out of
it is several times cheaper. Each event comes out as its own ``bytes`` (a slice of the chunk:
one copy, which the decoders would make anyway, since ``bytes`` slices and decodes where a
memoryview cannot).

Dump requests:

- MariaDB: ``SET @mariadb_slave_capability=4`` (GTID-aware), with a GTID start also
  ``@slave_connect_state`` and strict mode, then COM_BINLOG_DUMP (empty file name for GTID).
- MySQL: COM_BINLOG_DUMP_GTID with the executed GTID set, or COM_BINLOG_DUMP at file/position.

Every dump sets ``@master_binlog_checksum`` to the server's ``binlog_checksum`` (the server
refuses checksum-unaware replicas) and ``@master_heartbeat_period``, so an idle server sends a
HEARTBEAT event every period and a blocked read always returns.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pymysql

from connectors.mysql._binlog import BinlogDecodeError
from connectors.mysql._gtid import MysqlGtidSet
from liberate.errors import FatalError, PrerequisiteError, RetriableError

COM_BINLOG_DUMP = 0x12
COM_REGISTER_SLAVE = 0x15
COM_BINLOG_DUMP_GTID = 0x1E
BINLOG_THROUGH_GTID = 0x04
MARIADB_SLAVE_CAPABILITY_GTID = 4
MAX_PACKET = 0xFFFFFF
READ_SIZE = 1 << 18
_U32 = struct.Struct("<I").unpack_from

#: server errors that mean "the position you asked for is not in the binlog any more"
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236
_PRIVILEGE_ERRORS = frozenset({1044, 1045, 1142, 1227, 1370})

Connect = Callable[[], pymysql.connections.Connection]


@dataclass(frozen=True, slots=True)
class DumpRequest:
    """Where a dump starts: a GTID position (``gtids``) or a file and position."""

    server_id: int
    file: str = ""
    pos: int = 4
    gtids: str | None = None
    report_host: str = "liberate"
    heartbeat_s: float = 1.0


class PurgedPositionError(FatalError):
    """The requested binlog position is no longer on the server (error 1236)."""


class PacketReader:
    """Splits the bytes of a dump connection into events (a pure function of the bytes fed).

    Each replication packet is ``length u24, sequence u8, payload``; the payload of an event
    is ``0x00`` and the event, an error is ``0xFF code message``, the end of a non-blocking
    dump ``0xFE``. A payload of 16 MB - 1 bytes continues in the next packet.
    """

    def __init__(self, checksum: bool) -> None:
        self.checksum = checksum
        self._pending = b""
        self._partial: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete events in ``chunk`` and what came before it, checksums removed."""
        data = self._pending + chunk if self._pending else chunk
        size = len(data)
        offset = 0
        found: list[bytes] = []
        append = found.append
        checksum = self.checksum
        crc32 = zlib.crc32
        u32 = _U32
        while offset + 4 <= size:
            length = u32(data, offset)[0] & MAX_PACKET
            end = offset + 4 + length
            if end > size:
                break
            if length == MAX_PACKET or self._partial:
                # A payload of 16 MB or more continues in the next packets.
                self._partial.append(data[offset + 4 : end])
                offset = end
                if length < MAX_PACKET:
                    self._whole(b"".join(self._partial), append)
                    self._partial = []
                continue
            if data[offset + 4] == 0x00:
                if checksum:
                    event = data[offset + 5 : end - 4]
                    if crc32(event) != u32(data, end - 4)[0]:
                        raise _corrupted()
                else:
                    event = data[offset + 5 : end]
                append(event)
            else:
                self._whole(data[offset + 4 : end], append)
            offset = end
        self._pending = data[offset:] if offset < size else b""
        return found

    def _whole(self, payload: bytes, append: Callable[[bytes], None]) -> None:
        status = payload[0]
        if status == 0x00:
            event = payload[1:]
            if self.checksum:
                body = event[:-4]
                if zlib.crc32(body) != _U32(payload, len(payload) - 4)[0]:
                    raise _corrupted()
                event = body
            append(event)
        elif status == 0xFF:
            raise server_error(memoryview(payload))
        elif status == 0xFE and len(payload) < 9:
            raise RetriableError("the server ended the binlog dump")
        else:
            raise BinlogDecodeError(f"unexpected replication packet status 0x{status:02x}")


def _corrupted() -> BinlogDecodeError:
    return BinlogDecodeError(
        "a binlog event failed its CRC32 check",
        hint="check the server's binlog with mariadb-binlog --verify-binlog-checksum",
    )


class BinlogConnection:
    """One dump connection. ``events()`` returns the complete events received so far.

    Threading: one reader thread; ``close()`` from any thread (it shuts the socket down, so a
    blocked read returns at once).
    """

    def __init__(self, conn: pymysql.connections.Connection, checksum: bool, mariadb: bool):
        self._conn = conn
        self._sock: socket.socket = conn._sock
        self.mariadb = mariadb
        self._reader = PacketReader(checksum)
        self._timeout: float | None = None

    @classmethod
    def open(cls, connect: Connect, request: DumpRequest) -> BinlogConnection:
        """Connect, register as replica ``request.server_id`` and start the dump."""
        try:
            conn = connect()
        except pymysql.err.OperationalError as exc:
            raise _connection_error(exc, "connecting for replication") from exc
        try:
            return cls._start(conn, request)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _start(cls, conn: pymysql.connections.Connection, request: DumpRequest
               ) -> BinlogConnection:
        with conn.cursor() as cur:
            cur.execute("SELECT @@global.binlog_checksum, VERSION()")
            row = cur.fetchone()
            checksum_name, version = str(row[0]), str(row[1])
            mariadb = "mariadb" in version.lower()
            cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
            cur.execute("SET @source_binlog_checksum = @@global.binlog_checksum")
            period_ns = int(request.heartbeat_s * 1_000_000_000)
            cur.execute("SET @master_heartbeat_period = %s", (period_ns,))
            cur.execute("SET @source_heartbeat_period = %s", (period_ns,))
            if mariadb:
                cur.execute("SET @mariadb_slave_capability = %s", (MARIADB_SLAVE_CAPABILITY_GTID,))
                if request.gtids is not None:
                    cur.execute("SET @slave_connect_state = %s", (request.gtids,))
                    cur.execute("SET @slave_gtid_strict_mode = 1")
                    cur.execute("SET @slave_gtid_ignore_duplicates = 0")
        _register(conn, request)
        if request.gtids is not None and not mariadb:
            payload = _dump_gtid_payload(request.server_id, MysqlGtidSet(request.gtids))
            command = COM_BINLOG_DUMP_GTID
        else:
            file = "" if request.gtids is not None else request.file
            payload = struct.pack("<IHI", request.pos if file else 4, 0, request.server_id)
            payload += file.encode("utf-8")
            command = COM_BINLOG_DUMP
        try:
            conn._execute_command(command, payload)
        except pymysql.err.OperationalError as exc:
            raise _connection_error(exc, "requesting the binlog dump") from exc
        return cls(conn, checksum_name.upper() != "NONE", mariadb)

    def events(self, timeout_s: float) -> list[bytes]:
        """The next complete events (without checksum), waiting up to ``timeout_s`` for data.

        Returns ``[]`` when nothing arrived in time. Raises ``RetriableError`` when the
        connection is lost, ``PurgedPositionError``/``FatalError`` for a server error.
        """
        if self._timeout != timeout_s:
            self._sock.settimeout(timeout_s)
            self._timeout = timeout_s
        try:
            chunk = self._sock.recv(READ_SIZE)
        except TimeoutError:
            return []
        except OSError as exc:
            raise RetriableError(f"the binlog connection was lost: {exc}") from exc
        if not chunk:
            raise RetriableError("the server closed the binlog connection")
        return self._reader.feed(chunk)

    def close(self) -> None:
        """Close the connection (safe from another thread, idempotent)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        # Closing a dead dump connection may fail in any way; there is nothing left to do then.
        with contextlib.suppress(Exception):
            self._conn.close()


def _register(conn: pymysql.connections.Connection, request: DumpRequest) -> None:
    """COM_REGISTER_SLAVE, so SHOW SLAVE HOSTS lists this replica under its server id."""
    host = request.report_host.encode("utf-8")[:60]
    payload = (
        struct.pack("<I", request.server_id)
        + bytes([len(host)]) + host
        + b"\x00"  # user
        + b"\x00"  # password
        + struct.pack("<HII", 0, 0, 0)
    )
    try:
        conn._execute_command(COM_REGISTER_SLAVE, payload)
        conn._read_packet()
    except pymysql.err.MySQLError as exc:
        raise _connection_error(exc, "registering as a replica") from exc


def _dump_gtid_payload(server_id: int, gtids: MysqlGtidSet) -> bytes:
    encoded = gtids.encoded()
    return (
        struct.pack("<HII", BINLOG_THROUGH_GTID, server_id, 0)
        + struct.pack("<Q", 4)
        + struct.pack("<I", len(encoded))
        + encoded
    )


def server_error(payload: memoryview) -> FatalError | RetriableError:
    code = int.from_bytes(payload[1:3], "little")
    text = bytes(payload[3:]).decode("utf-8", "replace")
    if text.startswith("#"):
        text = text[6:]
    if code == ER_MASTER_FATAL_ERROR_READING_BINLOG:
        return PurgedPositionError(
            f"the server cannot send the binlog from the stored position: {text} "
            f"(error {code})",
            hint="the binlog this source needs has been purged or the position does not exist. "
            "Choose one: set snapshot_mode: when_needed to take a new snapshot automatically; "
            "or delete this source's stored offsets to snapshot again from scratch; or keep "
            "binlogs longer (binlog_expire_logs_seconds) so a stopped source can catch up",
        )
    if code in _PRIVILEGE_ERRORS:
        return PrerequisiteError(
            f"the server refused replication: {text} (error {code})",
            hint="GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the user",
        )
    return RetriableError(f"the binlog dump failed: {text} (error {code})")


def _connection_error(exc: pymysql.err.MySQLError, doing: str) -> FatalError | RetriableError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code in _PRIVILEGE_ERRORS:
        return PrerequisiteError(
            f"{doing} failed: {message} (error {code})",
            hint="check the user and password, and GRANT REPLICATION SLAVE, REPLICATION "
            "CLIENT, SELECT ON *.* TO the user",
        )
    return RetriableError(f"{doing} failed: {message} (error {code})")


def connect_kwargs(url: Any) -> dict[str, Any]:
    """PyMySQL ``connect`` arguments of a SQLAlchemy URL (TLS and socket options included)."""
    dialect = url.get_dialect()()
    _, kwargs = dialect.create_connect_args(url)
    kwargs.pop("client_flag", None)
    kwargs["autocommit"] = True
    kwargs.setdefault("charset", "utf8mb4")
    kwargs.pop("database", None)
    kwargs.pop("db", None)
    return dict(kwargs)
