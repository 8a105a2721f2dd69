"""The binlog decoder's fast paths give exactly what the plain paths give.

Runs of fixed-width columns read with one struct, TIMESTAMP fractions read in place, rows
events decoded with their keys in one generated loop, and a repeated TABLE_MAP recognised by
its bytes: each pinned against the column-by-column decoding or the first decoding.
"""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from typing import Any

import pytest

from connectors.mysql import _tablemap as tm
from connectors.mysql._binlog import UPDATE_ROWS_V1, WRITE_ROWS_V1
from connectors.mysql._catalog import Catalog
from connectors.mysql._rowcodec import compile_row_codec, keyed_rows, rows, update_pairs
from connectors.mysql._stream import CapturedTable, ChangeStream
from connectors.mysql._tablemap import TableMap
from connectors.mysql._values import decimal_reader
from connectors.mysql.offsets import BinlogPosition
from liberate.records import SourceRecord
from tests.unit._binlog_fixtures import (
    TRANSACTIONS_DB,
    header,
    load_events,
    query_event,
    start_position,
    transactions_catalog,
)

UTF8MB4 = 45
UTC = dt.UTC


def _table(*columns: tm.BinlogColumn) -> tm.TableMap:
    return tm.TableMap(7, "db", "t", columns, (0,), True)


