"""Decoded Avro values to what the target binds: per column for statements, per field for COPY.

The Avro side of the contract is ``liberate.schema.types.from_avro_value``. ``binding`` adds
what depends on the *target* column, which may have been created by someone else:

- JSON text goes verbatim to a text column (MariaDB's JSON is LONGTEXT) and to the JSON
  columns of SQLite and MySQL, which take text; PostgreSQL's json/jsonb get it parsed (and
  SQLAlchemy serializes it again, keeping a null SQL NULL rather than JSON ``null``);
- decimals and UUIDs going to a text column become their exact text (SQLite keeps decimals as
  text, see ``_tables``);
- PostgreSQL arrays go to array columns item by item, and to any other column as JSON text
  (``liberate.schema.postgres_types``; staged for COPY as ``text[]`` and cast by the merge);
- instants (timezone-aware datetimes) become naive UTC wherever the column keeps no zone
  (MySQL DATETIME, SQLite, PostgreSQL ``timestamp``); sessions run at UTC so MySQL TIMESTAMP
  columns store the same instant.

``copy_field`` is PostgreSQL's binary COPY into a staging table whose column types follow the
*Avro* types (so every value has an exact binary form); the merge into the target casts
where PostgreSQL has no assignment cast (text to jsonb, numeric, uuid, an enum...).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from liberate.errors import UnsupportedTypeError
from liberate.schema.postgres_types import (
    array_as_json,
    array_as_text,
    array_as_values,
    array_items,
)
from liberate.schema.types import (
    JSON_NAME,
    MICRO_TIME_NAME,
    VARIABLE_DECIMAL_NAME,
    Converter,
    duration_text,
    from_avro_value,
    micros_to_duration,
    unwrap_nullable,
)

_UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class Binding:
    """How the values of one Avro field bind to one target column in a statement."""

    type: sa.types.TypeEngine[Any]
    convert: Converter | None = None


@dataclass(frozen=True, slots=True)
class CopyField:
    """How the values of one Avro field travel through PostgreSQL's binary COPY."""

    stage_type: sa.types.TypeEngine[Any]  # the staging column's type
    pg_type: str  # its PostgreSQL type name, for psycopg's binary dumpers
    convert: Converter | None = None


def binding(field_type: Any, column_type: sa.types.TypeEngine[Any], dialect: str) -> Binding:
    """The binding of values of Avro ``field_type`` to a column of ``column_type``."""
    base, _ = unwrap_nullable(field_type)
    logical = base.get("logicalType") if isinstance(base, dict) else None
    marker = base.get("connect.name") if isinstance(base, dict) else None

    if marker == MICRO_TIME_NAME:
        return _duration_binding(column_type)
    items = array_items(field_type)
    if items is not None:
        # A PostgreSQL array: its items into an array column, JSON text anywhere else.
        if isinstance(column_type, sa.ARRAY):
            return Binding(column_type, array_as_values(items))
        return Binding(sa.Text(), array_as_json(items))
    if isinstance(column_type, sa.JSON):
        if marker == JSON_NAME and dialect != "postgresql":
            return Binding(sa.Text())  # stored as text there: no parsing and serializing again
        return Binding(_json_keeping_null(column_type), _from_avro(field_type, marker))
    if isinstance(column_type, sa.String) and not isinstance(column_type, sa.Enum):
        if marker in (JSON_NAME, VARIABLE_DECIMAL_NAME):
            return Binding(column_type)  # already the exact text
        if logical == "decimal":
            return Binding(column_type, _decimal_text)
        if logical == "uuid":
            return Binding(column_type, _text)
        return Binding(column_type)
    if isinstance(column_type, sa.Uuid):
        return Binding(column_type, _uuid if column_type.as_uuid else _text)
    if isinstance(column_type, sa.DateTime):
        keeps_zone = dialect == "postgresql" and bool(column_type.timezone)
        return Binding(column_type, None if keeps_zone else _naive_utc)
    return Binding(column_type, _from_avro(field_type, marker))


def _duration_binding(column_type: sa.types.TypeEngine[Any]) -> Binding:
    # A MySQL TIME (signed microseconds): text in a text column (SQLite), as it is in a
    # number column, a timedelta in TIME (MySQL) and interval (PostgreSQL) columns.
    if isinstance(column_type, sa.String):
        return Binding(column_type, duration_text)
    if isinstance(column_type, sa.Integer | sa.Numeric):
        return Binding(column_type)
    return Binding(column_type, micros_to_duration)


