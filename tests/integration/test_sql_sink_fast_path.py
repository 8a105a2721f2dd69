"""The SQL sink's PostgreSQL fast path (sinks/sql/_fast.py): batches staged from the consumed
bytes write what the decoding path writes, and every batch it cannot take exactly goes that
path instead."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from liberate.errors import RecordError
from liberate.records import ConsumedRecord, SourceRecord
from liberate.runtime._sink_task import SinkTask
from liberate.schema.avro import AvroSchema
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import RecordDeserializer, RecordSerializer
from liberate.streams.embedded import EmbeddedBackend
from sinks.sql import SqlSink
from sinks.sql._fast import FallBack, FastBatch
from tests.integration._sql_sink_support import (
    ORDER_KEY,
    ORDER_VALUE,
    TOPIC,
    TYPE_FIELDS,
    RecordingContext,
    config,
    execute,
    opened_sinks,
    read_rows,
    row,
    schemas,
)

pytestmark = pytest.mark.integration

# Every type of the type contract the fast path stages itself (times and UUIDs it leaves to
# the decoding path).
FAST_FIELDS = [f for f in TYPE_FIELDS if f["name"] not in ("at", "uid")]
FAST_KEY, FAST_VALUE = schemas("shop.public.types", FAST_FIELDS)
TYPES_TOPIC = "shop.public.types"


class Stream:
    """Records through the wire format, as the runtime consumes them."""

    def __init__(self, path: Path) -> None:
        registry = EmbeddedRegistry(path / "registry.db")
        self._serializer = RecordSerializer(registry)
        self.deserializer = RecordDeserializer(registry)
        self._offset = 0

    def records(self, items: Sequence[tuple[str, dict[str, Any], dict[str, Any] | None,
                                            AvroSchema, AvroSchema]]) -> list[ConsumedRecord]:
        encoded = self._serializer.serialize([
            SourceRecord(topic, key, value, key_schema, value_schema, {}, {})
            for topic, key, value, key_schema, value_schema in items
        ])
        consumed = []
        for record in encoded:
            consumed.append(ConsumedRecord(record.topic, 0, self._offset, record.key,
                                           record.value, (), 1))
            self._offset += 1
        return consumed


@pytest.fixture
def stream(tmp_path: Path) -> Stream:
    return Stream(tmp_path)


@pytest.fixture
def open_sink(postgres_url: str) -> Iterator[Any]:
    yield from opened_sinks(postgres_url)


def fast_write(sink: SqlSink, stream: Stream, batch: list[ConsumedRecord]) -> None:
    """Write ``batch`` by the fast path, failing the test if it falls back."""
    prepared = sink.transcode(batch, stream.deserializer.schema)
    assert isinstance(prepared, FastBatch), "the fast path did not take the batch"
    assert sink._fast is not None
    sink._fast.write(prepared, stream.deserializer.deserialize)


def order(order_id: int, status: str, note: str | None = None) -> tuple[Any, ...]:
    return (TOPIC, {"id": order_id}, row(order_id, status, note), ORDER_KEY, ORDER_VALUE)


def gone(order_id: int) -> tuple[Any, ...]:
    return (TOPIC, {"id": order_id}, None, ORDER_KEY, ORDER_VALUE)


def typed(i: int, **values: Any) -> tuple[Any, ...]:
    base: dict[str, Any] = {
        "id": i, "small": -2_147_483_648, "big": 9_223_372_036_854_775_807, "flag": True,
        "ratio": 1.5, "score": 0.1, "label": 'Zoë 日本 🎉 "quoted" \\ back\'slash\t\n',
        "price": Decimal("-12345678.90"), "tiny": Decimal("-0.00001"),
        "unsigned_big": Decimal("18446744073709551615"),
        "exact": "-123456789012345678901234567890.123456789",
        "happened": dt.datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=dt.UTC),
        "local": dt.datetime(1999, 12, 31, 23, 59, 59, 123_456),
        "day": dt.date(2024, 2, 29), "doc": '{"a": [1, 2.5, "ü"], "b": null}',
        "blob": b"\x00\xff\x10binary", "maybe": "here",
    }
    base.update(values)
    return (TYPES_TOPIC, {"id": i}, base, FAST_KEY, FAST_VALUE)


def test_the_fast_path_writes_every_type_as_the_decoding_path_does(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    items = [
        typed(1),
        typed(2, small=2_147_483_647, big=-9_223_372_036_854_775_808, flag=False,
              ratio=-0.0, score=float("inf"), label="", price=Decimal("0.00"),
              tiny=Decimal("0.00000"), unsigned_big=Decimal("0"), exact=None, happened=None,
              local=None, day=None, doc=None, blob=None, maybe=None),
        typed(3, happened=dt.datetime(1, 1, 1, tzinfo=dt.UTC),
              local=dt.datetime(9999, 12, 31, 23, 59, 59, 999_999), day=dt.date(1, 1, 1),
              price=Decimal("9999999999.99"), blob=b""),
        typed(4, happened=dt.datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=dt.UTC),
              day=dt.date(9999, 12, 31), price=Decimal("-0.01"), score=float("nan")),
    ]
    fast = open_sink(name="fast", table="fast_{table}", topics=[TYPES_TOPIC])
    slow = open_sink(name="slow", table="slow_{table}", topics=[TYPES_TOPIC])
    batch = stream.records(items)
    fast_write(fast, stream, batch)
    slow.write(stream.deserializer.deserialize(batch))
    written = read_rows(postgres_url, "fast_types")
    assert len(written) == 4
    assert _same(written, read_rows(postgres_url, "slow_types"))


def test_the_runtime_hands_batches_to_the_fast_path(postgres_url: str, tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "streams.db")
    backend.open()
    try:
        backend.ensure_topic(TOPIC)
        serializer = RecordSerializer(backend.registry())
        backend.append(serializer.serialize([
            SourceRecord(TOPIC, {"id": i % 7}, row(i % 7, f"v{i}"), ORDER_KEY, ORDER_VALUE,
                         {}, {})
            for i in range(50)
        ] + [SourceRecord(TOPIC, {"id": 3}, None, ORDER_KEY, None, {}, {})]), [])
        sink = SqlSink(config(postgres_url, batch_size=20))
        done = threading.Event()
        done.set()
        task = SinkTask(sink, backend, RecordDeserializer(backend.registry()),
                        threading.Event(), once=True, sources_done=done, batch_size=20,
                        max_retries=0)
        task.run()
    finally:
        backend.close()
    assert task.stats.error is None
    assert sink.fast_batches == 3
    # The last of each key (id = i % 7) but 3, which the tombstone deleted.
    assert read_rows(postgres_url, "orders") == [
        row(0, "v49"), row(1, "v43"), row(2, "v44"), row(4, "v46"), row(5, "v47"),
        row(6, "v48"),
    ]


def test_the_last_change_of_a_key_wins_and_tombstones_delete(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    sink = open_sink()
    fast_write(sink, stream, stream.records([order(1, "new"), order(2, "new"), order(3, "new")]))
    fast_write(sink, stream, stream.records([
        order(1, "paid"), gone(2), order(1, "sent", "twice"), order(4, "new"), gone(4),
        gone(5), gone(3), order(3, "back"),
    ]))
    assert read_rows(postgres_url, "orders") == [row(1, "sent", "twice"), row(3, "back")]


def test_composite_keys_and_key_fields_the_row_lacks_are_written_as_the_decoding_path_does(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    key = AvroSchema({"type": "record", "name": "Key", "namespace": "shop.public.stock",
                      "fields": [{"name": "region", "type": "string"},
                                 {"name": "id", "type": "long"}]})
    value = AvroSchema({"type": "record", "name": "Value", "namespace": "shop.public.stock",
                        "fields": [{"name": "id", "type": "long"},
                                   {"name": "qty", "type": ["null", "int"], "default": None}]})
    topic = "shop.public.stock"

    def stock(region: str, i: int, qty: int | None) -> tuple[Any, ...]:
        return (topic, {"region": region, "id": i}, {"id": i, "qty": qty}, key, value)

    def sold_out(region: str, i: int) -> tuple[Any, ...]:
        return (topic, {"region": region, "id": i}, None, key, value)

    batches = [
        [stock("eu", 1, 5), stock("us", 1, 6), stock("eu", 2, None), stock("ü", 3, 1)],
        [stock("eu", 1, 7), sold_out("us", 1), sold_out("eu", 9), stock("us", 2, 3),
         sold_out("ü", 3), stock("ü", 3, 2)],
    ]
    fast = open_sink(name="fast", table="fast_{table}", topics=[topic])
    slow = open_sink(name="slow", table="slow_{table}", topics=[topic])
    for items in batches:
        batch = stream.records(items)
        fast_write(fast, stream, batch)
        slow.write(stream.deserializer.deserialize(batch))
    written = sorted(read_rows(postgres_url, "fast_stock"), key=lambda r: (r["region"], r["id"]))
    assert written == sorted(read_rows(postgres_url, "slow_stock"),
                             key=lambda r: (r["region"], r["id"]))
    assert [(r["region"], r["id"], r["qty"]) for r in written] == [
        ("eu", 1, 7), ("eu", 2, None), ("us", 2, 3), ("ü", 3, 2)]


def test_tombstones_change_nothing_when_deletes_are_off(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    sink = open_sink(delete_enabled=False)
    fast_write(sink, stream, stream.records([order(1, "new"), gone(1), order(2, "new"),
                                             gone(2)]))
    assert read_rows(postgres_url, "orders") == [row(1, "new"), row(2, "new")]


def test_a_replayed_batch_goes_the_decoding_path_and_writes_nothing_twice(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    sink = open_sink()
    batch = stream.records([order(1, "new"), order(2, "new")])
    fast_write(sink, stream, batch)
    execute(postgres_url, "UPDATE orders SET status = 'changed since'")
    prepared = sink.transcode(batch, stream.deserializer.schema)
    assert sink._fast is not None
    with pytest.raises(FallBack):
        sink._fast.write(prepared, stream.deserializer.deserialize)
    sink.write_transcoded(prepared, stream.deserializer.deserialize)
    assert read_rows(postgres_url, "orders") == [row(1, "changed since"), row(2, "changed since")]


def test_a_staging_table_lives_as_long_as_its_connection_and_each_commit_empties_it(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    first = open_sink()
    replayed = stream.records([order(1, "new"), order(2, "new")])
    fast_write(first, stream, replayed)
    # Another instance of the sink: its first batch (a replay) creates its staging table in
    # a transaction that then rolls back, so the table must be created again after it.
    second = open_sink()
    prepared = second.transcode(replayed, stream.deserializer.schema)
    assert second._fast is not None
    with pytest.raises(FallBack):
        second._fast.write(prepared, stream.deserializer.deserialize)
    for i in range(3, 6):
        fast_write(second, stream, stream.records([order(1, f"v{i}"), order(i, "new")]))
    assert second._fast._conn is not None
    driver = second._fast._conn.connection.driver_connection
    assert driver is not None
    names = [r[0] for r in driver.execute(
        "SELECT relname FROM pg_class WHERE relpersistence = 't' AND relkind = 'r'"
        " AND relnamespace = pg_my_temp_schema()").fetchall()]
    assert len(names) == 1  # created once, for every batch of the connection
    assert driver.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(names[0]))).fetchone() == (0,)
    driver.rollback()
    assert read_rows(postgres_url, "orders") == [
        row(1, "v5"), row(2, "new"), row(3, "new"), row(4, "new"), row(5, "new")]


def test_a_refused_row_is_named_by_the_decoding_path_and_nothing_is_written(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    sink = open_sink()
    fast_write(sink, stream, stream.records([order(1, "new")]))
    execute(postgres_url, "ALTER TABLE orders ADD CONSTRAINT short CHECK (length(status) < 6)")
    batch = stream.records([order(2, "new"), order(3, "refused"), order(1, "paid")])
    prepared = sink.transcode(batch, stream.deserializer.schema)
    with pytest.raises(RecordError) as refused:
        sink.write_transcoded(prepared, stream.deserializer.deserialize)
    assert refused.value.origin == f"{TOPIC}[0]@{batch[1].offset}"
    assert read_rows(postgres_url, "orders") == [row(1, "new")]


def test_with_tolerance_all_refused_records_are_parked_and_their_key_waits_behind_them(
    postgres_url: str, open_sink: Any, stream: Stream
) -> None:
    sink = open_sink(errors={"tolerance": "all"})
    context = RecordingContext()
    sink.attach_context(context)
    fast_write(sink, stream, stream.records([order(1, "new"), order(2, "new")]))
    execute(postgres_url, "ALTER TABLE orders ADD CONSTRAINT short CHECK (length(status) < 6)")
    refused = stream.records([order(1, "refused"), order(2, "paid")])
    sink.write_transcoded(sink.transcode(refused, stream.deserializer.schema),
                          stream.deserializer.deserialize)
    later = stream.records([order(1, "sent"), order(3, "new")])
    prepared = sink.transcode(later, stream.deserializer.schema)
    assert sink._fast is not None
    with pytest.raises(FallBack):  # a key is parked: the decoding path parks its records
        sink._fast.write(prepared, stream.deserializer.deserialize)
    sink.write_transcoded(prepared, stream.deserializer.deserialize)
    assert read_rows(postgres_url, "orders") == [row(1, "new"), row(2, "paid"), row(3, "new")]
    assert [(p["origin"], p["behind"]) for p in sink.parked()] == [
        (f"{TOPIC}[0]@{refused[0].offset}", None),
        (f"{TOPIC}[0]@{later[0].offset}", f"{TOPIC}[0]@{refused[0].offset}"),
    ]


@pytest.mark.parametrize(
    ("label", "item"),
    [
        ("a timestamp Python cannot hold", ("happened", 253_402_300_800_000_000)),
        ("a date Python cannot hold", ("day", -719_163)),
        ("more digits than the precision", ("price", 10**12)),
    ],
)
def test_values_the_decoder_refuses_are_left_to_the_decoding_path(
    stream: Stream, open_sink: Any, label: str, item: tuple[str, int]
) -> None:
    # Bytes a foreign producer could write: the fields as raw Avro (long, int, bytes).
    field, raw = item
    fields = []
    for spec in FAST_FIELDS:
        if spec["name"] == field:
            nullable = isinstance(spec["type"], list)
            base = spec["type"][1] if nullable else spec["type"]
            plain = base["type"]  # the logical type's underlying type, without it
            spec = {**spec, "type": ["null", plain] if nullable else plain}
        fields.append(spec)
    key, lying_value = schemas("shop.public.types", fields)
    value = typed(1)[2]
    value[field] = raw.to_bytes(8, "big", signed=True) if field == "price" else raw
    lying = stream.records([(TYPES_TOPIC, {"id": 1}, value, key, lying_value)])
    sink = open_sink(topics=[TYPES_TOPIC])
    # Read with the schema that has the logical type: re-point the record at its id.
    honest = stream.records([typed(2)])
    header = honest[0].value[:5] if honest[0].value else b""
    assert lying[0].value is not None
    relabelled = [ConsumedRecord(TYPES_TOPIC, 0, 9, honest[0].key, header + lying[0].value[5:])]
    assert sink.transcode(relabelled, stream.deserializer.schema) is None, label


def test_schemas_the_fast_path_does_not_stage_go_the_decoding_path(
    open_sink: Any, stream: Stream
) -> None:
    key, value = schemas("shop.public.types", TYPE_FIELDS)  # with a time and a UUID
    sink = open_sink(topics=[TYPES_TOPIC])
    record = typed(1)
    full = dict(record[2], at=dt.time(1, 2, 3), uid="6f1c8a3e-2b7d-4c3e-9a51-0f2e3d4c5b6a")
    batch = stream.records([(TYPES_TOPIC, {"id": 1}, full, key, value)])
    assert sink.transcode(batch, stream.deserializer.schema) is None


def test_other_modes_and_key_modes_have_no_fast_path(open_sink: Any, stream: Stream) -> None:
    batch = stream.records([order(1, "new")])
    for overrides in ({"mode": "insert"}, {"mode": "update"},
                      {"pk_mode": "record_value", "pk_fields": ["id"]}):
        sink = open_sink(**overrides)
        assert sink.transcode(batch, stream.deserializer.schema) is None, overrides


def _same(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> bool:
    """Rows equal, NaN equal to NaN."""
    def normal(value: Any) -> Any:
        return "NaN" if isinstance(value, float) and value != value else value

    return [{k: normal(v) for k, v in r.items()} for r in left] == \
        [{k: normal(v) for k, v in r.items()} for r in right]


def test_only_the_fast_path_asks_the_runtime_for_a_short_gil_switch_interval(
    open_sink: Any,
) -> None:
    assert open_sink().switch_interval_s == 0.0005
    assert open_sink(name="inserts", mode="insert").switch_interval_s is None
