"""Bulk load of the 1,000,000-row PostgreSQL table of ``bulk_postgres`` into Kafka, Avro-encoded,
side by side with the same load into the embedded stream and with a bare confluent-kafka
producer sending the same pre-encoded records (the ceiling for any Python producer here).

    .venv/bin/python -m benchmarks.kafka_bulk [--rows N] [--repeat K]

PostgreSQL: ``$LIBERATE_BENCH_POSTGRES_URL`` or a throwaway cluster. Kafka:
``$LIBERATE_BENCH_KAFKA_BOOTSTRAP`` or a throwaway noida-db 0.2.3. Schema registry:
``$LIBERATE_BENCH_SCHEMA_REGISTRY_URL`` or ``liberate registry serve`` in a child process.
liberate runs as a child process (``liberate run FILE --once``) with transactions on (one per
source batch of 10,000 rows), so the figures include exactly-once. The bare producer is
idempotent, not transactional, and its records were encoded before the clock starts; the
``KafkaBackend.append`` row sends the same records through the backend alone (in this
process), which isolates what the backend costs from what reading and encoding rows cost.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks._harness import Measurement, machine, postgres, table, timed, timed_child
from benchmarks.bulk_postgres import TABLE, liberate_bulk, prepare, table_rows
from liberate.config.models import KafkaSettings
from liberate.records import StreamRecord
from liberate.streams.base import SourceOffset
from liberate.streams.kafka import KafkaBackend
from tests.kafka_broker import kafka_cluster, schema_registry

BARE = "bare confluent-kafka producer (pre-encoded, idempotent)"
KAFKA = "liberate bulk -> Kafka (Avro, transactional)"
BACKEND = "KafkaBackend.append (pre-encoded, transactional)"
BATCH = 10_000  # the query source's default batch_size: one append, one transaction

RUN_FILE = """\
streams:
  backend: kafka
  kafka:
    bootstrap_servers: {bootstrap}
    offsets_topic: liberate-offsets-{tag}
    transactional_id_prefix: bench-{tag}
  schema_registry:
    url: {registry}
sources:
  - name: {source}
    connector: query
    database: {url}
    tables: [{table}]
    mode: bulk
"""


def liberate_kafka(
    url: str, bootstrap: str, registry: str, rows: int, workdir: Path
) -> tuple[Measurement, str]:
    """``liberate run --once`` of a bulk source into Kafka; the measurement and its topic."""
    tag = uuid.uuid4().hex[:8]
    source = f"bench-{tag}"
    run_file = workdir / f"kafka-{tag}.yaml"
    run_file.write_text(
        RUN_FILE.format(
            bootstrap=bootstrap, registry=registry, tag=tag, source=source, url=url, table=TABLE
        )
    )
    measurement = timed_child(
        KAFKA, rows, [sys.executable, "-m", "liberate", "run", str(run_file), "--once"]
    )
    return measurement, f"{source}.{TABLE}"


def read_topic(bootstrap: str, topic: str, rows: int) -> list[tuple[bytes | None, bytes | None]]:
    """Every committed (key, value) of ``topic``; fails unless there are exactly ``rows``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # noida-db answers a fetch with everything it has, whatever fetch.max.bytes says.
            "receive.message.max.bytes": 2_000_000_000,
        }
    )
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = sorted(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[tuple[bytes | None, bytes | None]] = []
    finished: set[int] = set()
    deadline = time.monotonic() + 600
    while len(finished) < len(partitions) and time.monotonic() < deadline:
        for message in consumer.consume(10_000, 1.0):
            error = message.error()
            if error is None:
                records.append((message.key(), message.value()))
            elif error.code() == KafkaError._PARTITION_EOF:
                finished.add(message.partition() or 0)
            else:
                raise SystemExit(f"reading {topic}: {error}")
    consumer.close()
    if len(records) != rows:
        raise SystemExit(f"{topic} holds {len(records)} records, expected {rows}")
    return records


def bare_producer(bootstrap: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Send ``records`` to a new topic with a plain idempotent producer and wait for all acks."""
    topic = f"bench-bare-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    produce = producer.produce
    for key, value in records:
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(600):
        raise SystemExit("the bare producer did not deliver everything")


def stream_records(records: list[tuple[bytes | None, bytes | None]]) -> list[StreamRecord]:
    """``records`` as the serializer hands them to the backend, for a new topic."""
    topic = f"bench-backend-{uuid.uuid4().hex[:8]}"
    return [StreamRecord(topic, key, value) for key, value in records]


def backend_append(bootstrap: str, stream: list[StreamRecord]) -> None:
    """``stream`` through ``KafkaBackend.append`` as the runtime calls it: batches of a
    source's 10,000 rows, each with its source offset, one transaction each."""
    tag = uuid.uuid4().hex[:8]
    settings = KafkaSettings(
        bootstrap_servers=bootstrap,
        offsets_topic=f"liberate-offsets-{tag}",
        transactional_id_prefix=f"bench-{tag}",
    )
    backend = KafkaBackend(settings)
    backend.open()
    try:
        for start in range(0, len(stream), BATCH):
            offset = SourceOffset("bench", {"table": TABLE}, {"row": start + BATCH})
            backend.append(stream[start : start + BATCH], [offset])
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the table if it already holds --rows rows (with an external server)",
    )
    args = parser.parse_args()
    results: dict[str, list[Measurement]] = {}
    with ExitStack() as stack:
        url = stack.enter_context(postgres())
        bootstrap = stack.enter_context(kafka_cluster("LIBERATE_BENCH_KAFKA_BOOTSTRAP")).bootstrap
        registry = stack.enter_context(schema_registry("LIBERATE_BENCH_SCHEMA_REGISTRY_URL"))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liberate-bench-")))
        if not (args.reuse and table_rows(url) == args.rows):
            prepare(url, args.rows)
        for attempt in range(args.repeat):
            embedded = liberate_bulk(url, args.rows, workdir, attempt)
            on_kafka, topic = liberate_kafka(url, bootstrap, registry, args.rows, workdir)
            encoded = read_topic(bootstrap, topic, args.rows)
            bare = timed(BARE, args.rows, functools.partial(bare_producer, bootstrap, encoded))
            stream = stream_records(encoded)
            backend = timed(
                BACKEND, args.rows, functools.partial(backend_append, bootstrap, stream)
            )
            del encoded, stream
            load = os.getloadavg()[0]
            for m in (embedded, on_kafka, backend, bare):
                rss = f", peak RSS {m.peak_rss_mb:.0f} MB" if m.peak_rss_mb is not None else ""
                print(
                    f"[{attempt + 1}/{args.repeat}] {m.name}: {m.seconds:.2f} s, "
                    f"{m.rows_per_s:,.0f} rows/s{rss} (load average {load:.1f})",
                    flush=True,
                )
                results.setdefault(m.name, []).append(m)
    best = [min(runs, key=lambda m: m.seconds) for runs in results.values()]
    print(f"\n{machine()}; best of {args.repeat}\n")
    print(table(best, reference=BARE))


if __name__ == "__main__":
    main()
