"""The PostgreSQL part of the type contract (docs/types.md, "PostgreSQL").

The types only PostgreSQL has, and what each becomes in Avro:

- ``interval``: a string ``P<y>Y<m>M<d>DT<h>H<m>M<s>S`` marked ``io.debezium.time.Interval``
  (Debezium's string mode). PostgreSQL keeps months, days and microseconds apart and so does
  the string; a ``timedelta`` cannot (psycopg's own loader counts a month as 30 days), so
  psycopg connections load intervals with ``IsoIntervalLoader`` (``register_text_loaders``).
- ``time with time zone``: an ISO-8601 time with its offset, ``io.debezium.time.ZonedTime``.
- enums: the label as a string marked ``io.debezium.data.Enum`` with the labels in
  ``connect.parameters.allowed`` (labels need not be Avro names, so no Avro enum).
- ``inet``, ``cidr``, ``macaddr``, ``macaddr8``: PostgreSQL's own text, marked
  ``liberate.data.Inet`` / ``Cidr`` / ``MacAddress`` / ``MacAddress8``.
- ``money``: ``decimal(19, 2)`` (PostgreSQL's 64-bit cents), read from the ``lc_monetary``
  text with a ``.`` decimal point and two fraction digits (C, en_US...).
- one-dimensional arrays of numbers, booleans, text, uuids, dates, times and timestamps: an
  Avro ``array`` of nullable items.
- ``varchar(n)``, ``char(n)``: a string declaring its length (``liberate.length``).

Domains are their base type. The markers also tell a PostgreSQL sink which native column to
create (``native_sql_type``); other databases get the text.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from liberate.errors import RecordError, UnsupportedTypeError
from liberate.jsonout import to_json
from liberate.schema.reading import label_unrecognised_types
from liberate.schema.types import (
    LENGTH_ATTRIBUTE,
    AvroColumn,
    Converter,
    avro_column,
    compact_json,
    decimal_type,
    from_avro_value,
    sql_type,
    unwrap_nullable,
)
from liberate.schema.types import _to_str as text_value  # the common text converter

#: Debezium's semantic names for the string forms of these types
INTERVAL_NAME = "io.debezium.time.Interval"
ZONED_TIME_NAME = "io.debezium.time.ZonedTime"
ENUM_NAME = "io.debezium.data.Enum"
INET_NAME = "liberate.data.Inet"
CIDR_NAME = "liberate.data.Cidr"
MACADDR_NAME = "liberate.data.MacAddress"
MACADDR8_NAME = "liberate.data.MacAddress8"
#: ``Column.info`` key holding the catalog's name of a column's type (for error messages)
TYPE_NAME_INFO = "liberate.type_name"

_NATIVE: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    INTERVAL_NAME: postgresql.INTERVAL,
    ZONED_TIME_NAME: lambda: postgresql.TIME(timezone=True),
    INET_NAME: postgresql.INET,
    CIDR_NAME: postgresql.CIDR,
    MACADDR_NAME: postgresql.MACADDR,
    MACADDR8_NAME: postgresql.MACADDR8,
}

# Array items: the scalar types whose psycopg loaders and text forms are PostgreSQL's own.
# Not enums (psycopg gets the array of an enum as unparsed text), nor JSON, nor nested arrays.
_ARRAY_ITEMS = (sa.Integer, sa.Numeric, sa.Float, sa.Boolean, sa.String, sa.Uuid, sa.Date,
                sa.DateTime, sa.Time)


def base_type(col_type: Any) -> Any:
    """The type the values of a column of ``col_type`` have: a domain's base type."""
    while isinstance(col_type, postgresql.DOMAIN):
        col_type = col_type.data_type
    return col_type


