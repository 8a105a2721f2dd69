"""Row images and TABLE_MAPs decoded from captured MariaDB events and hand-made bytes."""

from __future__ import annotations

import datetime as dt
import json
import struct
from decimal import Decimal
from typing import Any

import pytest

from connectors.mysql import _tablemap as tm
from connectors.mysql._binlog import (
    DELETE_ROWS_V1,
    ROWS_EVENTS,
    TABLE_MAP,
    UPDATE_ROWS_V1,
    WRITE_ROWS_V1,
    BinlogDecodeError,
)
from connectors.mysql._jsonb import json_text
from connectors.mysql._rowcodec import RowCodec, compile_row_codec, rows
from connectors.mysql._values import decimal_reader, decimal_size
from liberate.errors import RecordError, UnsupportedTypeError
from tests.unit._binlog_fixtures import event_type, header, load_events

UTC = dt.UTC

#: the first row of the all_types scenario, as the binlog must give it back
ALL_TYPES_ROW: dict[str, Any] = {
    "id": 1, "ti": -128, "tu": 255, "si": -32768, "su": 65535, "mi": -8388608, "mu": 16777215,
    "i": -2147483648, "iu": 4294967295, "bi": -9223372036854775808,
    "bu": Decimal("18446744073709551615"), "f": 1.5, "d": -2.25,
    "dec1": Decimal("-1234567.891"),
    "dec2": Decimal("-12345678901234567890123456789012345.123456789012345678901234567890"),
    "dec3": Decimal("99999"),
    "dt0": dt.datetime(2024, 2, 29, 23, 59, 59),
    "dt3": dt.datetime(1999, 12, 31, 23, 59, 59, 123000),
    "dt6": dt.datetime(2038, 1, 19, 3, 14, 7, 999999),
    "ts0": dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
    "ts2": dt.datetime(2001, 2, 3, 4, 5, 6, 70000, tzinfo=UTC),
    "ts6": dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=UTC),
    # TIME is a duration: signed microseconds
    "tm0": 0, "tm1": 86_399_900_000, "tm4": 45_296_789_100, "tm6": 3_723_000_004,
    "dd": dt.date(9999, 12, 31), "y": 2155, "ch": "ab", "chl": "é" * 100, "vc": "x" * 300,
    "vl": "café", "tx": "text ☃", "lt": "long text", "bin": b"ab\x00\x00", "vb": b"\x00\xff",
    "bl": b"\xde\xad\xbe\xef", "en": "medium", "st": "a,d", "bt": b"\x02\x01",
    "js": '{"k": [1, 2.5, null]}',
}


def _decoded(name: str) -> list[tuple[int, list[dict[str, Any]]]]:
    """(event type, rows) of every rows event of a captured scenario."""
    codecs: dict[int, RowCodec] = {}
    result = []
    for event in load_events(name):
        if event_type(event) == TABLE_MAP:
            table = tm.table_map(event)
            codecs[table.table_id] = compile_row_codec(table, [c.name for c in table.columns])
        elif event_type(event) in ROWS_EVENTS:
            result.append((event_type(event), rows(event, codecs[tm.table_id(event)])))
    return result


def test_table_map_carries_names_types_nullability_key_and_charsets() -> None:
    event = next(e for e in load_events("all_types") if event_type(e) == TABLE_MAP)
    table = tm.table_map(event)
    assert (table.database, table.table, table.named) == ("cap_all_types", "all_types", True)
    assert table.primary_key == (0,)
    by_name = {c.name: c for c in table.columns}
    assert list(by_name)[:4] == ["id", "ti", "tu", "si"]
    assert not by_name["id"].nullable and by_name["ti"].nullable
    assert by_name["tu"].unsigned and not by_name["ti"].unsigned and by_name["y"].unsigned
    assert (by_name["dec2"].precision, by_name["dec2"].scale) == (65, 30)
    assert (by_name["ts2"].fsp, by_name["tm6"].fsp) == (2, 6)
    assert by_name["en"].values == ("small", "medium", "large")
    assert by_name["st"].values == ("a", "b", "c", "d")
    assert by_name["chl"].type == tm.T_STRING and by_name["chl"].length == 400
    assert by_name["bin"].is_binary and not by_name["ch"].is_binary
    assert tm.python_encoding(by_name["vl"].collation or 0) == "cp1252"
    assert by_name["bt"].bits == 10


