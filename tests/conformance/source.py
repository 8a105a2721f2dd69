"""The source conformance suite: what every ``Source`` must do (DESIGN §7).

Use it by subclassing :class:`SourceConformance` in a test module and overriding two fixtures::

    class TestMySourceConformance(SourceConformance):
        @pytest.fixture
        def source_factory(self, ...) -> SourceFactory:
            return lambda: MySource(config)          # a new, unopened source each call

        @pytest.fixture
        def insert_rows(self, ...) -> RowWriter:
            return writer                              # makes n new rows appear, returns ids

``source_factory`` returns a new, unopened source on the *same* database each time it is called
(a restarted process). ``insert_rows(n)`` makes ``n`` new rows appear in that database and
returns their identities, as ``identity(record)`` computes them for the records the source
produces for those rows (by default: topic and key). Configure the source with a small batch so
that the suite's handful of rows spans several polls and offsets are taken inside batches.

Class attributes tune the suite to a source's nature:

- ``replays_after_complete_cycle``: a restarted source reads everything again once its last
  cycle completed (bulk reloads); the no-repeat-after-restart test is then skipped.
- ``max_polls``: how many polls draining may take before the test fails.
- ``stop_timeout_s``: how soon ``poll`` must return after ``stop()``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import ClassVar

import pytest

from liberate.connector import Source
from liberate.records import Primitive, SourceRecord
from liberate.schema.avro import encode
from liberate.streams.base import partition_key

SourceFactory = Callable[[], Source]
RowWriter = Callable[[int], list[Hashable]]
StoredOffsets = dict[str, Mapping[str, Primitive]]

_PRIMITIVES = (str, int, float, bool, type(None))


def default_identity(record: SourceRecord) -> Hashable:
    """A record's identity: its topic and its key as canonical JSON."""
    key = None if record.key is None else dict(record.key)  # any Mapping, not only a dict
    return (record.topic, json.dumps(key, sort_keys=True, default=str))


def drain(source: Source, *, max_polls: int = 10_000) -> list[SourceRecord]:
    """Poll until the source has caught up and a poll returns nothing; every record returned."""
    records: list[SourceRecord] = []
    for _ in range(max_polls):
        batch = source.poll()
        records.extend(batch)
        if not batch and source.caught_up():
            return records
    pytest.fail(f"source did not catch up within {max_polls} polls")


def offsets_after(records: Sequence[SourceRecord]) -> StoredOffsets:
    """The stored offsets once ``records`` are durable: the last offset of each partition."""
    stored: StoredOffsets = {}
    for record in records:
        stored[partition_key(record.partition)] = dict(record.offset)
    return stored


