"""The type contract: database column types to Avro types and back (docs/types.md).

``avro_column`` maps one reflected SQLAlchemy column to an Avro field type plus the converter
that turns a driver value into the value fastavro encodes; ``sql_type`` maps an Avro field type
back to the SQLAlchemy type a sink creates. Both directions live here so the contract has one
home. A type with no mapping raises ``UnsupportedTypeError`` naming the column.

Converters exist for the drivers that return something else than the Avro-ready value (MySQL
bytes for text, floats for decimals, naive datetimes). Most drivers already return it, so
``unchanged_type`` names the type each converter returns as it is: the per-row paths skip the
call with a type check, which costs a fifth of the call.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from liberate.errors import RecordError, UnsupportedTypeError

Converter = Callable[[Any], Any]

#: marker on string fields that hold JSON text (Debezium's semantic type name)
JSON_NAME = "io.debezium.data.Json"
#: marker on string fields that hold an unconstrained NUMERIC as exact decimal text
VARIABLE_DECIMAL_NAME = "liberate.data.VariableDecimal"
#: field attribute keeping the original column name when it is not a valid Avro name
COLUMN_ATTRIBUTE = "liberate.column"
#: marker on long fields that hold a MySQL TIME: a signed duration in microseconds
#: (-838:59:59..838:59:59), Debezium's semantic type name
MICRO_TIME_NAME = "io.debezium.time.MicroTime"
#: attribute on string types declaring the column's length in characters (VARCHAR(n), CHAR(n))
LENGTH_ATTRIBUTE = "liberate.length"
#: attribute on a nullable field whose source column is NOT NULL: null in an event means "no
#: value sent" (a key-only before-image, an unchanged TOAST value), never a NULL in the database,
#: so a sink creates the column NOT NULL
NOT_NULL_ATTRIBUTE = "liberate.not_null"

_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UTC = dt.UTC
_float_text_kept = threading.local()


def _json_float(text: str) -> float:
    value = float(text)
    if repr(value) != text:  # 12.50, 1e5, or more digits than a double holds
        _float_text_kept.lost = True
    return value


_JSON_DECODER = json.JSONDecoder(parse_float=_json_float)


class _NumberText(str):
    """A JSON number's text as read (``parse_float`` of ``_EXACT_JSON_DECODER``)."""


