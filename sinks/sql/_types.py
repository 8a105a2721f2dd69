"""Sink-side type rules: the column a field gets, and whether a column can take a field.

``column_type`` is the type contract's ``sql_type`` plus what only a sink needs (SQLite keeps
decimals as exact text, bounded text keys where MySQL must index them, declared string
lengths). ``verdict`` compares what a record field needs with what a column has, reduced to
``TypeFacts`` (a family and a size), and says whether the column takes every value as it is,
must be widened (a safe ALTER), or would need an unsafe change.

A string field may declare its source length, as ``liberate.length`` on its type or, in
Debezium's topics with ``column.propagate.source.type``, as
``connect.parameters.__debezium.source.column.length``; without one a string is unbounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from liberate.schema.postgres_types import is_native_marked
from liberate.schema.types import (
    JSON_NAME,
    LENGTH_ATTRIBUTE,
    MICRO_TIME_NAME,
    VARIABLE_DECIMAL_NAME,
    sql_type,
    unwrap_nullable,
)

_DEBEZIUM_LENGTH = "__debezium.source.column.length"
# utf8mb4 VARCHAR(n) needs 4n bytes of MySQL's 65,535-byte row: longer ones become LONGTEXT.
_MYSQL_MAX_VARCHAR = 16_383


class Family(Enum):
    """What kind of value a field carries or a column holds."""

    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    STRING = "string"
    BYTES = "bytes"
    BOOLEAN = "boolean"
    DATE = "date"
    TIME = "time"
    TIMESTAMP = "timestamp"
    JSON = "json"
    UUID = "uuid"
    OTHER = "other"  # a column type the sink does not judge (custom types, intervals...)


@dataclass(frozen=True, slots=True)
class TypeFacts:
    """A type reduced to what widening rules need. ``size`` is bits for integers and floats,
    the length for strings; None is unbounded (also for decimals without precision)."""

    family: Family
    size: int | None = None
    precision: int | None = None
    scale: int = 0

    def __str__(self) -> str:
        if self.family is Family.DECIMAL:
            if self.precision is None:
                return "decimal"
            return f"decimal({self.precision}, {self.scale})"
        if self.family in (Family.INTEGER, Family.FLOAT) and self.size:
            return f"{self.family.value}{self.size}"
        if self.family is Family.STRING and self.size:
            return f"varchar({self.size})"
        return str(self.family.value)


class Verdict(Enum):
    """How a column relates to the values of a field."""

    OK = "ok"  # the column takes every value as it is
    WIDEN = "widen"  # a safe ALTER makes it take every value
    NARROWING = "narrowing"  # the field is narrower than the column: never narrowed
    TYPE_CHANGE = "type change"  # no safe ALTER makes the column take the values


def declared_length(field_type: Any) -> int | None:
    """The source length a string field declares, if any (see the module doc)."""
    base, _ = unwrap_nullable(field_type)
    if not isinstance(base, dict) or base.get("type") != "string":
        return None
    length = base.get(LENGTH_ATTRIBUTE)
    if length is None:
        parameters = base.get("connect.parameters")
        if isinstance(parameters, dict):
            length = parameters.get(_DEBEZIUM_LENGTH)
    try:
        return int(length) if length is not None and int(length) > 0 else None
    except (TypeError, ValueError):
        return None


def column_type(field_type: Any, *, key: bool) -> sa.types.TypeEngine[Any]:
    """The type a created column gets: the contract's ``sql_type``, with sink-side variants.

    - SQLite has no exact decimal storage (NUMERIC affinity keeps 15 digits): decimals are
      stored as their exact text.
    - Text keys are bounded only where MySQL needs it to index them; PostgreSQL keeps TEXT.
    - Byte keys become VARBINARY on MySQL, which cannot index a BLOB.
    - A string with a declared length becomes VARCHAR of that length.
    - PostgreSQL-only types (intervals, inet...) keep their native column on PostgreSQL, keys
      included (``liberate.schema.postgres_types``).
    """
    length = declared_length(field_type)
    if length is not None:
        return varchar(length, key=key)
    created = sql_type(field_type, key=key)
    if isinstance(created, sa.Numeric) and not isinstance(created, sa.Float):
        return created.with_variant(sa.Text(), "sqlite")
    if key and isinstance(created, sa.String) and not is_native_marked(field_type):
        return created.with_variant(sa.Text(), "postgresql")
    if key and isinstance(created, sa.LargeBinary):
        return sa.LargeBinary().with_variant(mysql.VARBINARY(255), "mysql", "mariadb")
    return created


def varchar(length: int, *, key: bool) -> sa.types.TypeEngine[Any]:
    """VARCHAR(length), or LONGTEXT on MySQL past its VARCHAR limit (never for a key)."""
    if length > _MYSQL_MAX_VARCHAR and not key:
        return sa.String(length).with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
    return sa.String(length)


def field_facts(field_type: Any) -> TypeFacts:
    """The facts of an Avro field type."""
    base, _ = unwrap_nullable(field_type)
    props: dict[str, Any] = base if isinstance(base, dict) else {}
    primitive = props.get("type") if props else base
    logical = props.get("logicalType")
    if logical == "decimal":
        return TypeFacts(Family.DECIMAL, precision=int(props["precision"]),
                         scale=int(props.get("scale", 0)))
    if logical in ("timestamp-micros", "timestamp-millis", "local-timestamp-micros",
                   "local-timestamp-millis"):
        return TypeFacts(Family.TIMESTAMP)
    if logical == "date":
        return TypeFacts(Family.DATE)
    if logical in ("time-micros", "time-millis"):
        return TypeFacts(Family.TIME)
    if logical == "uuid":
        return TypeFacts(Family.UUID)
    marker = props.get("connect.name")
    if is_native_marked(base):
        return TypeFacts(Family.OTHER)  # an interval, timetz, inet... as its text
    if primitive == "long" and marker == MICRO_TIME_NAME:
        return TypeFacts(Family.TIME)  # a MySQL TIME (a duration)
    if primitive == "string" and marker == JSON_NAME:
        return TypeFacts(Family.JSON)
    if primitive == "string" and marker == VARIABLE_DECIMAL_NAME:
        return TypeFacts(Family.DECIMAL)
    simple = {
        "int": TypeFacts(Family.INTEGER, 32),
        "long": TypeFacts(Family.INTEGER, 64),
        "float": TypeFacts(Family.FLOAT, 32),
        "double": TypeFacts(Family.FLOAT, 64),
        "boolean": TypeFacts(Family.BOOLEAN),
        "bytes": TypeFacts(Family.BYTES),
        "fixed": TypeFacts(Family.BYTES),
        "enum": TypeFacts(Family.STRING),
    }
    if primitive == "string":
        return TypeFacts(Family.STRING, declared_length(field_type))
    return simple.get(str(primitive), TypeFacts(Family.OTHER))


def column_facts(column_type: sa.types.TypeEngine[Any]) -> TypeFacts:
    """The facts of a reflected column type."""
    t = column_type
    if isinstance(t, sa.Boolean):
        return TypeFacts(Family.BOOLEAN)
    if isinstance(t, sa.Integer):
        return TypeFacts(Family.INTEGER, _integer_bits(t))
    if isinstance(t, sa.Float):
        return TypeFacts(Family.FLOAT, 64 if isinstance(t, sa.Double | mysql.DOUBLE) else 32)
    if isinstance(t, sa.Numeric):
        if t.precision is None:
            return TypeFacts(Family.DECIMAL)
        return TypeFacts(Family.DECIMAL, precision=t.precision, scale=t.scale or 0)
    if isinstance(t, sa.Enum):
        return TypeFacts(Family.STRING)
    if isinstance(t, sa.JSON):
        return TypeFacts(Family.JSON)
    if isinstance(t, sa.Uuid):
        return TypeFacts(Family.UUID)
    if isinstance(t, mysql.TINYTEXT):
        return TypeFacts(Family.STRING, 255)
    if isinstance(t, sa.Text):
        return TypeFacts(Family.STRING)
    if isinstance(t, sa.String):
        return TypeFacts(Family.STRING, t.length)
    if isinstance(t, sa.LargeBinary | sa.types._Binary):
        return TypeFacts(Family.BYTES)
    if isinstance(t, sa.DateTime):
        return TypeFacts(Family.TIMESTAMP)
    if isinstance(t, sa.Date):
        return TypeFacts(Family.DATE)
    if isinstance(t, sa.Time):
        return TypeFacts(Family.TIME)
    return TypeFacts(Family.OTHER)


def _integer_bits(t: sa.Integer) -> int:
    if isinstance(t, sa.BigInteger):
        return 64
    if isinstance(t, mysql.TINYINT):
        return 8
    if isinstance(t, mysql.MEDIUMINT):
        return 24
    if isinstance(t, sa.SmallInteger):
        return 16
    return 32


# MySQL's largest DECIMAL, which the sink creates there for an unbounded decimal.
_MYSQL_MAX_PRECISION = 65

# Decimal digits an integer of n bits holds in full, and how many it may need.
_FULL_DIGITS = {8: 2, 16: 4, 24: 6, 32: 9, 64: 18}
_MAX_DIGITS = {8: 3, 16: 5, 24: 8, 32: 10, 64: 19}


def verdict(wanted: TypeFacts, have: TypeFacts) -> Verdict:
    """How a column of ``have`` relates to the values of a field of ``wanted``."""
    if Family.OTHER in (wanted.family, have.family):
        return Verdict.OK
    if wanted.family is have.family:
        return _same_family(wanted, have)
    if have.family is Family.STRING and have.size is None and wanted.family is not Family.BYTES:
        return Verdict.OK  # every value has a text form an unbounded text column takes
    if (wanted.family, have.family) in _LOSSLESS:
        return Verdict.OK
    if wanted.family is Family.INTEGER and have.family is Family.DECIMAL:
        digits = _MAX_DIGITS.get(wanted.size or 64, 19)
        if have.precision is None or have.precision - have.scale >= digits:
            return Verdict.OK
    if (wanted.family, have.family) == (Family.INTEGER, Family.FLOAT) and (
        (wanted.size or 64) <= 32 and have.size == 64
    ):
        return Verdict.OK
    if wanted.family is Family.DECIMAL and have.family is Family.INTEGER:
        full = _FULL_DIGITS.get(have.size or 32, 9)
        if wanted.precision is not None and wanted.scale == 0 and wanted.precision <= full:
            return Verdict.OK
    if wanted.family is Family.UUID and have.family is Family.STRING and (have.size or 0) >= 32:
        return Verdict.OK
    return Verdict.TYPE_CHANGE


_LOSSLESS = frozenset(
    {
        (Family.BOOLEAN, Family.INTEGER),  # MySQL BOOLEAN is TINYINT(1)
        (Family.JSON, Family.STRING),  # MariaDB JSON is LONGTEXT
    }
)


def _same_family(wanted: TypeFacts, have: TypeFacts) -> Verdict:
    family = wanted.family
    if family is Family.INTEGER:
        return _compare(wanted.size or 64, have.size or 64)
    if family is Family.FLOAT:
        # MySQL makes every REAL a DOUBLE: a float into a double column is no narrowing.
        return Verdict.WIDEN if (wanted.size or 64) > (have.size or 64) else Verdict.OK
    if family is Family.STRING:
        if have.size is None or wanted.size is None:
            return Verdict.OK  # an unbounded field's values are checked one by one
        return _compare(wanted.size, have.size)
    if family is Family.DECIMAL:
        if have.precision is None or have.precision >= _MYSQL_MAX_PRECISION:
            return Verdict.OK  # unbounded, or as unbounded as MySQL goes
        if wanted.precision is None:
            return Verdict.TYPE_CHANGE
        if wanted.scale == have.scale:
            return _compare(wanted.precision, have.precision)
        fits = wanted.scale <= have.scale and (
            wanted.precision - wanted.scale <= have.precision - have.scale
        )
        return Verdict.NARROWING if fits else Verdict.TYPE_CHANGE
    return Verdict.OK


def _compare(wanted: int, have: int) -> Verdict:
    if wanted > have:
        return Verdict.WIDEN
    if wanted < have:
        return Verdict.NARROWING
    return Verdict.OK


def widened_type(field_type: Any, *, key: bool) -> sa.types.TypeEngine[Any]:
    """The type a column is widened to for a field of ``field_type``."""
    facts = field_facts(field_type)
    if facts.family is Family.STRING and facts.size is not None:
        return varchar(facts.size, key=key)
    return column_type(field_type, key=key)
