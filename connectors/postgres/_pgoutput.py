"""The pgoutput logical replication messages (protocol versions 1 and 2), decoded from bytes.

Pure functions of bytes, no I/O (the driver in ``_stream`` feeds them): ``decode_frame`` reads
the replication CopyData framing (XLogData ``w``, primary keepalive ``k``) and
``decode_message`` one pgoutput message. See "Logical Replication Message Formats" in the
PostgreSQL documentation; names follow it.

Inside a streamed transaction (protocol 2, between Stream Start and Stream Stop) the change,
relation, type and message messages carry the (sub)transaction id first: the caller says so
with ``in_stream``, tracking Stream Start/Stop itself.

Tuple values are kept as the raw bytes pgoutput sends (text format); turning them into Python
values needs the column types and belongs to ``_values``.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from dataclasses import dataclass

# -- the values of one tuple ---------------------------------------------------------------------

#: a column value as sent: the text bytes, or None for NULL and for an unchanged TOAST value
RawValue = bytes | None

_POSTGRES_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_I64 = struct.Struct("!q")
_WAL_HEADER = struct.Struct("!QQq")
_KEEPALIVE = struct.Struct("!Qq?")
_STATUS = struct.Struct("!cQQQq?")
_BEGIN = struct.Struct("!QqI")
_COMMIT = struct.Struct("!BQQq")
_STREAM_COMMIT = struct.Struct("!IBQQq")
_ATTR = struct.Struct("!Ii")


class DecodeError(ValueError):
    """Bytes that are not a well-formed pgoutput message or replication frame."""


def timestamp_of(micros: int) -> dt.datetime:
    """A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as an aware datetime."""
    return _POSTGRES_EPOCH + dt.timedelta(microseconds=micros)


def epoch_ms_of(micros: int) -> int:
    """A PostgreSQL timestamp as milliseconds since the Unix epoch."""
    return micros // 1000 + 946_684_800_000


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """``"16/B374D848"`` -> the LSN as an integer."""
    high, sep, low = text.partition("/")
    if not sep:
        raise DecodeError(f"{text!r} is not an LSN (expected e.g. 0/16B3748)")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(slots=True)
class TupleData:
    """The columns of one row as sent. ``values[i]`` is None for NULL *and* for an unchanged
    TOAST value; the latter are listed in ``unchanged`` (column indexes)."""

    values: list[RawValue]
    unchanged: tuple[int, ...] = ()
    binary: bool = False


# -- replication framing --------------------------------------------------------------------------


@dataclass(slots=True)
class XLogData:
    """A CopyData ``w`` frame: one pgoutput message starting at WAL position ``data_start``."""

    data_start: int
    wal_end: int
    send_time: int
    payload: memoryview


@dataclass(slots=True)
class Keepalive:
    """A primary keepalive ``k``: the server's WAL end; ``reply`` asks for a status update now."""

    wal_end: int
    send_time: int
    reply: bool


def decode_frame(frame: bytes | memoryview) -> XLogData | Keepalive:
    """One CopyData frame of a START_REPLICATION stream."""
    view = memoryview(frame)
    kind = view[:1].tobytes()
    try:
        if kind == b"w":
            start, end, sent = _WAL_HEADER.unpack_from(view, 1)
            return XLogData(start, end, sent, view[25:])
        if kind == b"k":
            end, sent, reply = _KEEPALIVE.unpack_from(view, 1)
            return Keepalive(end, sent, reply)
    except struct.error as exc:
        raise DecodeError(f"truncated replication frame {kind!r}") from exc
    raise DecodeError(f"unknown replication frame type {kind!r}")


def standby_status(write: int, flush: int, apply: int, now_micros: int, *, reply: bool = False
                   ) -> bytes:
    """A standby status update ``r``: the positions written, flushed (durable) and applied."""
    return _STATUS.pack(b"r", write, flush, apply, now_micros, reply)


# -- pgoutput messages ----------------------------------------------------------------------------


@dataclass(slots=True)
class Begin:
    """Start of a transaction; ``final_lsn`` is the LSN of its commit record."""

    final_lsn: int
    commit_ts: int
    xid: int


@dataclass(slots=True)
class Commit:
    """End of a transaction; ``end_lsn`` is where the next transaction's data starts."""

    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(slots=True)
class Origin:
    """The replication origin of the transaction (only for changes that came from one)."""

    commit_lsn: int
    name: str


@dataclass(slots=True)
class Column:
    """One column of a Relation: ``key`` when it is part of the replica identity."""

    key: bool
    name: str
    type_oid: int
    type_modifier: int


@dataclass(slots=True)
class Relation:
    """The shape of a table, sent before its first change and again after it changes.

    ``replica_identity`` is ``d`` (default: primary key), ``n`` (nothing), ``f`` (full) or
    ``i`` (index).
    """

    xid: int | None
    oid: int
    namespace: str
    name: str
    replica_identity: str
    columns: list[Column]