_EXACT_JSON_DECODER = json.JSONDecoder(parse_float=_NumberText)
# The decoder's C scanner: json.loads minus the whitespace handling (typeshed omits it).
_json_scan: Callable[[str, int], tuple[Any, int]] = getattr(_JSON_DECODER, "scan_once")  # noqa: B009


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, built once.

    json.dumps builds an encoder and its C core on every call: half the cost for small values.
    The C core is CPython's (``json.encoder.c_make_encoder``); where it is missing, the
    pure-Python encoder writes the same text. No circular-reference bookkeeping: values parsed
    from a database cannot refer to themselves.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    core = make(
        None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(core(value, 0))

    return encode


_json_dumps = _json_encoder()


@dataclass(frozen=True, slots=True)
class AvroColumn:
    """One column as Avro sees it: field type (without the null union) and value converter."""

    type: Any
    convert: Converter | None = None


def avro_name(name: str) -> str:
    """A valid Avro name for ``name``: invalid characters become ``_``; no leading digit."""
    if _AVRO_NAME.match(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not cleaned or not (cleaned[0].isalpha() or cleaned[0] == "_"):
        cleaned = "_" + cleaned
    return cleaned


def decimal_type(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def avro_column(
    column: sa.Column[Any] | Any, *, where: str, dialect: str | None = None
) -> AvroColumn:
    """The Avro mapping of a reflected column; ``where`` (``table.column``) names it in errors.

    ``dialect`` is the SQLAlchemy dialect name the column was reflected from: SQLite reflects
    its types with the same classes as PostgreSQL but stores every INTEGER in up to 8 bytes and
    every REAL as an 8-byte double, so ``"sqlite"`` widens int to long and float to double.
    PostgreSQL-only types (and domains) map in ``liberate.schema.postgres_types``.
    """
    from liberate.schema import postgres_types  # it builds on this module

    col_type = postgres_types.base_type(column.type)
    mapped_pg = postgres_types.postgres_column(col_type, where=where, dialect=dialect)
    if mapped_pg is not None:
        return mapped_pg
    for kind, mapper in _MAPPERS:
        if isinstance(col_type, kind):
            mapped = mapper(col_type)
            if mapped is not None:
                if dialect == "sqlite":
                    from liberate.schema.sqlite_types import sqlite_column  # builds on this

                    return sqlite_column(mapped)
                if dialect in ("mysql", "mariadb"):
                    return _mysql_values(mapped)
                return mapped
    info = getattr(column, "info", None) or {}
    shown = info.get(postgres_types.TYPE_NAME_INFO) or repr(col_type)
    raise UnsupportedTypeError(
        f"column {where} has type {shown}, which has no Avro mapping yet",
        hint="exclude the column (a custom query selecting supported columns or a cast), "
        "or see docs/types.md for the supported types",
    )


def _mysql_values(mapped: AvroColumn) -> AvroColumn:
    if mapped.type == _DATE and mapped.convert is None:
        # PyMySQL returns a zero date ('0000-00-00') as text: refused, never guessed.
        return AvroColumn(_DATE, _mysql_date)
    return mapped


def _integer(t: sa.Integer) -> AvroColumn:
    unsigned = bool(getattr(t, "unsigned", False))
    if isinstance(t, sa.BigInteger):
        # BIGINT UNSIGNED goes past 2**63-1: exact as decimal(20,0), never wrapped.
        return AvroColumn(decimal_type(20, 0), _to_decimal) if unsigned else AvroColumn("long")
    if isinstance(t, sa.SmallInteger | mysql.TINYINT | mysql.SMALLINT):
        return AvroColumn("int")
    if isinstance(t, mysql.MEDIUMINT):
        return AvroColumn("int")
    return AvroColumn("long") if unsigned else AvroColumn("int")


def _float(t: sa.Float[Any]) -> AvroColumn:
    # MySQL stores every FLOAT, FLOAT(p <= 24) and FLOAT(m, d) in 4 bytes (larger p: DOUBLE).
    if isinstance(t, sa.REAL | mysql.FLOAT):
        return AvroColumn("float", _to_float)
    return AvroColumn("double", _to_float)


def _numeric(t: sa.Numeric[Any]) -> AvroColumn:
    if t.precision is None:
        # Unconstrained NUMERIC has no fixed scale: exact decimal text, never rounded.
        return AvroColumn({"type": "string", "connect.name": VARIABLE_DECIMAL_NAME}, _decimal_text)
    scale = t.scale or 0
    return AvroColumn(decimal_type(t.precision, scale), _to_decimal)


def _string(t: sa.String) -> AvroColumn:
    if isinstance(t, mysql.VARCHAR | mysql.CHAR) and t.length:
        # MySQL enforces the length in characters: a sink creates VARCHAR(n), not TEXT.
        return AvroColumn({"type": "string", LENGTH_ATTRIBUTE: t.length}, _to_str)
    return AvroColumn("string", _to_str)


def _mysql_time(t: mysql.TIME) -> AvroColumn:
    # A MySQL TIME is a duration (-838:59:59..838:59:59), not always a time of day.
    return AvroColumn({"type": "long", "connect.name": MICRO_TIME_NAME}, _duration_micros)


def _mysql_bit(t: mysql.BIT) -> AvroColumn:
    size = (int(t.length or 1) + 7) // 8

    def bit_bytes(value: Any) -> bytes:
        if isinstance(value, int):  # SQLAlchemy's BIT reads an int
            return value.to_bytes(size, "big")
        return bytes(value)

    return AvroColumn("bytes", bit_bytes)


def _datetime(t: sa.DateTime) -> AvroColumn:
    if isinstance(t, mysql.TIMESTAMP):
        # MySQL TIMESTAMP is an instant; sources read it with the session time zone at UTC.
        return AvroColumn({"type": "long", "logicalType": "timestamp-micros"}, _naive_as_utc)
    if t.timezone:
        return AvroColumn({"type": "long", "logicalType": "timestamp-micros"}, _aware)
    return AvroColumn({"type": "long", "logicalType": "local-timestamp-micros"}, _naive)


def _json(t: sa.JSON) -> AvroColumn:
    return AvroColumn({"type": "string", "connect.name": JSON_NAME}, _json_text)


_DATE = {"type": "int", "logicalType": "date"}
_Mapper = Callable[[Any], AvroColumn | None]
_MAPPERS: tuple[tuple[Any, _Mapper], ...] = (
    (sa.Boolean, lambda t: AvroColumn("boolean")),
    # MySQL-only types first (mysql.TIME is a sa.Time).
    (mysql.YEAR, lambda t: AvroColumn("int")),
    (mysql.BIT, _mysql_bit),
    (mysql.TIME, _mysql_time),
    (sa.Integer, _integer),
    # Before Numeric: Float subclasses Numeric in SQLAlchemy 2.0 but no longer in 2.1.
    (sa.Float, _float),
    (sa.Numeric, _numeric),
    (sa.Enum, _string),
    (sa.String, _string),
    (sa.DateTime, _datetime),
    (sa.Date, lambda t: AvroColumn(_DATE)),
    (sa.Time, lambda t: AvroColumn({"type": "long", "logicalType": "time-micros"}, _to_time)),
    (sa.JSON, _json),
    (sa.Uuid, lambda t: AvroColumn({"type": "string", "logicalType": "uuid"}, _uuid_text)),
    # _Binary: also MySQL's TINYBLOB, MEDIUMBLOB and LONGBLOB.
    (sa.LargeBinary | sa.types._Binary, lambda t: AvroColumn("bytes", _to_bytes)),
    (sa.Text, _string),
)


def _to_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _to_float(value: Any) -> float:
    return float(value)


def _decimal_text(value: Any) -> str:
    # Positional notation, as PostgreSQL writes a numeric: 1e-20 is 0.00000000000000000001.
    return format(value if isinstance(value, Decimal) else Decimal(str(value)), "f")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(
                "text column holds bytes that are not valid UTF-8",
                hint="fix the data or the column's character set",
            ) from exc
    return str(value)


def _to_bytes(value: Any) -> bytes:
    return bytes(value)


def _not_a_date(value: Any) -> RecordError:
    # PyMySQL hands over dates it cannot build (MySQL zero dates) as their text.
    return RecordError(
        f"date {value} is not a real date (a MySQL zero date?)",
        hint="replace zero dates with NULL, or set sql_mode to reject them",
    )


def _mysql_date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    raise _not_a_date(value)


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=_UTC)
    return value


def _naive_as_utc(value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise _not_a_date(value)
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value


def _naive(value: dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise _not_a_date(value)
    if value.tzinfo is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    return value


def _to_time(value: Any) -> dt.time:
    if isinstance(value, dt.timedelta):
        # PyMySQL returns TIME as a duration; only a time of day fits Avro time-micros.
        if not dt.timedelta(0) <= value < dt.timedelta(days=1):
            raise RecordError(f"TIME value {value} is not a time of day (00:00..23:59:59)")
        return (dt.datetime.min + value).time()
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None) if value.tzinfo else value
    raise RecordError(f"cannot read {value!r} as a time of day")


_MICROSECOND = dt.timedelta(microseconds=1)


def _duration_micros(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, dt.timedelta):
        return value // _MICROSECOND
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + (
            value.microsecond
        )
    raise RecordError(f"cannot read {value!r} as a MySQL TIME")


def micros_to_duration(value: int) -> dt.timedelta:
    """The ``timedelta`` of a ``MICRO_TIME_NAME`` value (signed microseconds)."""
    return dt.timedelta(microseconds=value)


def duration_text(value: int) -> str:
    """A ``MICRO_TIME_NAME`` value as MySQL writes a TIME: ``[-]HH:MM:SS.ffffff``."""
    sign = "-" if value < 0 else ""
    seconds, micros = divmod(abs(value), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minute:02d}:{second:02d}.{micros:06d}"


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _json_dumps(value)


def compact_json(text: str) -> str:
    """The compact JSON text of the value JSON ``text`` parses to: what a JSON column becomes.

    For drivers that can hand JSON over as text (psycopg loaders): the field holds the
    document without the driver's per-value Python round trip. A document that is a JSON
    string stays a JSON string (``"a"`` with its quotes), so every field value parses as JSON.
    Numbers keep their text (``12.50``, ``1e5``, 30 digits), never rounded through a float.
    """
    _float_text_kept.lost = False
    try:
        value, end = _json_scan(text, 0)
    except (StopIteration, ValueError):
        end = -1
    if end != len(text):
        # Whitespace around the value, or not JSON: json.loads's parse and its error.
        value = _JSON_DECODER.decode(text)
    if _float_text_kept.lost:
        return _exact_json(_EXACT_JSON_DECODER.decode(text))
    return _json_dumps(value)


def _exact_json(value: Any) -> str:
    """Compact JSON of a document parsed with ``_NumberText`` numbers: each as it was read."""
    if isinstance(value, dict):
        items = (f"{_json_dumps(k)}:{_exact_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_exact_json(v) for v in value) + "]"
    if isinstance(value, _NumberText):
        return str.__str__(value)
    return _json_dumps(value)


def _uuid_text(value: Any) -> str:
    return str(value) if isinstance(value, uuid.UUID) else str(uuid.UUID(str(value)))


# Each converter returns values of exactly this type as they are (the same object or an equal
# one), so a per-row path may skip calling it for them.
_UNCHANGED: dict[Converter, type] = {
    _mysql_date: dt.date,
    _duration_micros: int,
    _to_str: str,
    _to_decimal: Decimal,
    _to_float: float,
    _to_bytes: bytes,
    _json_text: str,
}


# Converters that return unchanged the values their column's Avro type is written from as they
# are. Not _uuid_text nor _decimal_text: they rewrite text into its canonical form.
_KEEP_AVRO_READY = frozenset(
    (_to_str, _to_decimal, _to_float, _to_bytes, _json_text, _aware, _naive_as_utc,
     _mysql_date, _duration_micros)
)


def unchanged_type(convert: Converter) -> type | None:
    """The type whose values ``convert`` returns unchanged, or None when it has none.

    ``convert(v) == v`` whenever ``type(v) is unchanged_type(convert)``: a per-row path checks
    the type instead of making the call (see ``TableSchema.value_of``).
    """
    return _UNCHANGED.get(convert)


def keeps_avro_ready(convert: Converter) -> bool:
    """Whether ``convert`` returns unchanged the values that need no conversion for its column.

    Those are values of the exact type the column's Avro type is written from: a str for a
    string, bytes, a float, a Decimal for a decimal, an aware datetime for ``timestamp-micros``.
    A writer that recognises such a value may skip the call (``liberate.schema._generated``).
    """
    return convert in _KEEP_AVRO_READY


# ---------------------------------------------------------------------------------------------
# Avro back to SQL, for sinks that create and evolve tables.


def unwrap_nullable(field_type: Any) -> tuple[Any, bool]:
    """``(type, nullable)`` of an Avro field type, unwrapping a ``["null", T]`` union."""
    if isinstance(field_type, list):
        others = [t for t in field_type if t != "null"]
        if len(others) == 1:
            return others[0], len(others) != len(field_type)
        raise UnsupportedTypeError(f"Avro union {field_type} has no single SQL type")
    return field_type, False


def sql_type(field_type: Any, *, key: bool = False) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type a sink creates for an Avro field type (nullability unwrapped first).

    ``key`` columns that hold text get a bounded VARCHAR, which MySQL needs to index them.
    PostgreSQL-only types get their native columns there (``postgres_types.native_sql_type``).
    """
    from liberate.schema import postgres_types  # it builds on this module

    base, _ = unwrap_nullable(field_type)
    native = postgres_types.native_sql_type(base, key=key)
    if native is not None:
        return native
    if isinstance(base, str):
        primitive: Any = base
        logical: Any = None
        props: dict[str, Any] = {}
    elif isinstance(base, dict):
        primitive, logical, props = base.get("type"), base.get("logicalType"), base
    else:
        raise UnsupportedTypeError(f"Avro type {base!r} has no SQL mapping")
    if logical == "decimal":
        return sa.Numeric(int(props["precision"]), int(props.get("scale", 0)))
    if logical == "timestamp-micros" or logical == "timestamp-millis":
        return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    if logical in ("local-timestamp-micros", "local-timestamp-millis"):
        return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    if logical == "date":
        return sa.Date()
    if logical in ("time-micros", "time-millis"):
        return sa.Time().with_variant(mysql.TIME(fsp=6), "mysql", "mariadb")
    if logical == "uuid":
        return sa.Uuid(as_uuid=False)
    connect_name = props.get("connect.name") if isinstance(props, dict) else None
    if primitive == "string" and connect_name == JSON_NAME:
        return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    if primitive == "string" and connect_name == VARIABLE_DECIMAL_NAME:
        return sa.Numeric().with_variant(mysql.DECIMAL(65, 30), "mysql", "mariadb")
    if primitive == "long" and connect_name == MICRO_TIME_NAME:
        # A MySQL TIME: TIME(6) there, an interval on PostgreSQL, its TIME text on SQLite.
        return (
            sa.Interval()
            .with_variant(mysql.TIME(fsp=6), "mysql", "mariadb")
            .with_variant(sa.Text(), "sqlite")
        )
    simple: dict[str, sa.types.TypeEngine[Any]] = {
        "boolean": sa.Boolean(),
        "int": sa.Integer(),
        "long": sa.BigInteger(),
        "float": sa.REAL(),
        "double": sa.Double(),
        "bytes": sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"),
        "string": (
            sa.String(255) if key else sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
        ),
    }
    if primitive in simple:
        return simple[primitive]
    raise UnsupportedTypeError(f"Avro type {base!r} has no SQL mapping")


def from_avro_value(field_type: Any, value: Any) -> Any:
    """Turn a decoded Avro value into what the SQL type of ``sql_type(field_type)`` binds."""
    if value is None:
        return None
    base, _ = unwrap_nullable(field_type)
    if isinstance(base, dict) and base.get("connect.name") == MICRO_TIME_NAME:
        return micros_to_duration(value)
    if isinstance(base, dict) and base.get("type") == "string":
        name = base.get("connect.name")
        if name == JSON_NAME:
            return json.loads(value)
        if name == VARIABLE_DECIMAL_NAME:
            return Decimal(value)
        if base.get("logicalType") == "uuid" and isinstance(value, uuid.UUID):
            # fastavro reads uuid as uuid.UUID; sql_type's Uuid(as_uuid=False) binds text.
            return str(value)
    return value
