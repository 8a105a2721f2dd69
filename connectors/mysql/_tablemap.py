"""TABLE_MAP events from bytes: which table a table id names and how its columns are stored.

Every rows event is preceded (in the same transaction) by a TABLE_MAP of its table id. The
event carries the binlog type and storage metadata of every column, which columns may be
NULL, and, with ``binlog_row_metadata=FULL`` (MySQL 8.0.14+, MariaDB 10.5+), the optional
metadata this connector relies on: column names, signedness, character sets, ENUM/SET values
and the primary key. Names come from the binlog, so rows written before an ALTER are labelled
with the columns they were written with.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.mysql._binlog import HEADER_SIZE, BinlogDecodeError, length_encoded_int

# Column types as the binlog writes them (MySQL field_types.h).
T_DECIMAL = 0
T_TINY = 1
T_SHORT = 2
T_LONG = 3
T_FLOAT = 4
T_DOUBLE = 5
T_NULL = 6
T_TIMESTAMP = 7
T_LONGLONG = 8
T_INT24 = 9
T_DATE = 10
T_TIME = 11
T_DATETIME = 12
T_YEAR = 13
T_NEWDATE = 14
T_VARCHAR = 15
T_BIT = 16
T_TIMESTAMP2 = 17
T_DATETIME2 = 18
T_TIME2 = 19
T_JSON = 245
T_NEWDECIMAL = 246
T_ENUM = 247
T_SET = 248
T_TINY_BLOB = 249
T_MEDIUM_BLOB = 250
T_LONG_BLOB = 251
T_BLOB = 252
T_VAR_STRING = 253
T_STRING = 254
T_GEOMETRY = 255

TYPE_NAMES = {
    T_DECIMAL: "DECIMAL(old)", T_TINY: "TINYINT", T_SHORT: "SMALLINT", T_LONG: "INT",
    T_FLOAT: "FLOAT", T_DOUBLE: "DOUBLE", T_NULL: "NULL", T_TIMESTAMP: "TIMESTAMP(old)",
    T_LONGLONG: "BIGINT", T_INT24: "MEDIUMINT", T_DATE: "DATE", T_TIME: "TIME(old)",
    T_DATETIME: "DATETIME(old)", T_YEAR: "YEAR", T_NEWDATE: "DATE", T_VARCHAR: "VARCHAR",
    T_BIT: "BIT", T_TIMESTAMP2: "TIMESTAMP", T_DATETIME2: "DATETIME", T_TIME2: "TIME",
    T_JSON: "JSON", T_NEWDECIMAL: "DECIMAL", T_ENUM: "ENUM", T_SET: "SET", T_BLOB: "BLOB",
    T_TINY_BLOB: "TINYBLOB", T_MEDIUM_BLOB: "MEDIUMBLOB", T_LONG_BLOB: "LONGBLOB",
    T_VAR_STRING: "VARCHAR", T_STRING: "CHAR", T_GEOMETRY: "GEOMETRY",
}

#: the columns SIGNEDNESS has a bit for (YEAR included: verified on MariaDB 10.11)
NUMERIC_TYPES = frozenset(
    {T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_NEWDECIMAL, T_FLOAT, T_DOUBLE, T_YEAR}
)
_CHARACTER_TYPES = frozenset({T_STRING, T_VAR_STRING, T_VARCHAR, T_BLOB})
BINARY_COLLATION = 63

# Optional metadata field types (Table_map_log_event::Optional_metadata_field_type).
_SIGNEDNESS = 1
_DEFAULT_CHARSET = 2
_COLUMN_CHARSET = 3
_COLUMN_NAME = 4
_SET_STR_VALUE = 5
_ENUM_STR_VALUE = 6
_SIMPLE_PRIMARY_KEY = 8
_PRIMARY_KEY_WITH_PREFIX = 9
_ENUM_AND_SET_DEFAULT_CHARSET = 10
_ENUM_AND_SET_COLUMN_CHARSET = 11


@dataclass(frozen=True, slots=True)
class BinlogColumn:
    """One column as a TABLE_MAP describes it.

    ``type`` is the real type (ENUM and SET resolved from the CHAR they are logged as);
    ``length`` the maximum byte length of strings, the length-prefix size of BLOB/JSON, or
    the pack length of ENUM/SET; ``precision``/``scale`` for DECIMAL, ``fsp`` for temporal
    types, ``bits`` for BIT. ``collation`` is the collation id of text columns (63: binary).
    """

    index: int
    name: str
    type: int
    nullable: bool
    unsigned: bool = False
    length: int = 0
    precision: int = 0
    scale: int = 0
    fsp: int = 0
    bits: int = 0
    collation: int | None = None
    values: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type {self.type}")

    @property
    def is_binary(self) -> bool:
        return self.collation == BINARY_COLLATION


@dataclass(frozen=True, slots=True)
class TableMap:
    """A decoded TABLE_MAP: the table id, its database and table, and its columns.

    ``named`` is False when the event has no column names (``binlog_row_metadata=MINIMAL``);
    the columns are then called ``@1``, ``@2``... and cannot be matched to a schema.
    """

    table_id: int
    database: str
    table: str
    columns: tuple[BinlogColumn, ...]
    primary_key: tuple[int, ...]
    named: bool


def table_id(event: memoryview | bytes, size: int = 6) -> int:
    """The table id of a TABLE_MAP or rows event (``size`` from the format description)."""
    return int.from_bytes(event[HEADER_SIZE : HEADER_SIZE + size], "little")


def table_map(
    event: memoryview | bytes,
    *,
    table_id_size: int = 6,
    mariadb: bool = True,
    encodings: Mapping[int, str] | None = None,
) -> TableMap:
    """Decode a TABLE_MAP event (without its checksum trailer).

    ``encodings`` maps collation ids to Python codecs (see ``encodings_from``); PyMySQL's
    table of MySQL collations is used for ids it does not hold.
    """
    data = bytes(event)
    try:
        return _table_map(data, table_id_size, mariadb, encodings or {})
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise BinlogDecodeError(f"malformed TABLE_MAP event: {exc}") from exc


def _table_map(data: bytes, id_size: int, mariadb: bool, encodings: Mapping[int, str]
               ) -> TableMap:
    tid = int.from_bytes(data[HEADER_SIZE : HEADER_SIZE + id_size], "little")
    offset = HEADER_SIZE + id_size + 2
    db_len = data[offset]
    database = data[offset + 1 : offset + 1 + db_len].decode("utf-8")
    offset += db_len + 2
    tbl_len = data[offset]
    table = data[offset + 1 : offset + 1 + tbl_len].decode("utf-8")
    offset += tbl_len + 2
    count, offset = length_encoded_int(data, offset)
    types = data[offset : offset + count]
    offset += count
    meta_len, offset = length_encoded_int(data, offset)
    meta_end = offset + meta_len
    raw: list[_RawColumn] = []
    for binlog_type in types:
        column, offset = _column_metadata(binlog_type, data, offset)
        raw.append(column)
    if offset != meta_end:
        raise ValueError(f"column metadata of {database}.{table} has an unexpected length")
    null_bits = data[offset : offset + (count + 7) // 8]
    offset += (count + 7) // 8
    optional = _optional_metadata(data, offset, raw, mariadb, encodings)
    names = optional.names if len(optional.names) == count else [f"@{i + 1}" for i in range(count)]
    columns = tuple(
        BinlogColumn(
            index=i,
            name=names[i],
            type=col.type,
            nullable=bool(null_bits[i // 8] & (1 << (i % 8))),
            unsigned=optional.unsigned.get(i, False),
            length=col.length,
            precision=col.precision,
            scale=col.scale,
            fsp=col.fsp,
            bits=col.bits,
            collation=optional.collations.get(i),
            values=optional.values.get(i, ()),
        )
        for i, col in enumerate(raw)
    )
    return TableMap(
        table_id=tid,
        database=database,
        table=table,
        columns=columns,
        primary_key=tuple(optional.primary_key),
        named=len(optional.names) == count,
    )


@dataclass(slots=True)
class _RawColumn:
    type: int
    length: int = 0
    precision: int = 0
    scale: int = 0
    fsp: int = 0
    bits: int = 0


def _column_metadata(binlog_type: int, data: bytes, offset: int) -> tuple[_RawColumn, int]:
    if binlog_type in (T_FLOAT, T_DOUBLE):
        return _RawColumn(binlog_type, length=data[offset]), offset + 1
    if binlog_type in (T_BLOB, T_GEOMETRY, T_JSON, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB):
        return _RawColumn(binlog_type, length=data[offset]), offset + 1
    if binlog_type in (T_TIMESTAMP2, T_DATETIME2, T_TIME2):
        return _RawColumn(binlog_type, fsp=data[offset]), offset + 1
    if binlog_type in (T_VARCHAR, T_VAR_STRING):
        return _RawColumn(binlog_type, length=data[offset] | data[offset + 1] << 8), offset + 2
    if binlog_type == T_NEWDECIMAL:
        return _RawColumn(binlog_type, precision=data[offset], scale=data[offset + 1]), offset + 2
    if binlog_type == T_BIT:
        bits = data[offset + 1] * 8 + data[offset]
        return _RawColumn(binlog_type, bits=bits, length=(bits + 7) // 8), offset + 2
    if binlog_type in (T_STRING, T_ENUM, T_SET):
        byte0, byte1 = data[offset], data[offset + 1]
        # CHAR longer than 255 bytes folds two length bits into the type byte (Field_string::
        # do_save_field_metadata): real type = byte0 | 0x30, length bits = the flipped ones.
        if byte0 & 0x30 != 0x30:
            real = byte0 | 0x30
            length = byte1 | (((byte0 & 0x30) ^ 0x30) << 4)
        else:
            real, length = byte0, byte1
        return _RawColumn(real, length=length), offset + 2
    return _RawColumn(binlog_type), offset


@dataclass(slots=True)
class _Optional:
    names: list[str]
    unsigned: dict[int, bool]
    collations: dict[int, int]
    values: dict[int, tuple[str, ...]]
    primary_key: list[int]


def _optional_metadata(
    data: bytes,
    offset: int,
    columns: list[_RawColumn],
    mariadb: bool,
    encodings: Mapping[int, str],
) -> _Optional:
    result = _Optional([], {}, {}, {}, [])
    numeric = [i for i, c in enumerate(columns) if c.type in NUMERIC_TYPES]
    character = [i for i, c in enumerate(columns) if _is_character(c.type, mariadb)]
    enum_or_set = [i for i, c in enumerate(columns) if c.type in (T_ENUM, T_SET)]
    enums = [i for i, c in enumerate(columns) if c.type == T_ENUM]
    sets = [i for i, c in enumerate(columns) if c.type == T_SET]
    raw_values: dict[int, list[bytes]] = {}
    while offset < len(data):
        field = data[offset]
        length, offset = length_encoded_int(data, offset + 1)
        value = data[offset : offset + length]
        offset += length
        if field == _SIGNEDNESS:
            for n, index in enumerate(numeric):
                result.unsigned[index] = bool(value[n // 8] & (0x80 >> (n % 8)))
        elif field in (_DEFAULT_CHARSET, _ENUM_AND_SET_DEFAULT_CHARSET):
            targets = character if field == _DEFAULT_CHARSET else enum_or_set
            result.collations.update(_default_charsets(value, targets))
        elif field in (_COLUMN_CHARSET, _ENUM_AND_SET_COLUMN_CHARSET):
            targets = character if field == _COLUMN_CHARSET else enum_or_set
            result.collations.update(zip(targets, _ints(value), strict=False))
        elif field == _COLUMN_NAME:
            result.names = [name.decode("utf-8") for name in _strings(value)]
        elif field in (_SET_STR_VALUE, _ENUM_STR_VALUE):
            targets = sets if field == _SET_STR_VALUE else enums
            raw_values.update(zip(targets, _value_lists(value), strict=False))
        elif field == _SIMPLE_PRIMARY_KEY:
            result.primary_key = _ints(value)
        elif field == _PRIMARY_KEY_WITH_PREFIX:
            result.primary_key = _ints(value)[0::2]
    for index, items in raw_values.items():
        collation = result.collations.get(index)
        encoding = "utf-8" if collation is None else python_encoding(collation, encodings)
        result.values[index] = tuple(item.decode(encoding) for item in items)
    return result


def _is_character(binlog_type: int, mariadb: bool) -> bool:
    return binlog_type in _CHARACTER_TYPES or (mariadb and binlog_type == T_GEOMETRY)


def _ints(value: bytes) -> list[int]:
    items: list[int] = []
    offset = 0
    while offset < len(value):
        item, offset = length_encoded_int(value, offset)
        items.append(item)
    return items


def _strings(value: bytes) -> list[bytes]:
    items: list[bytes] = []
    offset = 0
    while offset < len(value):
        size, offset = length_encoded_int(value, offset)
        items.append(value[offset : offset + size])
        offset += size
    return items


def _value_lists(value: bytes) -> list[list[bytes]]:
    lists: list[list[bytes]] = []
    offset = 0
    while offset < len(value):
        count, offset = length_encoded_int(value, offset)
        items: list[bytes] = []
        for _ in range(count):
            size, offset = length_encoded_int(value, offset)
            items.append(value[offset : offset + size])
            offset += size
        lists.append(items)
    return lists


def _default_charsets(value: bytes, targets: list[int]) -> dict[int, int]:
    ints = _ints(value)
    if not ints:
        return {}
    collations = dict.fromkeys(targets, ints[0])
    for position, collation in zip(ints[1::2], ints[2::2], strict=False):
        if position < len(targets):
            collations[targets[position]] = collation
    return collations


def python_encoding(collation: int, encodings: Mapping[int, str] | None = None) -> str:
    """The Python codec of a collation id: from ``encodings``, else PyMySQL's table.

    Raises ``BinlogDecodeError`` for a collation neither knows (its text cannot be decoded).
    """
    if encodings and collation in encodings:
        return encodings[collation]
    from pymysql.charset import charset_by_id

    try:
        charset_name: str = charset_by_id(collation).name
    except KeyError as exc:
        raise BinlogDecodeError(
            f"unknown collation id {collation}: cannot decode the text of this column",
            hint="report the server version and the column's collation",
        ) from exc
    return encoding_for_charset(charset_name)


#: MySQL character sets whose Python codec has another name
_CODEC_NAMES = {
    "utf8": "utf-8", "utf8mb3": "utf-8", "utf8mb4": "utf-8", "latin1": "cp1252",
    "koi8r": "koi8_r", "koi8u": "koi8_u", "binary": "latin-1", "ucs2": "utf-16-be",
    "utf16": "utf-16-be", "utf16le": "utf-16-le", "utf32": "utf-32-be", "ascii": "ascii",
    "sjis": "shift_jis", "ujis": "euc_jp", "eucjpms": "euc_jp", "gb2312": "gb2312",
    "gbk": "gbk", "gb18030": "gb18030", "big5": "big5", "euckr": "euc_kr", "cp932": "cp932",
    "latin2": "iso8859-2", "latin5": "iso8859-9", "latin7": "iso8859-13", "greek": "iso8859-7",
}


#: bytes per character of the multi-byte MySQL character sets (MySQL's mbmaxlen); others: 1
_MAX_BYTES_PER_CHAR = {
    "utf8mb4": 4, "utf8": 3, "utf8mb3": 3, "ucs2": 2, "utf16": 4, "utf16le": 4, "utf32": 4,
    "big5": 2, "sjis": 2, "cp932": 2, "gbk": 2, "gb2312": 2, "euckr": 2, "ujis": 3,
    "eucjpms": 3, "gb18030": 4,
}


def char_length(column: BinlogColumn) -> int:
    """The declared length of a CHAR/VARCHAR column, in characters (the binlog gives bytes)."""
    if column.collation is None or column.is_binary:
        return column.length
    from pymysql.charset import charset_by_id

    try:
        charset = charset_by_id(column.collation).name.lower()
    except KeyError:
        return column.length
    return column.length // _MAX_BYTES_PER_CHAR.get(charset, 1)


def encoding_for_charset(charset: str) -> str:
    """The Python codec of a MySQL character set name (``latin1`` is cp1252, as in MySQL)."""
    name = _CODEC_NAMES.get(charset.lower(), charset.lower())
    try:
        return codecs.lookup(name).name
    except LookupError as exc:
        raise BinlogDecodeError(
            f"character set {charset} has no Python codec",
            hint="convert the column to utf8mb4, or exclude the table",
        ) from exc


def encodings_from(rows: Mapping[int, str]) -> dict[int, str]:
    """``encodings`` for ``table_map`` from ``collation id -> character set`` rows of the
    server (``information_schema.COLLATIONS``); sets without a Python codec are left out."""
    result: dict[int, str] = {}
    for collation, charset in rows.items():
        try:
            result[collation] = encoding_for_charset(charset)
        except BinlogDecodeError:
            continue
    return result
