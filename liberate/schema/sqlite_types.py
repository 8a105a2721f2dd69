"""The SQLite part of the type contract (docs/types.md, "SQLite").

SQLite stores every INTEGER in up to 8 bytes and every REAL as an 8-byte double, so int widens
to long and float to double. Its type affinity lets any value into any column: a NUMERIC
column holds ints, floats or text, a JSON column any text. The source reads those columns raw
(``liberate.schema.reading``) and the converters here check them: a value the Avro type cannot
carry exactly is a ``RecordError`` naming it, never a guess.
"""

from __future__ import annotations

import json
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any

from liberate.errors import RecordError
from liberate.schema import types
from liberate.schema.types import AvroColumn, Converter

# quantize() signals Inexact instead of rounding a value with too many decimal places
_EXACT_CONTEXT = Context(prec=1000, traps=[Inexact, InvalidOperation])


def sqlite_column(mapped: AvroColumn) -> AvroColumn:
    """The SQLite form of a column the contract mapped (``avro_column``): wider numbers, and
    checked converters for the values SQLite's type affinity lets in."""
    if mapped.type == "int":
        return AvroColumn("long", mapped.convert)
    if mapped.type == "float":
        return AvroColumn("double", mapped.convert)
    # Read raw (liberate.schema.reading): NUMERIC affinity holds ints, floats or any text.
    if mapped.convert is types._decimal_text:
        return AvroColumn(mapped.type, _sqlite_number_text)
    if mapped.convert is types._to_decimal:
        return AvroColumn(mapped.type, _sqlite_decimal(int(mapped.type.get("scale", 0))))
    if mapped.convert is types._json_text:
        return AvroColumn(mapped.type, _json_document)
    return mapped


def _sqlite_number(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float | str):
        # str(float) is the shortest text that reads back as the same double.
        try:
            number = Decimal(str(value).strip())
        except ArithmeticError:
            number = None
        if number is not None and number.is_finite():
            return number
    raise RecordError(
        f"value {value!r} of a NUMERIC column is not a finite number",
        hint="SQLite keeps text that is not a number as it is in a NUMERIC column: fix the "
        "data, or select the column cast to TEXT in a custom query",
    )


def _sqlite_number_text(value: Any) -> str:
    return str(_sqlite_number(value))


def _sqlite_decimal(scale: int) -> Converter:
    exponent = Decimal(1).scaleb(-scale)

    def sqlite_decimal(value: Any) -> Decimal:
        number = _sqlite_number(value)
        if isinstance(value, float):
            # SQLite keeps a fraction as an 8-byte float: its digits past the scale are noise.
            return number.quantize(exponent)
        try:
            return number.quantize(exponent, context=_EXACT_CONTEXT)
        except ArithmeticError as exc:
            raise RecordError(
                f"value {value!r} has more than {scale} decimal places",
                hint="SQLite does not enforce a NUMERIC's scale: fix the data or the column",
            ) from exc

    return sqlite_decimal


def _json_document(value: Any) -> str:
    """The compact text of a JSON document stored as text (a string document stays quoted)."""
    if not isinstance(value, str | bytes):
        return types._json_dumps(value)
    try:
        return types._json_dumps(json.loads(value))
    except ValueError as exc:
        raise RecordError(
            f"JSON column holds text that is not JSON: {str(value)[:80]!r}",
            hint="fix the data (SQLite does not check JSON columns)",
        ) from exc
