"""The stream backend conformance suite: what every ``StreamBackend`` must do (DESIGN §5).

Use it by subclassing :class:`BackendConformance` in a test module and overriding the
``backend_factory`` fixture::

    class TestEmbeddedConformance(BackendConformance):
        @pytest.fixture
        def backend_factory(self, tmp_path: Path) -> BackendFactory:
            return functools.partial(EmbeddedBackend, tmp_path / "streams.db")

The factory returns a new, unopened backend on the *same* storage each time it is called (a
restarted process sees what an earlier one wrote), and must be picklable (a
``functools.partial`` of the backend class): the crash test calls it in a child process.
Topic and group names are unique per test, so a shared broker can serve the whole suite.

Class attributes tune the suite to a backend's nature:

- ``contiguous_offsets``: offsets of committed records have no gaps (False for Kafka with
  transactions, whose commit markers take offsets).
- ``poll_timeout_s``: how long a poll may wait for records known to exist (a Kafka group
  join takes seconds); ``quiet_s``: how long to wait to conclude that nothing more comes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import ClassVar

import pytest

from liberate.errors import LiberateError
from liberate.records import ConsumedRecord, StreamRecord, TopicPartition
from liberate.streams.base import SourceOffset, StreamBackend, StreamConsumer

BackendFactory = Callable[[], StreamBackend]


def records_of(topic: str, values: Sequence[bytes], key: bytes | None = b"k") -> list[StreamRecord]:
    """Records of ``topic`` with one key and the given values."""
    return [StreamRecord(topic, key, value) for value in values]


def _append_forever(factory: BackendFactory, topic: str, source: str) -> None:
    """Child process of the crash test: resumes from its stored offset, then appends numbered
    records with their count as the source offset until it is killed."""
    backend = factory()
    backend.open()
    stored = list(backend.source_offsets(source).values())
    count = int(str(stored[0]["count"])) if stored else 0
    while True:
        size = 1 + count % 37
        batch = [StreamRecord(topic, b"k", str(n).encode()) for n in range(count, count + size)]
        count += size
        backend.append(batch, [SourceOffset(source, {"p": "0"}, {"count": count})])


def _stored_count(backend: StreamBackend, source: str) -> int:
    stored = list(backend.source_offsets(source).values())
    return int(str(stored[0]["count"])) if stored else 0


class BackendConformance:
    """Backend-agnostic tests; subclasses provide ``backend_factory``."""

    contiguous_offsets: ClassVar[bool] = True
    poll_timeout_s: ClassVar[float] = 5.0
    quiet_s: ClassVar[float] = 0.3

    # -- fixtures and helpers ----------------------------------------------------------------

    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        raise NotImplementedError("subclasses override the backend_factory fixture")

    @pytest.fixture
    def backend(self, backend_factory: BackendFactory) -> Iterator[StreamBackend]:
        backend = backend_factory()
        backend.open()
        try:
            yield backend
        finally:
            backend.close()

    @pytest.fixture
    def topic(self) -> str:
        return f"conformance.{uuid.uuid4().hex[:12]}"

    @pytest.fixture
    def group(self) -> str:
        return f"group-{uuid.uuid4().hex[:12]}"

    def consume(
        self, consumer: StreamConsumer, expected: int, *, max_records: int = 500
    ) -> list[ConsumedRecord]:
        """``expected`` records (fails if fewer come in time), plus any extra that arrive."""
        got: list[ConsumedRecord] = []
        deadline = time.monotonic() + self.poll_timeout_s + expected / 10_000
        while len(got) < expected and time.monotonic() < deadline:
            got += consumer.poll(max_records, 0.2)
        assert len(got) >= expected, f"only {len(got)} of {expected} records arrived"
        got += consumer.poll(max_records, self.quiet_s)
        return got

    def read_all(
        self,
        backend: StreamBackend,
        topic: str,
        expected: int,
        *,
        group: str | None = None,
    ) -> list[ConsumedRecord]:
        consumer = backend.consumer(group or f"reader-{uuid.uuid4().hex[:8]}", topics=[topic])
        try:
            return self.consume(consumer, expected)
        finally:
            consumer.close()

    # -- append and read -------------------------------------------------------------------

    def test_records_read_back_in_append_order_with_their_keys_and_values(
        self, backend: StreamBackend, topic: str
    ) -> None:
        values = [f"v{i}".encode() for i in range(25)]
        backend.append(records_of(topic, values[:10]), [])
        backend.append(records_of(topic, values[10:]), [])

        got = self.read_all(backend, topic, 25)

        assert [r.value for r in got] == values
        assert {r.key for r in got} == {b"k"}
        assert {(r.topic, r.partition) for r in got} == {(topic, 0)}
        assert all(b.offset > a.offset for a, b in itertools.pairwise(got))
        if self.contiguous_offsets:
            assert [r.offset for r in got] == list(range(25))
        assert all(r.timestamp_ms is not None and r.timestamp_ms > 0 for r in got)

    def test_on_assign_starts_a_consumer_at_a_middle_offset(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.append(records_of(topic, [str(i).encode() for i in range(10)]), [])
        everything = self.read_all(backend, topic, 10)
        middle = everything[6].offset

        def start_in_the_middle(partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
            return {tp: middle for tp in partitions if tp.topic == topic}

        consumer = backend.consumer(group, topics=[topic], on_assign=start_in_the_middle)
        try:
            got = self.consume(consumer, 4)
        finally:
            consumer.close()
        assert [r.value for r in got] == [b"6", b"7", b"8", b"9"]

    def test_timestamps_given_by_the_source_are_kept(
        self, backend: StreamBackend, topic: str
    ) -> None:
        backend.append([StreamRecord(topic, b"k", b"v", timestamp_ms=1_700_000_000_123)], [])

        (record,) = self.read_all(backend, topic, 1)

        assert record.timestamp_ms == 1_700_000_000_123

    def test_tombstones_round_trip_as_none_values(self, backend: StreamBackend, topic: str) -> None:
        backend.append([StreamRecord(topic, b"k1", b"v"), StreamRecord(topic, b"k1", None)], [])

        got = self.read_all(backend, topic, 2)

        assert [(r.key, r.value) for r in got] == [(b"k1", b"v"), (b"k1", None)]

    def test_empty_values_are_not_tombstones(self, backend: StreamBackend, topic: str) -> None:
        backend.append([StreamRecord(topic, b"", b"")], [])

        (record,) = self.read_all(backend, topic, 1)

        assert (record.key, record.value) == (b"", b"")

    def test_records_without_key_are_stored(self, backend: StreamBackend, topic: str) -> None:
        backend.append(records_of(topic, [b"a", b"b"], key=None), [])

        got = self.read_all(backend, topic, 2)

        assert sorted((r.key, r.value) for r in got if r.value) == [(None, b"a"), (None, b"b")]

    def test_headers_round_trip_in_order_with_duplicates_and_binary_values(
        self, backend: StreamBackend, topic: str
    ) -> None:
        headers = (("trace", b"\x00\xff"), ("tenant", b"acme"), ("trace", b""), ("名前", b"x"))
        backend.append(
            [StreamRecord(topic, b"k", b"v", headers=headers), StreamRecord(topic, b"k", b"w")],
            [],
        )

        got = self.read_all(backend, topic, 2)

        assert got[0].headers == headers
        assert got[1].headers == ()

    def test_records_of_one_key_keep_their_order_across_partitions(
        self, backend: StreamBackend, topic: str
    ) -> None:
        backend.ensure_topic(topic, partitions=3)
        keys = [f"key-{i}".encode() for i in range(12)]
        sent: dict[bytes, int] = dict.fromkeys(keys, 0)
        for batch in range(20):
            records: list[StreamRecord] = []
            for i in range(30):
                key = keys[(batch * 7 + i * 5) % len(keys)]
                records.append(StreamRecord(topic, key, str(sent[key]).encode()))
                sent[key] += 1
            backend.append(records, [])

        got = self.read_all(backend, topic, 600)

        assert len(got) == 600
        by_key: dict[bytes | None, list[ConsumedRecord]] = {}
        for record in got:
            by_key.setdefault(record.key, []).append(record)
        partitions_used = set()
        for maybe_key, of_key in by_key.items():
            assert maybe_key is not None
            key = maybe_key
            assert {r.partition for r in of_key} == {of_key[0].partition}, key
            # consume() interleaves partitions, but within one partition order is offset order
            assert [int(r.value or b"") for r in of_key] == list(range(sent[key])), key
            partitions_used.add(of_key[0].partition)
        assert len(partitions_used) > 1, "12 keys should spread over 3 partitions"

    # -- atomicity and source offsets ------------------------------------------------------

    def test_source_offsets_keep_the_last_value_per_partition_and_source(
        self, backend: StreamBackend, topic: str
    ) -> None:
        source = f"src-{uuid.uuid4().hex[:8]}"
        other = f"other-{uuid.uuid4().hex[:8]}"
        backend.append(
            records_of(topic, [b"a"]),
            [
                SourceOffset(source, {"table": "t1"}, {"id": 1}),
                SourceOffset(source, {"table": "t2"}, {"id": 7, "ts": "2024-01-01"}),
                SourceOffset(other, {"table": "t1"}, {"id": 100}),
            ],
        )
        backend.append(
            records_of(topic, [b"b"]), [SourceOffset(source, {"table": "t1"}, {"id": 2})]
        )
        backend.append([], [SourceOffset(source, {"table": "t1"}, {"id": 3, "done": True})])

        stored = backend.source_offsets(source)

        assert stored == {
            SourceOffset(source, {"table": "t1"}, {}).partition_key: {"id": 3, "done": True},
            SourceOffset(source, {"table": "t2"}, {}).partition_key: {"id": 7, "ts": "2024-01-01"},
        }
        assert list(backend.source_offsets(other).values()) == [{"id": 100}]
        assert backend.source_offsets(f"unknown-{uuid.uuid4().hex}") == {}

    def test_a_failed_append_makes_neither_records_nor_offsets_visible(
        self, backend: StreamBackend, topic: str
    ) -> None:
        source = f"src-{uuid.uuid4().hex[:8]}"
        good = records_of(topic, [b"lost-1", b"lost-2"])
        bad = StreamRecord("not a valid topic name!", b"k", b"v")
        with pytest.raises(LiberateError):
            backend.append([*good, bad], [SourceOffset(source, {"p": "0"}, {"n": 3})])

        backend.append(records_of(topic, [b"kept"]), [SourceOffset(source, {"p": "0"}, {"n": 4})])

        got = self.read_all(backend, topic, 1)
        assert [r.value for r in got] == [b"kept"]
        assert list(backend.source_offsets(source).values()) == [{"n": 4}]

    def test_records_and_offsets_stay_consistent_when_the_writer_is_killed(
        self, backend_factory: BackendFactory, topic: str
    ) -> None:
        source = f"crash-{uuid.uuid4().hex[:8]}"
        observer = backend_factory()
        observer.open()
        try:
            # Each round kills the writer at a random point and restarts it from its offset.
            for round_ in range(1, 4):
                self._run_writer_until_killed(
                    backend_factory, observer, topic, source, at_least=1000 * round_
                )
        finally:
            observer.close()

        reopened = backend_factory()
        reopened.open()
        try:
            count = _stored_count(reopened, source)
            got = self.read_all(reopened, topic, count)
        finally:
            reopened.close()

        assert count >= 3000
        assert [r.value for r in got] == [str(n).encode() for n in range(count)]
        if self.contiguous_offsets:
            assert [r.offset for r in got] == list(range(count))

    @staticmethod
    def _run_writer_until_killed(
        factory: BackendFactory,
        observer: StreamBackend,
        topic: str,
        source: str,
        *,
        at_least: int,
    ) -> None:
        child = multiprocessing.get_context("spawn").Process(
            target=_append_forever, args=(factory, topic, source), daemon=True
        )
        child.start()
        try:
            deadline = time.monotonic() + 60
            while _stored_count(observer, source) < at_least:
                assert time.monotonic() < deadline, "the writer made no progress"
                assert child.is_alive(), f"the writer died with exit code {child.exitcode}"
                time.sleep(0.01)
            assert child.pid is not None
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
        finally:
            if child.is_alive():
                child.kill()
                child.join()

    # -- consumer groups -------------------------------------------------------------------

    def test_a_new_consumer_of_a_group_resumes_after_the_committed_offset(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.append(records_of(topic, [str(i).encode() for i in range(10)]), [])
        first = backend.consumer(group, topics=[topic])
        try:
            got = self.consume(first, 10)
            fourth = got[3]
            first.commit({TopicPartition(topic, fourth.partition): fourth.offset + 1})
        finally:
            first.close()

        second = backend.consumer(group, topics=[topic])
        try:
            resumed = self.consume(second, 6)
        finally:
            second.close()

        assert [r.value for r in resumed] == [str(i).encode() for i in range(4, 10)]
        assert backend.group_offsets(group) == {
            TopicPartition(topic, fourth.partition): fourth.offset + 1
        }
        assert group in backend.groups()

    def test_on_assign_offset_wins_over_the_committed_offset(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.append(records_of(topic, [str(i).encode() for i in range(10)]), [])
        everything = self.read_all(backend, topic, 10)
        committer = backend.consumer(group, topics=[topic])
        try:
            self.consume(committer, 10)
            committer.commit({TopicPartition(topic, 0): everything[8].offset})
        finally:
            committer.close()

        def from_the_start(partitions: Sequence[TopicPartition]) -> Mapping[TopicPartition, int]:
            return {tp: everything[0].offset for tp in partitions}

        consumer = backend.consumer(group, topics=[topic], on_assign=from_the_start)
        try:
            got = self.consume(consumer, 10)
        finally:
            consumer.close()
        assert [r.value for r in got] == [str(i).encode() for i in range(10)]

    def test_from_beginning_false_reads_only_new_records(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.append(records_of(topic, [b"old"]), [])
        consumer = backend.consumer(group, topics=[topic], from_beginning=False)
        try:
            assert consumer.poll(10, self.quiet_s) == []
            backend.append(records_of(topic, [b"new"]), [])
            got = self.consume(consumer, 1)
        finally:
            consumer.close()
        assert [r.value for r in got] == [b"new"]

    def test_poll_waits_for_records_appended_while_it_waits(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.ensure_topic(topic)
        consumer = backend.consumer(group, topics=[topic])
        try:
            consumer.poll(10, self.quiet_s)  # joined and idle
            timer = threading.Timer(0.3, backend.append, (records_of(topic, [b"late"]), []))
            timer.start()
            started = time.monotonic()
            got = consumer.poll(10, self.poll_timeout_s + 5)
            waited = time.monotonic() - started
            timer.join()
        finally:
            consumer.close()
        assert [r.value for r in got] == [b"late"]
        assert waited < self.poll_timeout_s + 4

    def test_poll_returns_an_empty_list_when_nothing_comes(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.ensure_topic(topic)
        consumer = backend.consumer(group, topics=[topic])
        try:
            started = time.monotonic()
            assert consumer.poll(10, 0.3) == []
            assert time.monotonic() - started >= 0.25
        finally:
            consumer.close()

    def test_a_pattern_consumer_picks_up_topics_created_later(
        self, backend: StreamBackend, topic: str, group: str
    ) -> None:
        backend.append(records_of(f"{topic}.a", [b"a"]), [])
        consumer = backend.consumer(group, pattern=rf"{topic}\..*")
        try:
            first = self.consume(consumer, 1)
            backend.append(records_of(f"{topic}.b", [b"b"]), [])
            backend.append(records_of(f"{topic}-other", [b"x"]), [])
            later = self.consume(consumer, 1)
        finally:
            consumer.close()
        assert [(r.topic, r.value) for r in first] == [(f"{topic}.a", b"a")]
        assert [(r.topic, r.value) for r in later] == [(f"{topic}.b", b"b")]

    # -- topics ----------------------------------------------------------------------------

    def test_topics_reports_partitions_compaction_and_end_offsets(
        self, backend: StreamBackend, topic: str
    ) -> None:
        backend.ensure_topic(topic, compacted=True, partitions=2)
        backend.ensure_topic(topic, compacted=True, partitions=2)  # a no-op the second time
        keys = [f"k{i}".encode() for i in range(20)]
        backend.append([StreamRecord(topic, key, b"v") for key in keys], [])

        infos = {info.name: info for info in backend.topics()}

        info = infos[topic]
        assert info.partitions == 2
        assert info.compacted is True
        assert set(info.end_offsets) == {0, 1}
        if self.contiguous_offsets:
            assert sum(info.end_offsets.values()) == 20
            assert info.records == 20
        else:
            assert sum(info.end_offsets.values()) >= 20
        names = [i.name for i in backend.topics()]
        assert names == sorted(names)

    def test_appending_to_a_new_topic_creates_it(self, backend: StreamBackend, topic: str) -> None:
        backend.append(records_of(topic, [b"a", b"b", b"c"]), [])

        info = {i.name: i for i in backend.topics()}[topic]

        assert info.partitions == 1
        assert info.end_offsets[0] >= 3

    def test_written_data_is_visible_to_a_reopened_backend(
        self, backend_factory: BackendFactory, backend: StreamBackend, topic: str, group: str
    ) -> None:
        source = f"src-{uuid.uuid4().hex[:8]}"
        backend.append(records_of(topic, [b"a"]), [SourceOffset(source, {"p": "0"}, {"n": 1})])
        backend.close()

        again = backend_factory()
        again.open()
        try:
            assert list(again.source_offsets(source).values()) == [{"n": 1}]
            assert [r.value for r in self.read_all(again, topic, 1)] == [b"a"]
        finally:
            again.close()
