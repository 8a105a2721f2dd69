"""Serializer throughput: ``RecordSerializer.serialize`` on 7-field table rows.

Encodes N records (key: the ``id`` column; value: id long, customer string, amount
decimal(10,2), status string, quantity int, created_at timestamp-micros, note nullable string)
in batches as the runtime does, against an embedded registry in a temp file, and prints
records/s; then ``RecordDeserializer.deserialize`` reading them back. For comparison it times
the same work done the obvious way, with fastavro's ``schemaless_writer`` and
``schemaless_reader`` and pre-parsed schemas. Records are built per batch outside the timed
sections. ``--plain`` swaps the two logical columns (decimal, timestamp) for a string and a
double, to show what their conversions cost. ``--envelope postgres`` / ``--envelope mysql``
wraps the row in the Debezium change-event envelope each CDC connector emits (``source`` block
copied from a per-table template as the connectors do, ``transaction`` block for PostgreSQL;
an update with ``before`` for MySQL, ``after`` only for PostgreSQL's REPLICA IDENTITY DEFAULT).
Run:

    python benchmarks/serde_encode.py [--records 1000000] [--batch 5000] [--plain]
        [--envelope postgres|mysql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import struct
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

from liberate.envelope import envelope_schema, source_block, source_schema
from liberate.records import ConsumedRecord, SinkRecord, SourceRecord, StreamRecord
from liberate.schema.avro import AvroSchema
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import RecordDeserializer, RecordSerializer

TOPIC = "bench.orders"


def schemas(plain: bool) -> tuple[AvroSchema, AvroSchema]:
    fields: list[dict[str, Any]] = [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "status", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ]
    if plain:
        fields += [{"name": "region", "type": "string"}, {"name": "weight", "type": "double"}]
    else:
        fields += [
            {
                "name": "amount",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            },
            {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ]
    value = AvroSchema({"type": "record", "name": "Value", "namespace": TOPIC, "fields": fields})
    key = AvroSchema({"type": "record", "name": "Key", "namespace": TOPIC, "fields": [fields[0]]})
    return key, value


#: the position fields of each connector's ``source`` block (as in connectors/*)
POSITION_FIELDS: dict[str, list[dict[str, Any]]] = {
    "postgres": [
        {"name": "txId", "type": ["null", "long"], "default": None},
        {"name": "lsn", "type": ["null", "long"], "default": None},
    ],
    "mysql": [
        {"name": "file", "type": "string"},
        {"name": "pos", "type": "long"},
        {"name": "row", "type": "int"},
        {"name": "gtid", "type": ["null", "string"], "default": None},
        {"name": "server_id", "type": "long"},
    ],
}


def envelope_of(row_schema: AvroSchema, connector: str) -> AvroSchema:
    """The envelope schema each connector builds around the row (PostgreSQL: nullable
    non-key columns and the ``unchanged`` field)."""
    if connector == "postgres":
        fields = [
            field if field["name"] == "id" or isinstance(field["type"], list)
            else {**field, "type": ["null", field["type"]], "default": None}
            for field in row_schema.schema["fields"]
        ]
        row_schema = AvroSchema({**row_schema.schema, "fields": fields})
    name = "postgresql" if connector == "postgres" else connector
    source = source_schema(name, POSITION_FIELDS[connector])
    return envelope_schema(row_schema, source, unchanged=connector == "postgres")


def fresh_copy(row: dict[str, Any]) -> dict[str, Any]:
    """Equal values in new objects, as a decoder gives the before and after images."""
    copied: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, str):
            value = (value + ".")[:-1]
        elif isinstance(value, dt.datetime):
            value = value + dt.timedelta(0)
        elif isinstance(value, Decimal):
            value = Decimal(str(value))
        copied[name] = value
    return copied


def enveloped(rows: list[dict[str, Any]], connector: str, start: int) -> list[dict[str, Any]]:
    """Change events of ``rows``, built the way the CDC connectors build them."""
    now_ms = time.time_ns() // 1_000_000
    if connector == "postgres":
        template = source_block(connector="postgresql", name="bench", ts_ms=0, db="bench",
                                schema="public", table="orders",
                                position={"txId": None, "lsn": None})
        txn_id = f"{start}:{start * 64}"
        values = []
        for n, row in enumerate(rows):
            source = dict(template)
            source["ts_ms"] = now_ms
            source["txId"] = start
            source["lsn"] = start * 64 + n
            values.append({
                "before": None, "after": row, "source": source, "op": "u", "ts_ms": now_ms,
                "transaction": {"id": txn_id, "total_order": n + 1,
                                "data_collection_order": n + 1},
                "unchanged": None,
            })
        return values
    template = source_block(connector="mysql", name="bench", ts_ms=0, db="bench", schema=None,
                            table="orders")
    binlog, gtid = "binlog.000042", f"3e11fa47-71ca-11e1-9e33-c80aa9429562:{start}"
    return [
        {
            "before": {**fresh_copy(row), "quantity": 0}, "after": row,
            "source": {**template, "ts_ms": now_ms, "file": binlog, "pos": 4 + n * 300,
                       "row": 0, "gtid": gtid, "server_id": 1},
            "op": "u", "ts_ms": now_ms, "transaction": None,
        }
        for n, row in enumerate(rows)
    ]


def batch_of(
    start: int, size: int, plain: bool, key: AvroSchema, value: AvroSchema,
    envelope: str | None = None,
) -> list[SourceRecord]:
    now = dt.datetime.now(dt.UTC)
    partition = {"table": "orders"}
    records = []
    for i in range(start, start + size):
        row: dict[str, Any] = {
            "id": i,
            "customer": f"customer-{i % 10_000}",
            "status": "paid" if i % 3 else "shipped",
            "quantity": i % 17,
            "note": None if i % 2 else "leave at the door",
        }
        if plain:
            row["region"] = "eu-west"
            row["weight"] = 1.25 * (i % 8)
        else:
            row["amount"] = Decimal(i % 100_000) / 100
            row["created_at"] = now
        records.append(SourceRecord(TOPIC, {"id": i}, row, key, value, partition, {"id": i}, (), 0))
    if envelope is not None:
        values = enveloped([dict(r.value or {}) for r in records], envelope, start)
        for record, datum in zip(records, values, strict=True):
            record.value = datum
    return records


def fastavro_baseline(
    records: list[SourceRecord], parsed_key: Any, parsed_value: Any, header: bytes
) -> list[StreamRecord]:
    """The same work done the obvious way: fastavro's writer with pre-parsed schemas."""
    result = []
    for record in records:
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed_key, record.key)
        key = buf.getvalue()
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed_value, record.value)
        result.append(StreamRecord(record.topic, key, buf.getvalue(), record.headers, 0))
    return result