@dataclass(slots=True)
class Type:
    """A data type that is not built in (an enum, a domain, ...), sent before its first use."""

    xid: int | None
    oid: int
    namespace: str
    name: str


@dataclass(slots=True)
class Insert:
    """A new row."""

    xid: int | None
    relation_oid: int
    new: TupleData


@dataclass(slots=True)
class Update:
    """A changed row. ``old`` is the old key (``old_kind`` ``K``: replica identity DEFAULT or
    INDEX, only when the key changed) or the whole old row (``O``: FULL), else None."""

    xid: int | None
    relation_oid: int
    old_kind: str | None
    old: TupleData | None
    new: TupleData


@dataclass(slots=True)
class Delete:
    """A removed row: its key (``K``) or its whole old row (``O``)."""

    xid: int | None
    relation_oid: int
    old_kind: str
    old: TupleData


@dataclass(slots=True)
class Truncate:
    """TRUNCATE of one or more tables; ``options`` bit 1: CASCADE, bit 2: RESTART IDENTITY."""

    xid: int | None
    options: int
    relation_oids: list[int]


@dataclass(slots=True)
class Message:
    """A logical decoding message (``pg_logical_emit_message``)."""

    xid: int | None
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(slots=True)
class StreamStart:
    """Protocol 2: a block of changes of the in-progress transaction ``xid`` follows."""

    xid: int
    first_segment: bool


@dataclass(slots=True)
class StreamStop:
    """Protocol 2: the end of a block of streamed changes."""


@dataclass(slots=True)
class StreamCommit:
    """Protocol 2: the streamed transaction ``xid`` committed."""

    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(slots=True)
class StreamAbort:
    """Protocol 2: the streamed (sub)transaction ``subxid`` of ``xid`` rolled back; when
    ``subxid == xid`` the whole transaction did."""

    xid: int
    subxid: int


PgOutputMessage = (
    Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | Message
    | StreamStart | StreamStop | StreamCommit | StreamAbort
)

_REPLICA_IDENTITIES = frozenset("dnfi")


def decode_message(
    data: bytes | memoryview, *, in_stream: bool = False, offset: int = 0
) -> PgOutputMessage:
    """One pgoutput message, starting at ``offset`` of ``data``.

    ``in_stream``: we are between Stream Start and Stream Stop. ``offset`` 25 decodes the
    payload of a whole XLogData frame in place (see ``xlog_start``), without copying it.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    try:
        decoder = _DECODERS.get(buf[offset])
        if decoder is None:
            raise DecodeError(f"unknown pgoutput message type {buf[offset:offset + 1]!r}")
        return decoder(buf, offset + 1, in_stream)
    except (struct.error, IndexError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(
            f"malformed pgoutput message {buf[offset:offset + 1]!r}: {exc}"
        ) from exc


def xlog_start(frame: bytes) -> int | None:
    """The WAL position of an XLogData frame (its message starts at offset 25), or None when
    the frame is something else (a keepalive): the hot path's shortcut past ``decode_frame``."""
    if frame[0] == 0x77:  # 'w'
        position: int = _U64.unpack_from(frame, 1)[0]
        return position
    return None


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8"), end + 1


def _xid(buf: bytes, pos: int, in_stream: bool) -> tuple[int | None, int]:
    if in_stream:
        return _U32.unpack_from(buf, pos)[0], pos + 4
    return None, pos


def _begin(buf: bytes, pos: int, in_stream: bool) -> Begin:
    final_lsn, commit_ts, xid = _BEGIN.unpack_from(buf, pos)
    return Begin(final_lsn, commit_ts, xid)


def _commit(buf: bytes, pos: int, in_stream: bool) -> Commit:
    flags, commit_lsn, end_lsn, commit_ts = _COMMIT.unpack_from(buf, pos)
    return Commit(flags, commit_lsn, end_lsn, commit_ts)


def _origin(buf: bytes, pos: int, in_stream: bool) -> Origin:
    (lsn,) = _U64.unpack_from(buf, pos)
    name, _ = _cstring(buf, pos + 8)
    return Origin(lsn, name)


def _relation(buf: bytes, pos: int, in_stream: bool) -> Relation:
    xid, pos = _xid(buf, pos, in_stream)
    (oid,) = _U32.unpack_from(buf, pos)
    namespace, pos = _cstring(buf, pos + 4)
    name, pos = _cstring(buf, pos)
    identity = chr(buf[pos])
    if identity not in _REPLICA_IDENTITIES:
        raise DecodeError(f"unknown replica identity {identity!r} in Relation {name}")
    (count,) = _I16.unpack_from(buf, pos + 1)
    pos += 3
    columns: list[Column] = []
    for _ in range(count):
        flags = buf[pos]
        column_name, pos = _cstring(buf, pos + 1)
        type_oid, modifier = _ATTR.unpack_from(buf, pos)
        pos += 8
        columns.append(Column(bool(flags & 1), column_name, type_oid, modifier))
    return Relation(xid, oid, namespace, name, identity, columns)