def copy_field(field_type: Any) -> CopyField:
    """The staging column and binary form of values of Avro ``field_type``."""
    base, _ = unwrap_nullable(field_type)
    if isinstance(base, dict) and base.get("connect.name") == MICRO_TIME_NAME:
        return _DURATION
    if array_items(base) is not None:
        return _ARRAY
    primitive = base.get("type") if isinstance(base, dict) else base
    logical = base.get("logicalType") if isinstance(base, dict) else None
    if logical is not None and logical in _COPY_LOGICAL:
        return _COPY_LOGICAL[logical]
    if primitive in _COPY_PRIMITIVE:
        return _COPY_PRIMITIVE[primitive]
    raise UnsupportedTypeError(f"Avro type {base!r} has no SQL mapping")


def needs_cast(stage_type: sa.types.TypeEngine[Any], target: sa.types.TypeEngine[Any]) -> bool:
    """Whether the merge must cast a staged value to the target column type.

    Only text needs it (PostgreSQL converts text to other types by explicit cast only); other
    pairs rely on assignment casts, which, unlike explicit ones, refuse to truncate a
    too-long string or overflow a number silently.
    """
    if isinstance(stage_type, sa.ARRAY) and isinstance(target, sa.ARRAY):
        # Arrays are staged as text[] (see _ARRAY): cast unless the target holds text too.
        return needs_cast(stage_type.item_type, target.item_type)
    if not isinstance(stage_type, sa.Text) or isinstance(target, sa.types.NullType):
        return False  # a type SQLAlchemy does not know cannot be named in a cast
    return not isinstance(target, sa.String) or isinstance(target, sa.Enum)


def _from_avro(field_type: Any, marker: Any) -> Converter | None:
    if marker in (JSON_NAME, VARIABLE_DECIMAL_NAME):
        return lambda value: from_avro_value(field_type, value)
    return None


def _json_keeping_null(column_type: sa.JSON) -> sa.JSON:
    adapted = column_type.copy()
    adapted.none_as_null = True
    return adapted


def _decimal_text(value: Any) -> str:
    return format(_decimal(value), "f")


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _text(value: Any) -> str:
    return str(value)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _naive_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    return value


def _aware_utc(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=_UTC)  # Avro timestamps are UTC
    return value


def _bytes(value: Any) -> Any:
    return value if isinstance(value, bytes | bytearray | memoryview) else bytes(value)


_INSTANT = CopyField(sa.DateTime(timezone=True), "timestamptz", _aware_utc)
_LOCAL = CopyField(sa.DateTime(), "timestamp", _naive_utc)
_TIME = CopyField(sa.Time(), "time")
_DURATION = CopyField(sa.Interval(), "interval", micros_to_duration)
# Every item in PostgreSQL's text form: one staging type for arrays of any item type.
_ARRAY = CopyField(postgresql.ARRAY(sa.Text()), "text[]", array_as_text)
_COPY_LOGICAL: dict[str, CopyField] = {
    "decimal": CopyField(sa.Numeric(), "numeric", _decimal),
    "uuid": CopyField(sa.Uuid(), "uuid", _uuid),
    "date": CopyField(sa.Date(), "date"),
    "time-micros": _TIME,
    "time-millis": _TIME,
    "timestamp-micros": _INSTANT,
    "timestamp-millis": _INSTANT,
    "local-timestamp-micros": _LOCAL,
    "local-timestamp-millis": _LOCAL,
}
_COPY_PRIMITIVE: dict[str, CopyField] = {
    "boolean": CopyField(sa.Boolean(), "bool"),
    "int": CopyField(sa.Integer(), "int4"),
    "long": CopyField(sa.BigInteger(), "int8"),
    "float": CopyField(sa.REAL(), "float4"),
    "double": CopyField(sa.Double(), "float8"),
    "bytes": CopyField(sa.LargeBinary(), "bytea", _bytes),
    "fixed": CopyField(sa.LargeBinary(), "bytea", _bytes),
    "enum": CopyField(sa.Text(), "text"),
    # JSON and unconstrained-decimal text included: the merge casts it to the column type.
    "string": CopyField(sa.Text(), "text"),
}
