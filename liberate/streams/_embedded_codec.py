"""Byte layouts of the embedded store: record batches, headers, and the key partitioner.

Records are stored as *batches*, one SQLite row per batch of consecutive offsets of one
partition, the way Kafka stores record batches. A row per record costs 2.5-7 µs in SQLite
alone on our reference machine; a batch row spreads that over a thousand records.

Batch payload (little-endian), version 1::

    u8 version | u8 flags | u32 count
    i32[count] key lengths      (-1: null key)
    i32[count] value lengths    (-1: null value, a tombstone)
    i64[count] timestamps (ms)
    i32[count] header lengths   (only when flags & HAS_HEADERS)
    keys | values | headers     (concatenated, nulls take no bytes)

Headers of one record: u16 count, then per header u16 name length, UTF-8 name, u32 value
length, value.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence

from liberate.records import ConsumedRecord, Headers, StreamRecord

BATCH_VERSION = 1
HAS_HEADERS = 0x01
_BATCH_HEADER = struct.Struct("<BBI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_SWAP = sys.byteorder != "little"

# The layout relies on these item sizes; they hold on every platform CPython supports.
assert array("i").itemsize == 4 and array("q").itemsize == 8


def _pack(typecode: str, values: list[int]) -> bytes:
    packed = array(typecode, values)
    if _SWAP:
        packed.byteswap()
    return packed.tobytes()


def _unpack(typecode: str, payload: bytes, start: int, count: int) -> tuple[array[int], int]:
    unpacked = array(typecode)
    end = start + count * unpacked.itemsize
    unpacked.frombytes(payload[start:end])
    if _SWAP:
        unpacked.byteswap()
    return unpacked, end


def encode_headers(headers: Headers) -> bytes:
    """The stored form of one record's headers (empty bytes when there are none)."""
    if not headers:
        return b""
    parts = [_U16.pack(len(headers))]
    for name, value in headers:
        encoded = name.encode("utf-8")
        parts += [_U16.pack(len(encoded)), encoded, _U32.pack(len(value)), bytes(value)]
    return b"".join(parts)


def decode_headers(data: bytes) -> Headers:
    """The inverse of :func:`encode_headers`."""
    if not data:
        return ()
    (count,) = _U16.unpack_from(data, 0)
    pos = _U16.size
    headers: list[tuple[str, bytes]] = []
    for _ in range(count):
        (name_len,) = _U16.unpack_from(data, pos)
        pos += _U16.size
        name = data[pos : pos + name_len].decode("utf-8")
        pos += name_len
        (value_len,) = _U32.unpack_from(data, pos)
        pos += _U32.size
        headers.append((name, data[pos : pos + value_len]))
        pos += value_len
    return tuple(headers)


def encode_batch(records: Sequence[StreamRecord], now_ms: int) -> bytes:
    """One batch payload; records without a timestamp get ``now_ms``."""
    keys = [r.key for r in records]
    values = [r.value for r in records]
    parts = [
        _BATCH_HEADER.pack(BATCH_VERSION, 0, len(records)),
        _pack("i", [-1 if k is None else len(k) for k in keys]),
        _pack("i", [-1 if v is None else len(v) for v in values]),
        _pack("q", [now_ms if r.timestamp_ms is None else r.timestamp_ms for r in records]),
    ]
    header_blobs: list[bytes] = []
    if any(r.headers for r in records):
        header_blobs = [encode_headers(r.headers) for r in records]
        parts[0] = _BATCH_HEADER.pack(BATCH_VERSION, HAS_HEADERS, len(records))
        parts.append(_pack("i", [len(h) for h in header_blobs]))
    parts.append(b"".join([k or b"" for k in keys]))
    parts.append(b"".join([v or b"" for v in values]))
    parts.extend(header_blobs)
    return b"".join(parts)


def decode_batch(
    payload: bytes, *, topic: str, partition: int, base_offset: int, from_offset: int
) -> list[ConsumedRecord]:
    """The records of a batch whose offset is at least ``from_offset``."""
    version, flags, count = _BATCH_HEADER.unpack_from(payload, 0)
    if version != BATCH_VERSION:
        raise ValueError(f"unknown record batch version {version}")
    key_lens, pos = _unpack("i", payload, _BATCH_HEADER.size, count)
    value_lens, pos = _unpack("i", payload, pos, count)
    timestamps, pos = _unpack("q", payload, pos, count)
    header_lens: array[int] | None = None
    if flags & HAS_HEADERS:
        header_lens, pos = _unpack("i", payload, pos, count)
    key_pos = pos
    value_pos = key_pos + sum(n for n in key_lens if n > 0)
    header_pos = value_pos + sum(n for n in value_lens if n > 0)
    skip = max(0, from_offset - base_offset)
    out: list[ConsumedRecord] = []
    for i in range(count):
        key_len, value_len = key_lens[i], value_lens[i]
        key = None if key_len < 0 else payload[key_pos : key_pos + key_len]
        value = None if value_len < 0 else payload[value_pos : value_pos + value_len]
        key_pos += max(key_len, 0)
        value_pos += max(value_len, 0)
        headers: Headers = ()
        if header_lens is not None:
            header_len = header_lens[i]
            headers = decode_headers(payload[header_pos : header_pos + header_len])
            header_pos += header_len
        if i >= skip:
            out.append(
                ConsumedRecord(
                    topic, partition, base_offset + i, key, value, headers, timestamps[i]
                )
            )
    return out


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit int (Java's ``Utils.murmur2``)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    blocks = length // 4
    for k in struct.unpack_from(f"<{blocks}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    i = blocks * 4
    if tail == 3:
        h ^= data[i + 2] << 16
    if tail >= 2:
        h ^= data[i + 1] << 8
    if tail >= 1:
        h ^= data[i]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of ``key``, the same one Kafka's Java default partitioner picks."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