def _type(buf: bytes, pos: int, in_stream: bool) -> Type:
    xid, pos = _xid(buf, pos, in_stream)
    (oid,) = _U32.unpack_from(buf, pos)
    namespace, pos = _cstring(buf, pos + 4)
    name, _ = _cstring(buf, pos)
    return Type(xid, oid, namespace, name)


def _tuple(buf: bytes, pos: int) -> tuple[TupleData, int]:
    (count,) = _I16.unpack_from(buf, pos)
    pos += 2
    values: list[RawValue] = []
    append = values.append
    unchanged: list[int] = []
    binary = False
    unpack_length = _I32.unpack_from
    for index in range(count):
        kind = buf[pos]
        if kind == 0x74:  # 't': text value
            start = pos + 5
            pos = start + unpack_length(buf, pos + 1)[0]
            append(buf[start:pos])
        elif kind == 0x6E:  # 'n': NULL
            append(None)
            pos += 1
        elif kind == 0x75:  # 'u': unchanged TOAST value, not sent
            append(None)
            unchanged.append(index)
            pos += 1
        elif kind == 0x62:  # 'b': binary value (only with the binary option)
            (length,) = unpack_length(buf, pos + 1)
            start = pos + 5
            pos = start + length
            append(buf[start:pos])
            binary = True
        else:
            raise DecodeError(f"unknown tuple column kind {chr(kind)!r}")
    if pos > len(buf):
        raise DecodeError("tuple data runs past the end of the message")
    return TupleData(values, tuple(unchanged), binary), pos


def _insert(buf: bytes, pos: int, in_stream: bool) -> Insert:
    xid, pos = _xid(buf, pos, in_stream)
    (oid,) = _U32.unpack_from(buf, pos)
    if buf[pos + 4] != 0x4E:  # 'N'
        raise DecodeError("Insert without a new tuple")
    new, _ = _tuple(buf, pos + 5)
    return Insert(xid, oid, new)


def _update(buf: bytes, pos: int, in_stream: bool) -> Update:
    xid, pos = _xid(buf, pos, in_stream)
    (oid,) = _U32.unpack_from(buf, pos)
    pos += 4
    old_kind: str | None = None
    old: TupleData | None = None
    marker = buf[pos]
    if marker in (0x4B, 0x4F):  # 'K' old key, 'O' old row
        old_kind = chr(marker)
        old, pos = _tuple(buf, pos + 1)
        marker = buf[pos]
    if marker != 0x4E:
        raise DecodeError("Update without a new tuple")
    new, _ = _tuple(buf, pos + 1)
    return Update(xid, oid, old_kind, old, new)


def _delete(buf: bytes, pos: int, in_stream: bool) -> Delete:
    xid, pos = _xid(buf, pos, in_stream)
    (oid,) = _U32.unpack_from(buf, pos)
    marker = buf[pos + 4]
    if marker not in (0x4B, 0x4F):
        raise DecodeError("Delete without an old key or row")
    old, _ = _tuple(buf, pos + 5)
    return Delete(xid, oid, chr(marker), old)


def _truncate(buf: bytes, pos: int, in_stream: bool) -> Truncate:
    xid, pos = _xid(buf, pos, in_stream)
    (count,) = _I32.unpack_from(buf, pos)
    options = buf[pos + 4]
    pos += 5
    oids = list(struct.unpack_from(f"!{count}I", buf, pos))
    return Truncate(xid, options, oids)


def _message(buf: bytes, pos: int, in_stream: bool) -> Message:
    xid, pos = _xid(buf, pos, in_stream)
    flags = buf[pos]
    (lsn,) = _U64.unpack_from(buf, pos + 1)
    prefix, pos = _cstring(buf, pos + 9)
    (length,) = _I32.unpack_from(buf, pos)
    content = buf[pos + 4 : pos + 4 + length]
    if len(content) != length:
        raise DecodeError("Message content runs past the end of the message")
    return Message(xid, bool(flags & 1), lsn, prefix, content)


def _stream_start(buf: bytes, pos: int, in_stream: bool) -> StreamStart:
    (xid,) = _U32.unpack_from(buf, pos)
    return StreamStart(xid, buf[pos + 4] == 1)


def _stream_stop(buf: bytes, pos: int, in_stream: bool) -> StreamStop:
    return StreamStop()


def _stream_commit(buf: bytes, pos: int, in_stream: bool) -> StreamCommit:
    xid, flags, commit_lsn, end_lsn, commit_ts = _STREAM_COMMIT.unpack_from(buf, pos)
    return StreamCommit(xid, flags, commit_lsn, end_lsn, commit_ts)


def _stream_abort(buf: bytes, pos: int, in_stream: bool) -> StreamAbort:
    xid, subxid = struct.unpack_from("!II", buf, pos)
    return StreamAbort(xid, subxid)


# Keyed by the type byte's value (``buf[i]`` is an int).
_DECODERS: dict[int, Callable[[bytes, int, bool], PgOutputMessage]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
    ord("S"): _stream_start,
    ord("E"): _stream_stop,
    ord("c"): _stream_commit,
    ord("A"): _stream_abort,
}
