"""PostgreSQL fast path: Avro record bytes straight to binary COPY rows, without decoding.

For the common stream (entity events of one key schema and one value schema per topic, in
upsert mode, keyed by the record key) the sink does not need Python values at all: each
record's bytes become one row of PostgreSQL's binary COPY format by a function generated per
(key schema, value schema), the way ``liberate.schema._avro_reader`` generates readers:
varints are read inline, strings and bytes are sliced from the message and sent as they are,
numbers are packed with one ``struct`` call per run of fixed-size columns. Nothing here
reduces, plans or writes: ``_fast`` does that.

The staged row has a delete flag, then the columns of the shape (``_shape.shape_columns``,
in order). Staging types follow the Avro types as ``_values.copy_field`` does, with two
exact shortcuts: timestamps are sent as PostgreSQL's own microsecond count (no datetime made),
and decimals as their unscaled integer (``bigint`` up to 18 digits, text beyond), which the
merge multiplies by ``10^-scale``: numeric multiplication keeps the scale, so the value is the
Decimal the decoder would have made.

A transcoder refuses (raises) whatever the decoding path would treat differently, so the
caller can take that path instead: a value the decoder rejects (a timestamp or date outside
Python's range, a decimal with more digits than its precision, a string that is not UTF-8 in
a field not sent to the server, bytes cut short), a record of another schema than its own.
Strings that are sent are checked by the server (its encoding must be UTF8: see ``_fast``).
Schemas with any other shape (envelopes, unions other than with null, arrays, maps, nested
records, enums, fixed, UUIDs, times, durations, unknown logical types) get no transcoder.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastavro.read import LOGICAL_READERS

from liberate.schema._avro_reader import SLICE, ZIGZAG, reader_namespace
from liberate.schema.avro import AvroSchema
from liberate.schema.types import MICRO_TIME_NAME, unwrap_nullable
from sinks.sql._events import envelope_row_schema
from sinks.sql._shape import Origin, ShapeRules, column_name, shape_columns

#: ``run(keys, values, out)``: appends the COPY rows of the records to ``out``, returns how many
#: are deletes; raises on anything the decoding path would treat differently
Run = Callable[[Sequence[bytes], Sequence[bytes | None], list[bytes]], int]

#: the binary COPY header (signature, flags, extension length) and trailer
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_PG_EPOCH_DAYS = 10_957
# Python's datetime range (what the decoder can make), in Unix microseconds and days.
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
_MIN_DAYS, _MAX_DAYS = -719_162, 2_932_896
_MAX_BIGINT_DIGITS = 18
_STOCK = dict(LOGICAL_READERS)
_serial = itertools.count()


@dataclass(frozen=True, slots=True)
class StageColumn:
    """One column of the staging table."""

    name: str  # the target column (the shape's column name)
    type: sa.types.TypeEngine[Any]  # its staging type
    scale: int | None = None  # a decimal staged unscaled: multiply by 10^-scale


@dataclass(frozen=True, slots=True)
class Transcoder:
    """Binary COPY rows for records of one (key schema, value schema)."""

    key_schema: AvroSchema
    value_schema: AvroSchema
    columns: tuple[StageColumn, ...]  # the shape's columns, then nothing else
    key_columns: tuple[str, ...]
    run: Run


class _Unfit(Exception):
    """A schema shape the fast path leaves to the decoding path."""


@dataclass(frozen=True, slots=True)
class _Field:
    """How one Avro field is read, and staged when it is."""

    lines: list[str]  # reads the value into its variable (None when null)
    fixed: str | None  # struct format of a fixed-size value, None for bytes
    size: int
    nullable: bool
    stage: StageColumn | None  # without the name: filled in per column


def transcoder(
    key_schema: AvroSchema, value_schema: AvroSchema, rules: ShapeRules, *,
    key_header: bytes, value_header: bytes, delete: bool,
) -> Transcoder | None:
    """The transcoder of records with these schemas (their wire headers), None when they do
    not fit the fast path. ``delete``: tombstones delete (else the caller drops them)."""
    if rules.pk_mode != "record_key":
        return None
    try:
        return _compile(key_schema, value_schema, rules, key_header, value_header, delete)
    except Exception:  # _Unfit, or a schema this module does not understand: not fit either
        return None


def _compile(
    key_schema: AvroSchema, value_schema: AvroSchema, rules: ShapeRules,
    key_header: bytes, value_header: bytes, delete: bool,
) -> Transcoder:
    if key_schema.schema.get("type") != "record" or not key_schema.fields:
        raise _Unfit("the key is not a record with fields")
    if value_schema.schema.get("type") != "record" or envelope_row_schema(value_schema):
        raise _Unfit("the value is not an entity record")
    gen = _Generator()
    key_fields = {f["name"]: gen.field(f["type"], f"k{i}") for i, f in
                  enumerate(key_schema.fields)}
    row_fields = {f["name"]: gen.field(f["type"], f"v{i}") for i, f in
                  enumerate(value_schema.fields)}
    key_vars = {f["name"]: f"k{i}" for i, f in enumerate(key_schema.fields)}
    row_vars = {f["name"]: f"v{i}" for i, f in enumerate(value_schema.fields)}
    key_by_column = {column_name(f): f for f in key_schema.fields}
    row_types = {f["name"]: f["type"] for f in value_schema.fields}
    columns = shape_columns(value_schema, key_schema, rules)
    stage: list[StageColumn] = []
    writes: list[tuple[str, _Field] | None] = []
    deletes: list[tuple[str, _Field] | None] = []
    for column in columns:
        if column.origin is Origin.KEY:
            field, var = key_fields[column.field], key_vars[column.field]
        elif column.origin is Origin.ROW:
            field, var = row_fields[column.field], row_vars[column.field]
        else:
            raise _Unfit("coordinate columns")
        assert field.stage is not None
        if column.key:
            spec = key_by_column[column.column]
            key_field = key_fields[spec["name"]]
            if key_field.nullable or (column.origin is Origin.ROW and unwrap_nullable(
                    row_types[column.field])[0] != spec["type"]):
                raise _Unfit("a nullable key field, or a row field of another type")
            deletes.append((key_vars[spec["name"]], key_field))
        else:
            deletes.append(None)
        writes.append((var, field))
        stage.append(StageColumn(column.column, field.stage.type, field.stage.scale))
    # Strings sent to the server in every record are checked there; others are checked here.
    sent = {item[0] for item in writes if item is not None}
    body = [
        "extend = out.extend",
        "deletes = 0",
        "for data, value in zip(keys, values):",
        _indent([
            "if data[:5] != KH:",
            "    raise ValueError('another key schema')",
            "size = len(data)",
            "pos = 5",
            *[line for name, f in key_fields.items()
              for line in gen.read(f, key_vars[name], sent=key_vars[name] in sent)],
            "if pos > size:",
            "    raise EOFError",
            "if value is None:",
            _indent([
                "deletes += 1",
                f"extend({gen.row(deletes, flag=True)})",
                "continue",
            ]) if delete else "    raise ValueError('a tombstone')",
            "data = value",
            "if data[:5] != VH:",
            "    raise ValueError('another value schema')",
            "size = len(data)",
            "pos = 5",
            *[line for name, f in row_fields.items()
              for line in gen.read(f, row_vars[name], sent=row_vars[name] in sent)],
            "if pos > size:",
            "    raise EOFError",
            f"extend({gen.row(writes, flag=False)})",
        ]),
        "return deletes",
    ]
    gen.namespace["KH"] = key_header
    gen.namespace["VH"] = value_header
    run: Run = gen.define("run(keys, values, out)", body)
    return Transcoder(
        key_schema, value_schema, tuple(stage),
        tuple(c.column for c in columns if c.key), run,
    )


class _Generator:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = reader_namespace()
        self.namespace["NULL"] = struct.pack(">i", -1)
        self._packers: dict[str, str] = {}
        self._count = itertools.count()

    def constant(self, value: Any) -> str:
        name = f"q{next(self._count)}"
        self.namespace[name] = value
        return name

    def packer(self, fmt: str) -> str:
        name = self._packers.get(fmt)
        if name is None:
            name = self._packers[fmt] = self.constant(struct.Struct(">" + fmt).pack)
        return name

    def define(self, signature: str, body: list[str]) -> Any:
        source = f"def {signature}:\n" + _indent(body) + "\n"
        code = compile(source, f"<liberate sink transcoder {next(_serial)}>", "exec")
        exec(code, self.namespace)  # this module's templates; nothing read from a schema
        return self.namespace[signature.split("(")[0]]

    # -- reading -------------------------------------------------------------------------------

    def field(self, field_type: Any, v: str) -> _Field:
        """How a field of ``field_type`` is read into ``v``."""
        nullable = False
        branch = 0
        if isinstance(field_type, list):
            others = [t for t in field_type if t != "null"]
            if len(field_type) != 2 or len(others) != 1:
                raise _Unfit("a union other than [null, T]")
            nullable = True
            branch = field_type.index(others[0])
            field_type = others[0]
        lines, fixed, size, stage = self._base(field_type, v)
        if nullable:
            lines = [
                *ZIGZAG.format(v="z").splitlines(),
                f"if z == {branch}:",
                _indent(lines),
                f"elif z == {1 - branch}:",
                f"    {v} = None",
                "else:",
                "    raise ValueError('union branch out of range')",
            ]
        return _Field(lines, fixed, size, nullable, stage)

    def read(self, field: _Field, v: str, *, sent: bool) -> list[str]:
        """The lines reading ``field`` into ``v``; a string that is not sent is checked to be
        UTF-8 here (the decoder would refuse it), one that is sent by the server."""
        if sent or field.stage is None or not isinstance(field.stage.type, sa.Text) \
                or field.stage.scale is not None:
            return field.lines
        if field.nullable:
            return [*field.lines, f"if {v} is not None:", f"    {v}.decode()"]
        return [*field.lines, f"{v}.decode()"]

    def _base(self, node: Any, v: str) -> tuple[list[str], str | None, int, StageColumn]:
        if isinstance(node, dict):
            kind = node.get("type")
            logical = node.get("logicalType")
            if node.get("connect.name") == MICRO_TIME_NAME:
                raise _Unfit("durations")
        else:
            kind, logical = node, None
        if logical is not None:
            return self._logical(node, kind, logical, v)
        if kind == "boolean":
            return [f"{v} = data[pos]", "pos += 1"], "?", 1, _stage(sa.Boolean())
        if kind == "int":
            return [ZIGZAG.format(v=v)], "i", 4, _stage(sa.Integer())
        if kind == "long":
            return [ZIGZAG.format(v=v)], "q", 8, _stage(sa.BigInteger())
        if kind == "float":
            return [f"{v}, = unpack_float(data, pos)", "pos += 4"], "f", 4, _stage(sa.REAL())
        if kind == "double":
            return [f"{v}, = unpack_double(data, pos)", "pos += 8"], "d", 8, _stage(sa.Double())
        if kind == "string":
            return [SLICE.format(v=v)], None, 0, _stage(sa.Text())
        if kind == "bytes":
            return [SLICE.format(v=v)], None, 0, _stage(sa.LargeBinary())
        raise _Unfit(f"type {kind!r}")

    def _logical(
        self, node: Any, kind: Any, logical: Any, v: str
    ) -> tuple[list[str], str | None, int, StageColumn]:
        key = f"{kind}-{logical}"
        if LOGICAL_READERS.get(key) is not _STOCK.get(key) or key not in _STOCK:
            raise _Unfit(f"logical type {key}")  # fastavro's reader replaced, or unknown
        if key in ("long-timestamp-micros", "long-timestamp-millis",
                   "long-local-timestamp-micros", "long-local-timestamp-millis"):
            millis = [f"{v} *= 1000"] if key.endswith("millis") else []
            zone = "local" not in key
            return [
                ZIGZAG.format(v=v),
                *millis,
                f"if not {_MIN_US} <= {v} <= {_MAX_US}:",
                "    raise ValueError('timestamp out of range')",
                f"{v} -= {_PG_EPOCH_US}",
            ], "q", 8, _stage(sa.DateTime(timezone=zone))
        if key == "int-date":
            return [
                ZIGZAG.format(v=v),
                f"if not {_MIN_DAYS} <= {v} <= {_MAX_DAYS}:",
                "    raise ValueError('date out of range')",
                f"{v} -= {_PG_EPOCH_DAYS}",
            ], "i", 4, _stage(sa.Date())
        if key == "bytes-decimal":
            scale, precision = node.get("scale", 0), node.get("precision")
            if not (type(scale) is int and type(precision) is int
                    and 0 <= scale <= precision <= 1000):
                raise _Unfit("decimal without a usable precision and scale")
            limit = self.constant(10**precision)
            lines = [
                SLICE.format(v=v),
                f"{v} = from_bytes({v}, 'big', signed=True)",
                f"if not -{limit} < {v} < {limit}:",
                "    raise ValueError('more digits than the precision')",
            ]
            if precision <= _MAX_BIGINT_DIGITS:
                return lines, "q", 8, StageColumn("", sa.BigInteger(), scale)
            return [*lines, f"{v} = b'%d' % {v}"], None, 0, StageColumn("", sa.Text(), scale)
        raise _Unfit(f"logical type {key}")

    # -- writing -------------------------------------------------------------------------------

    def row(self, items: Sequence[tuple[str, _Field] | None], *, flag: bool) -> str:
        """The tuple expression of one COPY row: the flag, then ``items`` (None: a null)."""
        parts: list[str] = []
        fmt = "hi?"  # the column count, then the flag (the first column)
        args = [str(len(items) + 1), "1", "True" if flag else "False"]

        def flush() -> None:
            nonlocal fmt, args
            if fmt:
                parts.append(f"{self.packer(fmt)}({', '.join(args)})")
            fmt, args = "", []

        for item in items:
            if item is None:
                fmt += "i"
                args.append("-1")
                continue
            var, field = item
            if field.nullable:
                flush()
                if field.fixed is not None:
                    pack = self.packer("i" + field.fixed)
                    parts.append(f"(NULL if {var} is None else {pack}({field.size}, {var}))")
                else:
                    pack = self.packer("i")
                    parts.append(f"(NULL if {var} is None else {pack}(len({var})) + {var})")
            elif field.fixed is not None:
                fmt += "i" + field.fixed
                args += [str(field.size), var]
            else:
                fmt += "i"
                args.append(f"len({var})")
                flush()
                parts.append(var)
        flush()
        return "(" + ", ".join(parts) + ",)"


def _stage(type_: sa.types.TypeEngine[Any]) -> StageColumn:
    return StageColumn("", type_)


def _indent(lines: list[str]) -> str:
    return "\n".join("    " + line for block in lines for line in block.splitlines())