def test_every_column_type_decodes_to_the_value_inserted() -> None:
    kind, images = _decoded("all_types")[0]
    assert kind == WRITE_ROWS_V1
    assert images == [ALL_TYPES_ROW]


def test_a_row_of_nulls_decodes_to_none_except_the_key() -> None:
    _, images = _decoded("all_types")[1]
    assert images[0]["id"] == 2
    assert all(value is None for name, value in images[0].items() if name != "id")


def test_update_gives_before_and_after_images_and_delete_the_before_image() -> None:
    (_, _), (_, _), (update_kind, update), (delete_kind, delete) = _decoded("all_types")
    assert update_kind == UPDATE_ROWS_V1 and delete_kind == DELETE_ROWS_V1
    before, after = update
    assert before == ALL_TYPES_ROW
    assert after == {**ALL_TYPES_ROW, "i": 7, "vc": "changed",
                     "ts0": dt.datetime(2020, 1, 1, tzinfo=UTC)}
    assert [row["id"] for row in delete] == [2]


def test_a_partial_row_image_is_refused_with_the_setting_to_change() -> None:
    events = load_events("all_types")
    table = tm.table_map(next(e for e in events if event_type(e) == TABLE_MAP))
    codec = compile_row_codec(table, [c.name for c in table.columns])
    insert = bytearray(next(e for e in events if event_type(e) == WRITE_ROWS_V1))
    # The columns-present bitmap follows the post-header and the column count (41 < 251).
    insert[19 + 8 + 1] &= 0xFE
    with pytest.raises(BinlogDecodeError, match="binlog_row_image=FULL"):
        rows(bytes(insert), codec)


# -- hand-made tables -------------------------------------------------------------------------


def _table(*columns: tm.BinlogColumn) -> tm.TableMap:
    return tm.TableMap(7, "db", "t", columns, (0,), True)