def postgres_column(col_type: Any, *, where: str, dialect: str | None) -> AvroColumn | None:
    """The Avro mapping of a PostgreSQL-only type, or None for a type of the common table.

    ``dialect`` ``"postgresql"`` also gives ``varchar(n)``/``char(n)`` their declared length
    (``LENGTH_ATTRIBUTE``), which PostgreSQL enforces (SQLite reflects the same classes and
    does not).
    """
    if dialect == "postgresql" and isinstance(col_type, sa.String) and col_type.length and (
        not isinstance(col_type, sa.Enum | sa.Text)
    ):
        return AvroColumn({"type": "string", LENGTH_ATTRIBUTE: col_type.length}, text_value)
    if isinstance(col_type, postgresql.INTERVAL):
        return AvroColumn(_marked(INTERVAL_NAME), _interval_text)
    if isinstance(col_type, sa.Time) and col_type.timezone:
        return AvroColumn(_marked(ZONED_TIME_NAME), _zoned_time_text)
    if isinstance(col_type, postgresql.ENUM):
        allowed = ",".join(col_type.enums)
        return AvroColumn(
            {"type": "string", "connect.name": ENUM_NAME,
             "connect.parameters": {"allowed": allowed}},
            text_value,
        )
    if isinstance(col_type, postgresql.INET):
        return AvroColumn(_marked(INET_NAME), _inet_text)
    if isinstance(col_type, postgresql.CIDR):
        return AvroColumn(_marked(CIDR_NAME), str)
    if isinstance(col_type, postgresql.MACADDR8):
        return AvroColumn(_marked(MACADDR8_NAME), str)
    if isinstance(col_type, postgresql.MACADDR):
        return AvroColumn(_marked(MACADDR_NAME), str)
    if isinstance(col_type, postgresql.MONEY):
        return AvroColumn(decimal_type(19, 2), _money)
    if isinstance(col_type, sa.ARRAY):
        return _array(col_type, where)
    return None


def _marked(name: str) -> dict[str, Any]:
    return {"type": "string", "connect.name": name}


def _array(col_type: sa.ARRAY[Any], where: str) -> AvroColumn:
    item_type = base_type(col_type.item_type)
    if not isinstance(item_type, _ARRAY_ITEMS) or isinstance(item_type, sa.Enum) or (
        isinstance(item_type, sa.Time) and item_type.timezone
    ):
        raise UnsupportedTypeError(
            f"column {where} has type {item_type!r}[], which has no Avro mapping yet",
            hint="arrays of numbers, booleans, text, uuid, dates, times and timestamps are "
            "supported (docs/types.md); cast the column in a custom query (e.g. to text[])",
        )
    item = avro_column(SimpleNamespace(type=item_type), where=f"{where}[]")
    return AvroColumn({"type": "array", "items": ["null", item.type]},
                      _array_converter(item.convert, where))


def _array_converter(convert: Converter | None, where: str) -> Converter:
    def array_value(value: Any) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise RecordError(f"cannot read {value!r} as an array ({where})")
        items = list(value)
        for index, item in enumerate(items):
            if isinstance(item, list | tuple):
                raise RecordError(
                    f"column {where} holds a multi-dimensional array, which has no Avro form",
                    hint="store one-dimensional arrays, or select the column as text or "
                    "JSON (to_json) in a custom query",
                )
            if item is not None and convert is not None:
                items[index] = convert(item)
        return items

    return array_value


def _inet_text(value: Any) -> str:
    """PostgreSQL's text of an ``inet``: the prefix only when it is not the whole address."""
    if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        if value.network.prefixlen == value.max_prefixlen:
            return str(value.ip)
        return value.with_prefixlen
    return str(value)


def _zoned_time_text(value: Any) -> str:
    if isinstance(value, dt.time):
        if value.tzinfo is None:
            raise RecordError(f"time with time zone value {value} has no offset")
        return _time_text(value)
    return str(value)


def _time_text(value: dt.time) -> str:
    text = value.isoformat()
    if value.microsecond:
        # PostgreSQL writes no trailing zeros of the fraction: neither do we.
        clock, _, rest = text.partition(".")
        digits, offset = rest[:6].rstrip("0"), rest[6:]
        text = f"{clock}.{digits}{offset}"
    return text


_MONEY_KEPT = re.compile(r"[^0-9.()\-]")
_MONEY = re.compile(r"(-|\()?(\d+)(\.\d\d)?\)?")
_CENTS = Decimal("0.01")


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value.quantize(_CENTS)
    text = str(value)
    match = _MONEY.fullmatch(_MONEY_KEPT.sub("", text.replace(",", "")))
    if match is None:
        raise RecordError(
            f"money value {text!r} is not in a format with '.' and two fraction digits",
            hint="set lc_monetary to 'C' (or en_US.UTF-8) for the database or the role, or "
            "select the column as numeric in a custom query",
        )
    sign, whole, cents = match.groups()
    amount = Decimal(whole + (cents or ".00"))
    return -amount if sign else amount