def _rows_event(kind: int, table: tm.TableMap, *images: bytes) -> bytes:
    count = len(table.columns)
    bitmap = ((1 << count) - 1).to_bytes((count + 7) // 8, "little")
    bitmaps = bitmap * (2 if kind == UPDATE_ROWS_V1 else 1)
    body = (7).to_bytes(6, "little") + b"\x00\x00" + bytes([count]) + bitmaps + b"".join(images)
    return header(kind, body)


def _nullable(column: tm.BinlogColumn) -> tm.BinlogColumn:
    return tm.BinlogColumn(column.index, column.name, column.type, True, column.unsigned,
                           column.length, column.precision, column.scale, column.fsp,
                           column.bits, column.collation, column.values)


#: NOT NULL columns that make runs: numbers, then a 1-byte-prefixed string that joins the first
#: run, a 2-byte-prefixed blob that joins the second, an unsigned BIGINT (a Decimal, outside
#: any run), and a number alone before a 4-byte-prefixed blob
COLUMNS = (
    tm.BinlogColumn(0, "ti", tm.T_TINY, False),
    tm.BinlogColumn(1, "tu", tm.T_TINY, False, unsigned=True),
    tm.BinlogColumn(2, "si", tm.T_SHORT, False),
    tm.BinlogColumn(3, "su", tm.T_SHORT, False, unsigned=True),
    tm.BinlogColumn(4, "i", tm.T_LONG, False),
    tm.BinlogColumn(5, "iu", tm.T_LONG, False, unsigned=True),
    tm.BinlogColumn(6, "bi", tm.T_LONGLONG, False),
    tm.BinlogColumn(7, "f", tm.T_FLOAT, False, length=4),
    tm.BinlogColumn(8, "d", tm.T_DOUBLE, False, length=8),
    tm.BinlogColumn(9, "vc", tm.T_VARCHAR, False, length=40, collation=UTF8MB4),
    tm.BinlogColumn(10, "j", tm.T_LONG, False),
    tm.BinlogColumn(11, "k", tm.T_SHORT, False),
    tm.BinlogColumn(12, "bl", tm.T_BLOB, False, length=2, collation=tm.BINARY_COLLATION),
    tm.BinlogColumn(13, "bu", tm.T_LONGLONG, False, unsigned=True),
    tm.BinlogColumn(14, "m", tm.T_TINY, False),
    tm.BinlogColumn(15, "tx", tm.T_BLOB, False, length=4, collation=UTF8MB4),
    tm.BinlogColumn(16, "vl", tm.T_VARCHAR, False, length=1200, collation=UTF8MB4),
)
ROW: dict[str, Any] = {
    "ti": -5, "tu": 250, "si": -300, "su": 65000, "i": -70000, "iu": 4_000_000_000,
    "bi": -(2**62), "f": 1.5, "d": -2.25, "vc": "héllo", "j": 123456, "k": -2, "bl": b"\x00\xff",
    "bu": Decimal(2**64 - 1), "m": 7, "tx": "text ☃", "vl": "v" * 300,
}


def _image(row: dict[str, Any]) -> bytes:
    vc, tx, vl = (str(row[n]).encode() for n in ("vc", "tx", "vl"))
    image: bytes = (
        b"\x00\x00\x00"  # no NULLs (17 columns: 3 bitmap bytes)
        + struct.pack("<bBhHiIqfd", row["ti"], row["tu"], row["si"], row["su"], row["i"],
                      row["iu"], row["bi"], row["f"], row["d"])
        + bytes([len(vc)]) + vc
        + struct.pack("<ihH", row["j"], row["k"], len(row["bl"])) + row["bl"]
        + struct.pack("<Qb", int(row["bu"]), row["m"])
        + struct.pack("<I", len(tx)) + tx
        + struct.pack("<H", len(vl)) + vl
    )
    return image


def test_runs_of_fixed_width_columns_decode_as_column_by_column() -> None:
    fields = [c.name for c in COLUMNS]
    runs = compile_row_codec(_table(*COLUMNS), fields)
    # Nullable columns are never read in runs (a NULL one is absent from the image).
    plain = compile_row_codec(_table(*map(_nullable, COLUMNS)), fields)
    second = {**ROW, "ti": 127, "bi": 2**63 - 1, "vc": "", "bl": b"", "tx": "", "vl": ""}
    event = _rows_event(WRITE_ROWS_V1, _table(*COLUMNS), _image(ROW), _image(second))
    assert rows(event, runs) == rows(event, plain) == [ROW, second]


def test_timestamp_fractions_of_every_precision_are_read_in_place() -> None:
    # TIMESTAMP(fsp): big-endian seconds, then the fraction in 1, 2 or 3 big-endian bytes
    # holding the digits the precision keeps (MySQL my_timestamp_to_binary).
    stored = {1: b"\x32", 2: b"\x2d", 3: b"\x04\xd2", 4: b"\x04\xd3", 5: b"\x01\xe2\x3a",
              6: b"\x01\xe2\x40"}
    micros = {1: 500_000, 2: 450_000, 3: 123_400, 4: 123_500, 5: 123_450, 6: 123_456}
    for fsp, fraction in stored.items():
        table = _table(tm.BinlogColumn(0, "ts", tm.T_TIMESTAMP2, False, fsp=fsp))
        codec = compile_row_codec(table, ["ts"])
        image = b"\x00" + struct.pack(">I", 86_400) + fraction
        value = rows(_rows_event(WRITE_ROWS_V1, table, image), codec)[0]["ts"]
        assert value == dt.datetime(1970, 1, 2, 0, 0, 0, micros[fsp], tzinfo=UTC), fsp


KEYED = _table(
    tm.BinlogColumn(0, "id", tm.T_LONG, False),
    tm.BinlogColumn(1, "@2", tm.T_VARCHAR, True, length=40, collation=UTF8MB4),
)


def _keyed_image(key: int, note: str | None) -> bytes:
    if note is None:
        return b"\x02" + struct.pack("<i", key)
    return b"\x00" + struct.pack("<i", key) + bytes([len(note)]) + note.encode()


def test_updates_come_as_pairs_with_the_old_key_only_when_the_key_changed() -> None:
    codec = compile_row_codec(KEYED, ["id", "note_2"], key_fields=["id"])
    event = _rows_event(
        UPDATE_ROWS_V1, KEYED,
        _keyed_image(1, "a"), _keyed_image(1, None),  # same key
        _keyed_image(2, "b"), _keyed_image(3, "b"),  # key 2 becomes 3
    )
    assert update_pairs(event, codec) == [
        ({"id": 1, "note_2": "a"}, {"id": 1, "note_2": None}, {"id": 1}, None),
        ({"id": 2, "note_2": "b"}, {"id": 3, "note_2": "b"}, {"id": 3}, {"id": 2}),
    ]
    images = rows(event, codec)
    assert [pair[:2] for pair in update_pairs(event, codec)] == [
        (images[0], images[1]), (images[2], images[3])
    ]


def test_written_rows_come_with_their_keys_whatever_the_key_names() -> None:
    codec = compile_row_codec(KEYED, ["id", "it's"], key_fields=["it's", "id"])
    event = _rows_event(WRITE_ROWS_V1, KEYED, _keyed_image(4, "x"), _keyed_image(5, None))
    assert "it's" not in codec.source
    assert keyed_rows(event, codec) == [
        ({"id": 4, "it's": "x"}, {"it's": "x", "id": 4}),
        ({"id": 5, "it's": None}, {"it's": None, "id": 5}),
    ]
    table_without_key = compile_row_codec(KEYED, ["id", "n"])
    assert [key for _, key in keyed_rows(event, table_without_key)] == [{}, {}]


# -- the stream: a TABLE_MAP decoded once, and again after DDL ---------------------------------

DB = TRANSACTIONS_DB
EVENTS = load_events("transactions")
PRELUDE, BODY = EVENTS[:2], EVENTS[2:]


class CountingCatalog(Catalog):
    """The catalog, counting the TABLE_MAPs it is asked to build a table for."""

    asked = 0

    def table(self, table_map: TableMap) -> CapturedTable:
        self.asked += 1
        return super().table(table_map)


def _records(stream: ChangeStream, events: list[bytes]) -> list[SourceRecord]:
    out: list[SourceRecord] = []
    stream.feed(events, out, 0)
    return out


def test_a_repeated_table_map_is_decoded_once_and_again_after_ddl_on_its_table() -> None:
    first_rows = next(i for i, e in enumerate(BODY) if e[4] in (23, 24, 25, 30, 31, 32))
    table_map, rows_event = BODY[first_rows - 1], BODY[first_rows]
    assert table_map[4] == 19
    catalog = transactions_catalog(CountingCatalog)
    stream = ChangeStream(
        flavor="mariadb", start=BinlogPosition("bin.000001", start_position(BODY[0]), None),
        catalog=catalog, partition={"server": "shop"},
    )
    _records(stream, PRELUDE)
    once = _records(stream, [table_map, rows_event])
    again = _records(stream, [table_map, rows_event, table_map, rows_event])
    assert catalog.asked == 1
    assert [r.value for r in again] == [r.value for r in once] * 2
    # DDL on the table forgets its TABLE_MAP: the same bytes are decoded anew, and a rows
    # event without its TABLE_MAP again is refused rather than decoded with a stale one.
    _records(stream, [query_event(DB, "ALTER TABLE orders ADD COLUMN x INT")])
    after_ddl = _records(stream, [table_map, rows_event])
    assert catalog.asked == 2
    assert [r.value for r in after_ddl] == [r.value for r in once]


@pytest.mark.parametrize(
    ("precision", "scale", "raw", "expected"),
    [
        (14, 4, "810DFB38D204D2", "1234567890.1234"),
        (14, 4, "7EF204C72DFB2D", "-1234567890.1234"),
        (5, 2, "800000", "0.00"),
        (1, 0, "7E", "-1"),
        (12, 2, "80000030392D", "12345.45"),
        (18, 9, "8000007B075BCD15", "123.123456789"),
    ],
)
def test_decimals_decoded_by_generated_code_equal_the_reader(
    precision: int, scale: int, raw: str, expected: str
) -> None:
    table = _table(tm.BinlogColumn(0, "v", tm.T_NEWDECIMAL, False, precision=precision,
                                   scale=scale))
    data = bytes.fromhex(raw)
    value = rows(_rows_event(WRITE_ROWS_V1, table, b"\x00" + data), compile_row_codec(table, ["v"]))
    assert value == [{"v": decimal_reader(precision, scale)(data)}]
    assert str(value[0]["v"]) == expected
