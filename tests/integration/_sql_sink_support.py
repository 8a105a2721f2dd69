"""Records, schemas and database helpers shared by the SQL sink's integration tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr

from liberate.config.base import DatabaseSettings
from liberate.database import create_engine
from liberate.envelope import Op, change_value, envelope_schema, source_block, source_schema
from liberate.records import Headers, SinkRecord
from liberate.schema.avro import AvroSchema, decode, encode
from liberate.schema.types import JSON_NAME, VARIABLE_DECIMAL_NAME
from sinks.sql import SqlSink, SqlSinkConfig

TOPIC = "shop.public.orders"


def schemas(
    namespace: str, fields: Sequence[dict[str, Any]], key: Sequence[str] = ("id",)
) -> tuple[AvroSchema, AvroSchema]:
    """Key and value schemas shaped as ``liberate.schema.tables`` builds them."""
    key_fields = []
    for spec in fields:
        if spec["name"] in key:
            key_fields.append({k: v for k, v in spec.items() if k != "default"})
    return (
        AvroSchema({"type": "record", "name": "Key", "namespace": namespace, "fields": key_fields}),
        AvroSchema({"type": "record", "name": "Value", "namespace": namespace, "fields": fields}),
    )


ORDER_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "long"},
    {"name": "status", "type": "string"},
    {"name": "note", "type": ["null", "string"], "default": None},
]
ORDER_KEY, ORDER_VALUE = schemas("shop.public.orders", ORDER_FIELDS)
_SOURCE = source_schema("postgresql", [{"name": "lsn", "type": ["null", "long"], "default": None}])
ORDER_ENVELOPE = envelope_schema(ORDER_VALUE, _SOURCE)
ORDER_ENVELOPE_UNCHANGED = envelope_schema(ORDER_VALUE, _SOURCE, unchanged=True)


TYPE_FIELDS: list[dict[str, Any]] = [
    {"name": "id", "type": "long"},
    {"name": "small", "type": "int"},
    {"name": "big", "type": "long"},
    {"name": "flag", "type": "boolean"},
    {"name": "ratio", "type": "float"},
    {"name": "score", "type": "double"},
    {"name": "label", "type": "string"},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12,
                               "scale": 2}},
    {"name": "tiny", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5,
                              "scale": 5}},
    {"name": "unsigned_big", "type": {"type": "bytes", "logicalType": "decimal",
                                      "precision": 20, "scale": 0}},
    {"name": "exact", "type": ["null", {"type": "string",
                                        "connect.name": VARIABLE_DECIMAL_NAME}],
     "default": None},
    {"name": "happened", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
     "default": None},
    {"name": "local", "type": ["null", {"type": "long",
                                        "logicalType": "local-timestamp-micros"}],
     "default": None},
    {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None},
    {"name": "at", "type": ["null", {"type": "long", "logicalType": "time-micros"}],
     "default": None},
    {"name": "doc", "type": ["null", {"type": "string", "connect.name": JSON_NAME}],
     "default": None},
    {"name": "blob", "type": ["null", "bytes"], "default": None},
    {"name": "uid", "type": ["null", {"type": "string", "logicalType": "uuid"}],
     "default": None},
    {"name": "maybe", "type": ["null", "string"], "default": None},
]
TYPES_KEY, TYPES_VALUE = schemas("shop.public.types", TYPE_FIELDS)

FULL_ROW: dict[str, Any] = {
    "id": 1,
    "small": -2_147_483_648,
    "big": 9_223_372_036_854_775_807,
    "flag": True,
    "ratio": 1.5,
    "score": 0.1,
    "label": 'Zoë 日本 🎉 "quoted" \\ back\'slash',
    "price": Decimal("-12345678.90"),
    "tiny": Decimal("-0.00001"),
    "unsigned_big": Decimal("18446744073709551615"),
    "exact": "-123456789012345678901234567890.123456789",
    "happened": dt.datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    "local": dt.datetime(1999, 12, 31, 23, 59, 59, 123_456),
    "day": dt.date(2024, 2, 29),
    "at": dt.time(23, 59, 59, 999_999),
    "doc": '{"a": [1, 2.5, "ü"], "b": null, "c": {"d": true}}',
    "blob": b"\x00\xff\x10binary",
    "uid": "6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a",
    "maybe": "here",
}


def decoded(schema: AvroSchema, value: Mapping[str, Any]) -> Any:
    """``value`` as the runtime hands it to a sink: through the Avro wire format and back."""
    return decode(encode(1, schema, value), schema)


def row(order_id: int, status: str, note: str | None = None) -> dict[str, Any]:
    return {"id": order_id, "status": status, "note": note}


def order(offset: int, order_id: int, status: str, note: str | None = None,
          *, topic: str = TOPIC) -> SinkRecord:
    """An entity record of an order."""
    return SinkRecord(topic, 0, offset, {"id": order_id}, row(order_id, status, note), ORDER_KEY,
                      ORDER_VALUE)


def tombstone(offset: int, order_id: int, topic: str = TOPIC) -> SinkRecord:
    return SinkRecord(topic, 0, offset, {"id": order_id}, None, ORDER_KEY, None)


def change(
    offset: int,
    op: Op,
    order_id: int,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    *,
    unchanged: Sequence[str] | None = None,
) -> SinkRecord:
    """A Debezium change event of an order, through the wire format as a sink receives it;
    ``unchanged`` names fields not sent (the schema then has the ``unchanged`` field)."""
    source = source_block(
        connector="postgresql", name="shop", ts_ms=1, db="shop", schema="public", table="orders",
        position={"lsn": offset},
    )
    schema = ORDER_ENVELOPE if unchanged is None else ORDER_ENVELOPE_UNCHANGED
    value = change_value(op, before=before, after=after, source=source, ts_ms=2,
                         unchanged=unchanged)
    return SinkRecord(TOPIC, 0, offset, {"id": order_id}, decoded(schema, value), ORDER_KEY,
                      schema)


def config(url: str, **overrides: Any) -> SqlSinkConfig:
    raw: dict[str, Any] = {"name": "warehouse", "connector": "sql", "database": url,
                           "topics": [TOPIC]}
    raw.update(overrides)
    return SqlSinkConfig.model_validate(raw)


def opened_sinks(url: str) -> Iterator[Callable[..., SqlSink]]:
    """For an ``open_sink`` fixture: ``open_sink(**config overrides)`` opens a sink on ``url``;
    every sink it opened is closed after the test."""
    opened: list[SqlSink] = []

    def make(**overrides: Any) -> SqlSink:
        sink = SqlSink(config(url, **overrides))
        sink.open()
        opened.append(sink)
        return sink

    yield make
    for sink in opened:
        sink.close()


def engine_for(url: str) -> sa.Engine:
    return create_engine(DatabaseSettings(database=SecretStr(url)))


def read_rows(url: str, table: str, schema: str | None = None) -> list[dict[str, Any]]:
    """Every row of ``table``, ordered by its first column, as SQLAlchemy reflects it."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            reflected = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
            first = next(iter(reflected.c))
            return [dict(r._mapping) for r in conn.execute(sa.select(reflected).order_by(first))]
    finally:
        engine.dispose()


def table_names(url: str, schema: str | None = None) -> set[str]:
    engine = engine_for(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run fixed DDL text (test set-up only; nothing from a record goes in here)."""
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


class RecordingContext:
    """A real, tiny ``SinkContext`` for sinks driven without the runtime: records are
    "consumed" as fixed bytes naming their offset, dead letters are kept in ``sent``, and
    a schema is the latest unless ``older`` holds it."""

    def __init__(self, older: Callable[[AvroSchema | None], bool] = lambda _: False) -> None:
        self.sent: list[tuple[str, SinkRecord, dict[str, str]]] = []
        self._older = older

    def raw(self, record: SinkRecord) -> tuple[bytes | None, bytes | None] | None:
        return (f"key@{record.offset}".encode(), f"value@{record.offset}".encode())

    def send(self, topic: str, letters: Sequence[tuple[SinkRecord, Headers]]) -> None:
        for record, headers in letters:
            self.sent.append((topic, record, {k: v.decode() for k, v in headers}))

    def is_latest_schema(self, record: SinkRecord) -> bool | None:
        return not self._older(record.value_schema)
