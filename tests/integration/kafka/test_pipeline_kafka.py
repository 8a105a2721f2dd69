"""A run on Kafka end to end: SQLite rows -> query source -> Kafka (transactions) -> SQL sink
-> SQLite, including a broker restart in the middle and the ways a run must stop cleanly."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from liberate.commands import inspect
from liberate.errors import FatalError
from liberate.streams.kafka import KafkaBackend
from tests.integration.kafka._pipeline_support import Shop, liberate, running
from tests.kafka_broker import KafkaBroker, NoidaBroker
from tests.servers import free_port


@pytest.fixture
def shop(tmp_path: Path, kafka_broker: KafkaBroker, schema_registry_url: str) -> Shop:
    return Shop(tmp_path, kafka_broker.bootstrap, schema_registry_url)


@pytest.fixture
def own_broker(kafka_broker: KafkaBroker) -> Iterator[KafkaBroker]:
    """A broker this test may stop and restart (a small, fresh one: restarts are quick)."""
    if not isinstance(kafka_broker, NoidaBroker):
        kafka_broker.restart()  # skips: an external cluster cannot be restarted from here
    broker = NoidaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


def test_rows_flow_from_sqlite_through_kafka_into_sqlite_exactly_once(shop: Shop) -> None:
    shop.insert(range(1, 201))
    with running(shop.config()) as run:
        first = shop.wait_for_warehouse(200)
        shop.insert(range(201, 251))
        second = shop.wait_for_warehouse(250)
        report = run.stop()

    assert report.ok, report.errors
    assert first[:200] == list(range(1, 201))
    assert second == list(range(1, 251))
    keys = shop.topic_keys(250)
    assert len(keys) == 250 and set(keys.values()) == {1}


def test_a_broker_restart_mid_run_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, own_broker: KafkaBroker, schema_registry_url: str
) -> None:
    shop = Shop(tmp_path, own_broker.bootstrap, schema_registry_url)
    done = threading.Event()

    def keep_inserting() -> None:
        for start in range(1, 1001, 20):
            shop.insert(range(start, start + 20))
            time.sleep(0.03)
        done.set()

    writer = threading.Thread(target=keep_inserting, daemon=True)
    with running(shop.config()) as run:
        writer.start()
        shop.wait_for_warehouse(100)
        own_broker.shutdown()  # clean stop: noida keeps its data only then
        time.sleep(1.5)
        own_broker.start()
        writer.join(60)
        ids = shop.wait_for_warehouse(1000, timeout_s=90)
        report = run.stop()

    assert done.is_set()
    assert report.ok, report.errors
    assert ids == list(range(1, 1001))
    keys = shop.topic_keys(1000)
    duplicated = {key: n for key, n in keys.items() if n > 1}
    assert len(keys) == 1000 and not duplicated


def test_an_incompatible_schema_stops_the_run_with_the_registrys_reason_and_writes_nothing(
    shop: Shop,
) -> None:
    shop.insert(range(1, 11))
    run_file = str(shop.run_file(with_sink=False))
    first = liberate("run", run_file, "--once", cwd=shop.directory)
    assert first.returncode == 0, first.stderr
    before = written(shop)
    with sqlite3.connect(shop.shop) as db:  # a breaking DDL change: customer becomes a number
        db.execute("DROP TABLE orders")
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL,"
            " amount INTEGER NOT NULL)"
        )
        db.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(i, i, i) for i in range(11, 21)])

    second = liberate("run", run_file, "--once", cwd=shop.directory)

    assert second.returncode == 1, second.stdout + second.stderr
    assert f"the new schema of subject '{shop.topic}-value' breaks BACKWARD" in second.stderr
    assert "field 'customer'" in second.stderr
    assert "checked by the schema registry at" in second.stderr
    assert written(shop) == before
    assert list(before[1].values()) == [{"incrementing": 10}]


def test_an_unreachable_registry_stops_the_run_with_a_clear_message_and_writes_nothing(
    shop: Shop,
) -> None:
    shop.insert(range(1, 11))
    nowhere = f"http://127.0.0.1:{free_port()}"

    result = liberate(
        "run", str(shop.run_file(with_sink=False, registry=nowhere)), "--once", cwd=shop.directory
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot reach the schema registry at {nowhere}" in result.stderr
    assert "streams.schema_registry.url" in result.stderr
    records, offsets = written(shop)
    assert records.get(shop.topic, 0) == 0
    assert offsets == {}


def written(shop: Shop) -> tuple[dict[str, int], dict[str, Any]]:
    """Records per topic and the stored offsets of the shop's source."""
    backend = KafkaBackend(shop.settings())
    backend.open()
    try:
        records = {info.name: info.records for info in backend.topics()}
        offsets = dict(backend.source_offsets(shop.source))
    finally:
        backend.close()
    return records, offsets