def fastavro_read_baseline(
    records: list[ConsumedRecord], parsed_key: Any, parsed_value: Any, key: Any, value: Any
) -> list[SinkRecord]:
    """Decoding done the obvious way: fastavro's reader with pre-parsed schemas."""
    result = []
    for record in records:
        assert record.key is not None and record.value is not None
        buf = io.BytesIO(record.key)
        buf.seek(5)
        decoded_key = fastavro.schemaless_reader(buf, parsed_key, None)
        buf = io.BytesIO(record.value)
        buf.seek(5)
        decoded_value = fastavro.schemaless_reader(buf, parsed_value, None)
        assert isinstance(decoded_key, dict) and isinstance(decoded_value, dict)
        result.append(
            SinkRecord(
                record.topic,
                record.partition,
                record.offset,
                decoded_key,
                decoded_value,
                key,
                value,
                record.headers,
                record.timestamp_ms,
            )
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--plain", action="store_true", help="no decimal/timestamp columns")
    parser.add_argument("--envelope", choices=("postgres", "mysql"),
                        help="encode the change events of a CDC connector")
    args = parser.parse_args()
    key, value = schemas(args.plain)
    if args.envelope:
        value = envelope_of(value, args.envelope)
    parsed_key, parsed_value = (
        fastavro.parse_schema(key.schema),
        fastavro.parse_schema(value.schema),
    )
    header = struct.pack(">bI", 0, 1)
    timings = {
        "serialize": 0.0,
        "fastavro schemaless_writer": 0.0,
        "deserialize": 0.0,
        "fastavro schemaless_reader": 0.0,
    }
    with tempfile.TemporaryDirectory() as tmp:
        registry = EmbeddedRegistry(Path(tmp) / "streams.db")
        serializer = RecordSerializer(registry)
        deserializer = RecordDeserializer(registry)
        for start in range(0, args.records, args.batch):
            size = min(args.batch, args.records - start)
            records = batch_of(start, size, args.plain, key, value, args.envelope)
            began = time.perf_counter()
            encoded: list[StreamRecord] = serializer.serialize(records)
            timings["serialize"] += time.perf_counter() - began
            began = time.perf_counter()
            fastavro_baseline(records, parsed_key, parsed_value, header)
            timings["fastavro schemaless_writer"] += time.perf_counter() - began
            consumed = [
                ConsumedRecord(r.topic, 0, start + n, r.key, r.value, r.headers, r.timestamp_ms)
                for n, r in enumerate(encoded)
            ]
            began = time.perf_counter()
            deserializer.deserialize(consumed)
            timings["deserialize"] += time.perf_counter() - began
            began = time.perf_counter()
            fastavro_read_baseline(consumed, parsed_key, parsed_value, key, value)
            timings["fastavro schemaless_reader"] += time.perf_counter() - began
        registry.close()
    shape = "plain" if args.plain else "with decimal + timestamp-micros"
    if args.envelope:
        shape += f", in {args.envelope} change-event envelopes"
    print(f"{args.records:,} records of 7 fields ({shape}), batches of {args.batch:,}")
    for name, seconds in timings.items():
        print(
            f"  {name:28s} {args.records / seconds:>12,.0f} records/s"
            f"  ({seconds / args.records * 1e6:.2f} µs/record, key + value)"
        )


if __name__ == "__main__":
    main()
