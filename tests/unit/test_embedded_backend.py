"""What the embedded backend does beyond the conformance suite: its file, codec and writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from liberate.errors import FatalError
from liberate.records import StreamRecord, TopicPartition
from liberate.schema.avro import AvroSchema
from liberate.streams import _embedded_codec as codec
from liberate.streams import embedded
from liberate.streams.base import SourceOffset
from liberate.streams.embedded import EmbeddedBackend


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "streams.db"


@pytest.fixture
def backend(store: Path) -> Iterator[EmbeddedBackend]:
    opened = EmbeddedBackend(store)
    opened.open()
    yield opened
    opened.close()


def _values(backend: EmbeddedBackend, topic: str) -> list[tuple[int, bytes | None]]:
    consumer = backend.consumer("reader", topics=[topic])
    try:
        out: list[tuple[int, bytes | None]] = []
        while batch := consumer.poll(1000, 0):
            out += [(r.offset, r.value) for r in batch]
        return out
    finally:
        consumer.close()


# -- partitioner and codec -------------------------------------------------------------------


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


@pytest.mark.parametrize(
    ("data", "java"),
    [  # expected values from Kafka's UtilsTest.testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_java_implementation(data: bytes, java: int) -> None:
    assert _signed(codec.murmur2(data)) == java


def test_a_batch_round_trips_nulls_tombstones_headers_and_timestamps() -> None:
    records = [
        StreamRecord("t", b"k1", b"v1", timestamp_ms=5),
        StreamRecord("t", None, b"v2", headers=(("h", b"\x00"),)),
        StreamRecord("t", b"k3", None),
        StreamRecord("t", b"", b""),
    ]
    payload = codec.encode_batch(records, now_ms=99)

    decoded = codec.decode_batch(payload, topic="t", partition=2, base_offset=10, from_offset=10)

    assert [(r.key, r.value, r.headers, r.timestamp_ms) for r in decoded] == [
        (b"k1", b"v1", (), 5),
        (None, b"v2", (("h", b"\x00"),), 99),
        (b"k3", None, (), 99),
        (b"", b"", (), 99),
    ]
    assert [(r.partition, r.offset) for r in decoded] == [(2, 10), (2, 11), (2, 12), (2, 13)]


def test_decoding_from_a_middle_offset_skips_the_records_before_it() -> None:
    records = [StreamRecord("t", b"k", str(i).encode()) for i in range(5)]
    payload = codec.encode_batch(records, now_ms=1)

    decoded = codec.decode_batch(payload, topic="t", partition=0, base_offset=100, from_offset=103)

    assert [(r.offset, r.value) for r in decoded] == [(103, b"3"), (104, b"4")]


# -- the file ----------------------------------------------------------------------------------


def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    backend = EmbeddedBackend(tmp_path / "a" / "b" / "streams.db")
    backend.open()
    backend.close()
    assert (tmp_path / "a" / "b" / "streams.db").is_file()


def test_a_store_under_a_regular_file_fails_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FatalError, match="cannot open the stream store") as info:
        EmbeddedBackend(tmp_path / "file" / "streams.db").open()
    assert info.value.hint is not None and "writable" in info.value.hint


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the bytes of an SQLite database, " * 100)
    with pytest.raises(FatalError, match="not a liberate stream store"):
        EmbeddedBackend(path).open()


def test_an_application_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.close()

    with pytest.raises(FatalError, match=r"has tables \['orders'\]"):
        EmbeddedBackend(path).open()

    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["orders"]


def test_a_store_written_by_a_newer_format_is_refused(store: Path) -> None:
    EmbeddedBackend(store).open()
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE liberate_meta SET value = '99' WHERE key = 'stream_format'")
    conn.close()
    with pytest.raises(FatalError, match="newer liberate"):
        EmbeddedBackend(store).open()


def test_a_file_the_registry_created_first_becomes_a_store(store: Path) -> None:
    with sqlite3.connect(store) as conn:
        conn.execute("CREATE TABLE registry_subjects (subject TEXT PRIMARY KEY)")
    conn.close()
    backend = EmbeddedBackend(store)
    backend.open()
    backend.append([StreamRecord("t", b"k", b"v")], [])
    backend.close()


def test_the_store_uses_wal_so_readers_do_not_block_the_writer(
    backend: EmbeddedBackend, store: Path
) -> None:
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_using_a_closed_backend_says_to_open_it(store: Path) -> None:
    backend = EmbeddedBackend(store)
    with pytest.raises(FatalError, match="not open"):
        backend.append([StreamRecord("t", b"k", b"v")], [])


def test_synchronous_full_is_accepted(store: Path) -> None:
    backend = EmbeddedBackend(store, synchronous="FULL")
    backend.open()
    backend.append([StreamRecord("t", b"k", b"v")], [])
    assert _values(backend, "t") == [(0, b"v")]
    backend.close()


# -- offsets and writers -----------------------------------------------------------------------


def test_a_failed_append_does_not_use_up_offsets(backend: EmbeddedBackend) -> None:
    backend.append([StreamRecord("t", b"k", b"a")], [])
    with pytest.raises(FatalError, match="invalid topic name"):
        backend.append(
            [StreamRecord("t", b"k", b"lost"), StreamRecord("bad topic", b"k", b"x")], []
        )
    backend.append([StreamRecord("t", b"k", b"b")], [])

    assert _values(backend, "t") == [(0, b"a"), (1, b"b")]
    assert [t.name for t in backend.topics()] == ["t"]


def test_large_appends_split_into_batches_without_gaps(
    backend: EmbeddedBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "MAX_BATCH_RECORDS", 7)
    monkeypatch.setattr(embedded, "MAX_BATCH_BYTES", 100)
    values = [bytes([i % 256]) * (i % 60) for i in range(50)]

    backend.append([StreamRecord("t", b"k", v) for v in values], [])

    assert _values(backend, "t") == list(enumerate(values))
    with sqlite3.connect(backend.path) as conn:
        (batches,) = conn.execute("SELECT count(*) FROM stream_batches").fetchone()
    conn.close()
    assert batches > 50 // 7


def test_two_backends_on_one_file_append_without_reusing_offsets(store: Path) -> None:
    first, second = EmbeddedBackend(store), EmbeddedBackend(store)
    first.open()
    second.open()
    try:
        for i in range(10):
            writer = first if i % 3 else second
            writer.append([StreamRecord("t", b"k", str(i).encode())], [])
        assert _values(first, "t") == [(i, str(i).encode()) for i in range(10)]
    finally:
        first.close()
        second.close()


def test_appends_from_many_threads_all_land_in_order_per_thread(backend: EmbeddedBackend) -> None:
    def write(thread: int) -> None:
        for i in range(50):
            backend.append(
                [StreamRecord("t", f"t{thread}".encode(), f"{thread}:{i}".encode())],
                [SourceOffset(f"src{thread}", {"p": "0"}, {"i": i})],
            )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    got = _values(backend, "t")
    assert [offset for offset, _ in got] == list(range(200))
    for n in range(4):
        mine = [v for _, v in got if v is not None and v.startswith(f"{n}:".encode())]
        assert mine == [f"{n}:{i}".encode() for i in range(50)]
        assert list(backend.source_offsets(f"src{n}").values()) == [{"i": 49}]


def test_null_keys_are_spread_over_partitions(backend: EmbeddedBackend) -> None:
    backend.ensure_topic("t", partitions=3)
    backend.append([StreamRecord("t", None, b"v") for _ in range(9)], [])

    (info,) = backend.topics()

    assert dict(info.end_offsets) == {0: 3, 1: 3, 2: 3}


def test_keys_go_to_the_partition_kafka_would_choose(backend: EmbeddedBackend) -> None:
    backend.ensure_topic("t", partitions=5)
    keys = [f"order-{i}".encode() for i in range(20)]
    backend.append([StreamRecord("t", key, b"v") for key in keys], [])

    consumer = backend.consumer("g", topics=["t"])
    got = consumer.poll(100, 0)
    consumer.close()

    assert {r.key: r.partition for r in got} == {
        key: (codec.murmur2(key) & 0x7FFFFFFF) % 5 for key in keys
    }


def test_a_consumer_reads_what_another_process_appends(
    backend: EmbeddedBackend, store: Path
) -> None:
    backend.ensure_topic("t")
    consumer = backend.consumer("g", topics=["t"])
    script = (
        "import sys; from pathlib import Path\n"
        "from liberate.records import StreamRecord\n"
        "from liberate.streams.embedded import EmbeddedBackend\n"
        "b = EmbeddedBackend(Path(sys.argv[1])); b.open()\n"
        "for i in range(3): b.append([StreamRecord('t', b'k', str(i).encode())], [])\n"
        "b.close()\n"
    )
    try:
        subprocess.run([sys.executable, "-c", script, str(store)], check=True, timeout=60)
        got = consumer.poll(10, 5)
    finally:
        consumer.close()
    assert [r.value for r in got] == [b"0", b"1", b"2"]


def test_group_commits_are_listed_per_group(backend: EmbeddedBackend) -> None:
    backend.append([StreamRecord("t", b"k", b"v")], [])
    consumer = backend.consumer("sink-b", topics=["t"])
    consumer.commit({TopicPartition("t", 0): 1})
    consumer.close()
    backend.consumer("sink-a", topics=["t"]).commit({TopicPartition("t", 0): 0})

    assert backend.groups() == ["sink-a", "sink-b"]
    assert backend.group_offsets("sink-b") == {TopicPartition("t", 0): 1}
    assert backend.group_offsets("nobody") == {}


def test_a_consumer_needs_topics_or_a_pattern(backend: EmbeddedBackend) -> None:
    with pytest.raises(FatalError, match="names no topics"):
        backend.consumer("g")


def test_closing_the_backend_closes_its_consumers(backend: EmbeddedBackend) -> None:
    consumer = backend.consumer("g", topics=["t"])
    backend.close()
    with pytest.raises(FatalError, match="closed"):
        consumer.poll(1, 0)


def test_the_registry_lives_in_the_stream_file_and_closes_with_the_backend(
    backend: EmbeddedBackend, store: Path
) -> None:
    schema = AvroSchema({"type": "record", "name": "K", "fields": [{"name": "id", "type": "long"}]})
    schema_id = backend.registry().register("t-key", schema)
    assert backend.registry() is backend.registry()
    backend.append([StreamRecord("t", b"k", b"v")], [])
    backend.close()

    reopened = EmbeddedBackend(store)
    reopened.open()
    try:
        assert reopened.registry().schema_by_id(schema_id) == schema
        assert [t.name for t in reopened.topics()] == ["t"]
    finally:
        reopened.close()


@pytest.mark.parametrize(("start", "expected"), [(0, 0), (13, 13), (20, 20), (29, 29), (30, 30)])
def test_a_consumer_can_start_inside_any_batch(
    backend: EmbeddedBackend, start: int, expected: int
) -> None:
    for first in range(0, 30, 10):  # three batches: 0-9, 10-19, 20-29
        backend.append(
            [StreamRecord("t", b"k", str(i).encode()) for i in range(first, first + 10)], []
        )

    consumer = backend.consumer("g", topics=["t"], on_assign=lambda tps: dict.fromkeys(tps, start))
    got = consumer.poll(100, 0)
    consumer.close()

    assert [r.offset for r in got] == list(range(expected, 30))
    assert [r.value for r in got] == [str(i).encode() for i in range(expected, 30)]