def test_topics_tail_and_status_report_a_kafka_run(shop: Shop) -> None:
    shop.insert(range(1, 31))
    produced = liberate("run", str(shop.run_file(with_sink=False)), "--once", cwd=shop.directory)
    assert produced.returncode == 0, produced.stderr
    with running(shop.config()) as run:
        shop.wait_for_warehouse(30)
        run.stop()
    run_file = str(shop.run_file())

    topics = liberate("topics", run_file, cwd=shop.directory)
    tail = liberate(
        "tail",
        run_file,
        shop.topic,
        "--from-beginning",
        "--no-follow",
        "--limit",
        "3",
        cwd=shop.directory,
    )
    # Without a limit, --no-follow reads to the end offsets of when it started: all 30, not
    # whatever the first polls return while the consumer group is still being assigned.
    whole = liberate("tail", run_file, shop.topic, "--from-beginning", "--no-follow",
                     cwd=shop.directory)
    status = liberate("status", run_file, "--json", cwd=shop.directory)

    assert topics.returncode == 0, topics.stderr
    (line,) = [line for line in topics.stdout.splitlines() if line.startswith(shop.topic)]
    partitions, records = (int(n) for n in line.split()[1:3])
    # Counted by offsets, as Kafka does: each transaction's commit marker takes one.
    assert partitions == 1 and 30 < records <= 60
    assert f"liberate-offsets-{shop.tag}" not in topics.stdout
    assert tail.returncode == 0, tail.stderr
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [(r["key"], r["value"]["customer"]) for r in rows] == [
        ({"id": 1}, "customer-1"),
        ({"id": 2}, "customer-2"),
        ({"id": 3}, "customer-3"),
    ]
    assert whole.returncode == 0, whole.stderr
    assert [json.loads(line)["key"]["id"] for line in whole.stdout.splitlines()] == [
        *range(1, 31)]
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["backend"] == "kafka"
    (source,) = report["sources"]
    assert list(source["position"].values()) == [{"incrementing": 30}]
    (sink,) = report["sinks"]
    assert sink["lag"] == {shop.topic: 0}
    (topic,) = [t for t in report["topics"] if t["name"] == shop.topic]
    assert topic["records"] == records


def test_tail_no_follow_waits_for_the_end_offsets_and_fails_naming_a_partition_it_cannot_reach(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.insert(range(1, 11))
    run_file = shop.run_file(with_sink=False)
    produced = liberate("run", str(run_file), "--once", cwd=shop.directory)
    assert produced.returncode == 0, produced.stderr
    # A transaction left open past the committed records: a read_committed consumer cannot
    # pass it, so the end offsets tail set out to reach stay out of reach.
    producer = Producer({"bootstrap.servers": shop.bootstrap,
                         "transactional.id": f"open-{shop.tag}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(shop.topic, key=b"k", value=b"never committed")
    producer.flush(30)
    monkeypatch.setattr(inspect, "TAIL_WAIT_S", 2.0)
    out = io.StringIO()
    try:
        with pytest.raises(FatalError, match=rf"tail of {shop.topic}: 1 partition\(s\) not read"
                                             r" to their end.*\[0\] at \d+ of \d+"):
            inspect.tail(str(run_file), shop.topic, from_beginning=True, limit=None,
                         follow=False, out=out)
        # What came before the open transaction was printed, nothing after it.
        assert [json.loads(line)["key"]["id"] for line in out.getvalue().splitlines()] == [
            *range(1, 11)]
    finally:
        producer.abort_transaction(30)
    out = io.StringIO()
    assert inspect.tail(str(run_file), shop.topic, from_beginning=True, limit=None,
                        follow=False, out=out) == 0
    assert [json.loads(line)["key"]["id"] for line in out.getvalue().splitlines()] == [
        *range(1, 11)]