def _rows_event(table: tm.TableMap, *images: bytes) -> bytes:
    count = len(table.columns)
    bitmap = ((1 << count) - 1).to_bytes((count + 7) // 8, "little")
    body = (7).to_bytes(6, "little") + b"\x00\x00" + bytes([count]) + bitmap + b"".join(images)
    return header(WRITE_ROWS_V1, body)


def _decode_one(column: tm.BinlogColumn, value: bytes) -> Any:
    table = _table(tm.BinlogColumn(0, "v", column.type, False, column.unsigned, column.length,
                                   column.precision, column.scale, column.fsp, column.bits,
                                   column.collation, column.values))
    codec = compile_row_codec(table, ["v"])
    return rows(_rows_event(table, b"\x00" + value), codec)[0]["v"]


@pytest.mark.parametrize(
    ("precision", "scale", "raw", "expected"),
    [
        # The example of MySQL's decimal2bin comment: 1234567890.1234 as DECIMAL(14,4).
        (14, 4, "810DFB38D204D2", "1234567890.1234"),
        (14, 4, "7EF204C72DFB2D", "-1234567890.1234"),
        (5, 2, "800000", "0.00"),
        (1, 0, "81", "1"),
        (1, 0, "7E", "-1"),
    ],
)
def test_packed_decimals_decode_exactly(precision: int, scale: int, raw: str, expected: str
                                        ) -> None:
    data = bytes.fromhex(raw)
    assert decimal_size(precision, scale) == len(data)
    value = decimal_reader(precision, scale)(data)
    assert value == Decimal(expected) and str(value) == expected


@pytest.mark.parametrize(
    ("raw", "fsp", "micros"),
    [
        ("800000", 0, 0),
        ("7FFFFF", 0, -1_000_000),  # -00:00:01
        ("B46000", 0, 838 * 3_600_000_000),  # 838:00:00
        ("7FFFFECE", 2, -1_500_000),  # -00:00:01.50: the fraction borrows from the seconds
        ("80000132", 2, 1_500_000),  # 00:00:01.50
        ("7FFFFFFFFFFF", 6, -1),  # -00:00:00.000001
        ("4B9105000000", 6, -3_020_399_000_000),  # -838:59:59.000000, MySQL's minimum
        ("B46EFB000000", 6, 3_020_399_000_000),  # 838:59:59.000000, MySQL's maximum
    ],
)
def test_time_is_a_signed_duration_in_microseconds(raw: str, fsp: int, micros: int) -> None:
    column = tm.BinlogColumn(0, "v", tm.T_TIME2, False, fsp=fsp)
    assert _decode_one(column, bytes.fromhex(raw)) == micros


def test_zero_dates_are_record_errors_not_wrong_dates() -> None:
    with pytest.raises(RecordError, match="zero date"):
        _decode_one(tm.BinlogColumn(0, "v", tm.T_DATE, False), b"\x00\x00\x00")
    zero_datetime = (0x8000000000).to_bytes(5, "big")
    with pytest.raises(RecordError, match="zero date"):
        _decode_one(tm.BinlogColumn(0, "v", tm.T_DATETIME2, False), zero_datetime)
    with pytest.raises(RecordError, match="zero date"):
        _decode_one(tm.BinlogColumn(0, "v", tm.T_TIMESTAMP2, False), b"\x00\x00\x00\x00")


def test_text_that_is_not_valid_in_its_charset_is_a_record_error() -> None:
    column = tm.BinlogColumn(0, "v", tm.T_VARCHAR, False, length=40, collation=45)
    with pytest.raises(RecordError, match="not valid in its character set"):
        _decode_one(column, b"\x02\xff\xfe")


def test_old_temporal_formats_decode() -> None:
    assert _decode_one(tm.BinlogColumn(0, "v", tm.T_DATETIME, False),
                       struct.pack("<Q", 20240102030405)) == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert _decode_one(tm.BinlogColumn(0, "v", tm.T_TIMESTAMP, False),
                       struct.pack("<I", 86400)) == dt.datetime(1970, 1, 2, tzinfo=UTC)
    assert _decode_one(tm.BinlogColumn(0, "v", tm.T_TIME, False),
                       (123456).to_bytes(3, "little")) == 45_296_000_000


def test_an_unreadable_column_type_is_refused_when_the_decoder_is_built() -> None:
    with pytest.raises(UnsupportedTypeError, match="GEOMETRY"):
        compile_row_codec(_table(tm.BinlogColumn(0, "g", tm.T_GEOMETRY, False, length=4)), ["g"])


def test_nulls_of_many_columns_use_a_multi_byte_bitmap() -> None:
    columns = [tm.BinlogColumn(i, f"c{i}", tm.T_TINY, True) for i in range(10)]
    table = _table(*columns)
    codec = compile_row_codec(table, [c.name for c in columns])
    # Columns 0 and 9 are NULL; the others hold their index.
    image = (1 | 1 << 9).to_bytes(2, "little") + bytes(range(1, 9))
    row = rows(_rows_event(table, image), codec)[0]
    assert row == {"c0": None, **{f"c{i}": i for i in range(1, 9)}, "c9": None}


# -- MySQL binary JSON --------------------------------------------------------------------


def test_binary_json_object_with_nested_array_becomes_compact_text() -> None:
    # {"a": 1, "b": [true, null, "x"], "c": 2.5} as a small object (offsets from byte 1).
    obj = bytes.fromhex(
        "0300" "3300"  # 3 members, 51 bytes
        "1900 0100" "1a00 0100" "1b00 0100"  # keys at 25, 26, 27, one byte each
        "05 0100" "02 1c00" "0b 2b00"  # a: inline int16 1; b: array at 28; c: double at 43
    ) + b"abc"
    array = bytes.fromhex(
        "0300" "0f00"  # 3 elements, 15 bytes
        "04 0100" "04 0000" "0c 0d00"  # true, null, string at 13
    ) + b"\x01x"
    data = b"\x00" + obj + array + struct.pack("<d", 2.5)
    assert len(obj + array) + 8 == 51
    text = json_text(data)
    assert text == '{"a":1,"b":[true,null,"x"],"c":2.5}'
    assert json.loads(text) == {"a": 1, "b": [True, None, "x"], "c": 2.5}


def test_binary_json_scalars() -> None:
    assert json_text(b"\x0c\x05hello") == '"hello"'
    assert json_text(b"\x04\x02") == "false"
    assert json_text(b"\x09" + struct.pack("<q", -(2**40))) == str(-(2**40))
    assert json_text(b"") == "null"


def test_field_names_that_are_not_identifiers_still_name_the_values() -> None:
    table = _table(tm.BinlogColumn(0, "@1", tm.T_TINY, False),
                   tm.BinlogColumn(1, "@2", tm.T_TINY, True))
    codec = compile_row_codec(table, ["@1", "it's"])
    assert "'@1'" not in codec.source and "it's" not in codec.source
    assert rows(_rows_event(table, b"\x00\x05\x06"), codec) == [{"@1": 5, "it's": 6}]