# ---------------------------------------------------------------------------------------------
# intervals


_TIME_OF_INTERVAL = re.compile(r"([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_INTEGER = re.compile(r"[+-]?\d+")
_ISO_INTERVAL = re.compile(
    r"P(?:([+-]?\d+)Y)?(?:([+-]?\d+)M)?(?:([+-]?\d+)W)?(?:([+-]?\d+)D)?"
    r"(?:T(?:([+-]?\d+)H)?(?:([+-]?\d+)M)?(?:([+-]?\d+(?:\.\d{1,6})?)S)?)?"
)
_UNITS = {"year": (12, 0), "years": (12, 0), "mon": (1, 0), "mons": (1, 0), "day": (0, 1),
          "days": (0, 1)}
_MICROS_PER = {"H": 3_600_000_000, "M": 60_000_000}


def interval_parts(text: str) -> tuple[int, int, int]:
    """``(months, days, microseconds)`` of an interval in PostgreSQL's ``postgres`` (the
    default) or ``iso_8601`` IntervalStyle; ValueError for any other text."""
    if text.startswith("P"):
        return _iso_parts(text)
    months = days = micros = 0
    tokens = text.split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        clock = _TIME_OF_INTERVAL.fullmatch(token)
        if clock is not None:
            sign, hours, minutes, seconds, fraction = clock.groups()
            total = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000
            total += int((fraction or "").ljust(6, "0"))
            micros += -total if sign == "-" else total
            index += 1
            continue
        if _INTEGER.fullmatch(token) and index + 1 < len(tokens) and tokens[index + 1] in _UNITS:
            per_month, per_day = _UNITS[tokens[index + 1]]
            months += int(token) * per_month
            days += int(token) * per_day
            index += 2
            continue
        raise ValueError(f"interval {text!r} is not in IntervalStyle postgres or iso_8601")
    return months, days, micros


def _iso_parts(text: str) -> tuple[int, int, int]:
    match = _ISO_INTERVAL.fullmatch(text)
    if match is None or text in ("P", "PT"):
        raise ValueError(f"interval {text!r} is not an ISO-8601 duration")
    years, months, weeks, days, hours, minutes, seconds = match.groups()
    micros = int(Decimal(seconds or 0) * 1_000_000)
    micros += int(hours or 0) * _MICROS_PER["H"] + int(minutes or 0) * _MICROS_PER["M"]
    return int(years or 0) * 12 + int(months or 0), int(weeks or 0) * 7 + int(days or 0), micros


def iso_interval(months: int, days: int, micros: int) -> str:
    """The contract's text of an interval: every field, each with its own sign, as
    PostgreSQL's ``iso_8601`` style signs them (which PostgreSQL reads back exactly)."""
    years = abs(months) // 12 * (-1 if months < 0 else 1)
    months -= years * 12
    sign = "-" if micros < 0 else ""
    hours, rest = divmod(abs(micros), 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    second_text = f"{seconds}.{fraction:06d}".rstrip("0") if fraction else str(seconds)

    def signed(amount: int | str) -> str:
        return f"{sign}{amount}" if amount not in (0, "0") else "0"

    return (f"P{years}Y{months}M{days}DT{signed(hours)}H{signed(minutes)}M"
            f"{signed(second_text)}S")


def _interval_text(value: Any) -> str:
    if isinstance(value, dt.timedelta):
        # A driver without IsoIntervalLoader: the timedelta holds days and microseconds only.
        return iso_interval(0, value.days, value.seconds * 1_000_000 + value.microseconds)
    text = str(value)
    try:
        return iso_interval(*interval_parts(text))
    except ValueError as exc:
        raise RecordError(str(exc), hint="set IntervalStyle to postgres (the default)") from exc


# ---------------------------------------------------------------------------------------------
# psycopg: loading values in the contract's form


def register_text_loaders(adapters: Any) -> None:
    """Register on a psycopg ``AdaptersMap`` the text loaders the contract reads with:
    json/jsonb as compact JSON text (``compact_json``), intervals as ``iso_interval`` text."""
    json_loader, interval_loader = _loaders()
    for name in ("json", "jsonb"):
        adapters.register_loader(name, json_loader)
    adapters.register_loader("interval", interval_loader)


@functools.cache
def _loaders() -> tuple[type[Any], type[Any]]:
    from psycopg.adapt import Loader  # only imported where psycopg is in use

    class CompactJsonLoader(Loader):
        def load(self, data: Any) -> str:
            # Decoded as json.loads decodes the bytes psycopg's own JSON loader passes it.
            return compact_json(bytes(data).decode("utf-8", "surrogatepass"))

    class IsoIntervalLoader(Loader):
        def load(self, data: Any) -> str:
            return iso_interval(*interval_parts(bytes(data).decode("ascii")))

    return CompactJsonLoader, IsoIntervalLoader


# ---------------------------------------------------------------------------------------------
# Avro back to SQL


def native_sql_type(base: Any, *, key: bool) -> sa.types.TypeEngine[Any] | None:
    """The column a sink creates for an Avro type of this module, or None for another type:
    the native type on PostgreSQL, the text (arrays: JSON) elsewhere."""
    if not isinstance(base, dict):
        return None
    if base.get("type") == "array":
        items, _ = unwrap_nullable(base.get("items"))
        if _is_array(items):
            return None
        return sa.JSON().with_variant(postgresql.ARRAY(sql_type(items)), "postgresql")
    native = _NATIVE.get(str(base.get("connect.name")))
    if base.get("type") != "string" or native is None:
        return None
    return sql_type("string", key=key).with_variant(native(), "postgresql")


def is_native_marked(field_type: Any) -> bool:
    """Whether ``field_type`` is a string this module gives a native PostgreSQL column."""
    base, _ = unwrap_nullable(field_type)
    return isinstance(base, dict) and base.get("connect.name") in _NATIVE


def _is_array(base: Any) -> bool:
    return isinstance(base, dict) and base.get("type") == "array"



def name_unrecognised_types(conn: sa.engine.Connection, table: sa.Table) -> sa.Table:
    """Record the catalog's type name (``format_type``) of each column SQLAlchemy did not
    recognise (reflected as ``NullType``) in its ``info``, for the unsupported-type error."""
    unknown = [c for c in table.columns if isinstance(c.type, sa.types.NullType)]
    if not unknown:
        return table
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped"
            " AND (n.nspname = :schema OR (CAST(:schema AS text) IS NULL"
            " AND pg_table_is_visible(c.oid)))"
        ),
        {"table": table.name, "schema": table.schema},
    ).all()
    return label_unrecognised_types(table, {str(r[0]): str(r[1]) for r in rows})