class SourceConformance:
    """Source-agnostic tests; subclasses provide ``source_factory`` and ``insert_rows``."""

    replays_after_complete_cycle: ClassVar[bool] = False
    max_polls: ClassVar[int] = 10_000
    stop_timeout_s: ClassVar[float] = 10.0

    # -- fixtures and helpers ----------------------------------------------------------------

    @pytest.fixture
    def source_factory(self) -> SourceFactory:
        raise NotImplementedError("subclasses override the source_factory fixture")

    @pytest.fixture
    def insert_rows(self) -> RowWriter:
        raise NotImplementedError("subclasses override the insert_rows fixture")

    def identity(self, record: SourceRecord) -> Hashable:
        return default_identity(record)

    def identities(self, records: Sequence[SourceRecord]) -> Counter[Hashable]:
        return Counter(self.identity(r) for r in records)

    def read_all(self, factory: SourceFactory, offsets: StoredOffsets) -> list[SourceRecord]:
        """Open a new source at ``offsets``, drain it, close it."""
        source = factory()
        source.open(offsets)
        try:
            return drain(source, max_polls=self.max_polls)
        finally:
            source.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def test_open_poll_close_reads_every_row_once(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        expected = insert_rows(7)
        source = source_factory()
        source.open({})
        try:
            records = drain(source, max_polls=self.max_polls)
            assert source.caught_up()
        finally:
            source.close()
        assert self.identities(records) == Counter(expected)

    def test_close_is_idempotent(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        insert_rows(1)
        source = source_factory()
        source.open({})
        source.close()
        source.close()

    def test_records_are_well_formed_and_encode_with_their_schemas(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        insert_rows(5)
        records = self.read_all(source_factory, {})
        assert records
        for record in records:
            assert record.topic
            for mapping in (record.partition, record.offset):
                assert all(isinstance(k, str) for k in mapping)
                assert all(isinstance(v, _PRIMITIVES) for v in mapping.values()), mapping
                json.dumps(dict(mapping))
            pairs = ((record.key, record.key_schema), (record.value, record.value_schema))
            for data, schema in pairs:
                if data is not None:
                    assert schema is not None
                    assert encode(1, schema, data)[:1] == b"\x00"

    # -- offsets -----------------------------------------------------------------------------

    def test_resuming_from_any_record_offset_neither_repeats_nor_loses(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        expected = Counter(insert_rows(7))
        first = self.read_all(source_factory, {})
        assert self.identities(first) == expected
        for durable in sorted({1, len(first) // 2, len(first) - 1}):
            # A crash after the first `durable` records were stored, in or at the end of a batch.
            rest = self.read_all(source_factory, offsets_after(first[:durable]))
            resumed = self.identities(first[:durable]) + self.identities(rest)
            assert resumed == expected, f"resumed after {durable} record(s)"

    def test_restart_after_everything_is_durable_replays_nothing(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        if self.replays_after_complete_cycle:
            pytest.skip("this source reads everything again in each cycle")
        insert_rows(5)
        first = self.read_all(source_factory, {})
        assert first
        assert self.read_all(source_factory, offsets_after(first)) == []

    def test_rows_that_appear_after_catching_up_are_read_next(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        before = Counter(insert_rows(4))
        source = source_factory()
        source.open({})
        try:
            assert self.identities(drain(source, max_polls=self.max_polls)) == before
            after = Counter(insert_rows(3))
            again = drain(source, max_polls=self.max_polls)
        finally:
            source.close()
        counts = self.identities(again)
        assert all(counts[i] == n for i, n in after.items()), "every new row read once"
        if not self.replays_after_complete_cycle:
            assert counts == after

    def test_reopening_the_same_instance_resumes(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        # The runtime re-opens a source after a retriable failure, with the durable offsets.
        expected = Counter(insert_rows(6))
        source = source_factory()
        source.open({})
        first = source.poll()
        source.close()
        assert first
        source.open(offsets_after(first))
        try:
            rest = drain(source, max_polls=self.max_polls)
        finally:
            source.close()
        assert self.identities(first) + self.identities(rest) == expected

    # -- threading ---------------------------------------------------------------------------

    def test_stop_from_another_thread_makes_poll_return_promptly(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        insert_rows(30)
        source = source_factory()
        source.open({})
        polled: list[list[SourceRecord]] = []
        first_batch, stopped, finished = threading.Event(), threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def poll_until_empty() -> None:
            try:
                while True:
                    batch = source.poll()
                    polled.append(batch)
                    if not batch:
                        return
                    first_batch.set()
                    stopped.wait(self.stop_timeout_s)
            except BaseException as exc:
                errors.append(exc)
            finally:
                first_batch.set()
                finished.set()

        thread = threading.Thread(target=poll_until_empty, daemon=True)
        try:
            thread.start()
            assert first_batch.wait(self.stop_timeout_s)
            source.stop()
            stopped.set()
            assert finished.wait(self.stop_timeout_s), "poll kept going after stop()"
        finally:
            thread.join(self.stop_timeout_s)
            source.close()
        assert not errors, errors
        assert [bool(batch) for batch in polled] == [True, False], "one batch, then nothing"

    def test_stop_before_poll_returns_nothing(
        self, source_factory: SourceFactory, insert_rows: RowWriter
    ) -> None:
        insert_rows(3)
        source = source_factory()
        source.open({})
        try:
            stopper = threading.Thread(target=source.stop)
            stopper.start()
            stopper.join()
            started = time.monotonic()
            assert source.poll() == []
            assert time.monotonic() - started < self.stop_timeout_s
        finally:
            source.close()