# ---------------------------------------------------------------------------------------------
# arrays into a sink


def array_items(field_type: Any) -> Any | None:
    """The item type of an Avro array field (nullability unwrapped), None for another field."""
    base, _ = unwrap_nullable(field_type)
    if not _is_array(base):
        return None
    return base.get("items")


def array_as_json(items: Any) -> Converter:
    """Array values to the JSON text other databases than PostgreSQL store them as: the
    items in ``liberate tail``'s form (decimals as strings, times ISO-8601), and floats that
    JSON has no number for as PostgreSQL's text (``"NaN"``, ``"Infinity"``, ``"-Infinity"``)."""

    def json_text(value: Any) -> str:
        return json.dumps([_json_item(from_avro_value(items, item)) for item in value],
                          ensure_ascii=False, separators=(",", ":"))

    return json_text


def _json_item(item: Any) -> Any:
    if isinstance(item, float) and not math.isfinite(item):
        return "NaN" if item != item else ("Infinity" if item > 0 else "-Infinity")
    return to_json(item)


def array_as_values(items: Any) -> Converter:
    """Array values to what a PostgreSQL array column of the items' SQL type binds."""

    def values(value: Any) -> list[Any]:
        return [from_avro_value(items, item) for item in value]

    return values


def array_as_text(value: Any) -> list[str | None]:
    """Array values to PostgreSQL's text of each item, for a ``text[]`` staging column that
    the merge casts to the target's array type."""
    return [None if item is None else _item_text(item) for item in value]


def _item_text(item: Any) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, float):
        return repr(item)  # exact; PostgreSQL reads nan, inf and -inf
    if isinstance(item, dt.date | dt.time):
        return item.isoformat()
    return str(item)
