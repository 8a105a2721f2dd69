"""The sink conformance suite: what every ``Sink`` must do (DESIGN §2, §7).

Use it by subclassing :class:`SinkConformance` in a test module and providing a ``harness``
fixture (a :class:`SinkHarness`)::

    class TestMySinkConformance(SinkConformance):
        @pytest.fixture
        def harness(self, ...) -> SinkHarness:
            return MyHarness(...)

The suite writes *items*: entity records keyed by ``{"id": long}`` with value
``{"id", "name", "qty"}`` (schemas below, shaped as ``liberate.schema.tables`` builds them),
and tombstones. It checks the lifecycle, the offsets round-trip, that a restarted sink resumes
from its own offsets without repeating or losing anything, and that a batch holding a record
the target refuses leaves neither rows nor offsets behind.

The record builders here are plain functions, usable by any sink's own tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pytest

from liberate.connector import CheckResult, Sink
from liberate.errors import RecordError
from liberate.records import SinkRecord, TopicPartition
from liberate.schema.avro import AvroSchema

ITEMS_TOPIC = "conformance.items"
NAMESPACE = "conformance.items"

ITEM_KEY_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "Key",
        "namespace": NAMESPACE,
        "fields": [{"name": "id", "type": "long"}],
    }
)
ITEM_VALUE_SCHEMA = AvroSchema(
    {
        "type": "record",
        "name": "Value",
        "namespace": NAMESPACE,
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": "string"},
            {"name": "qty", "type": ["null", "int"], "default": None},
        ],
    }
)

#: what a harness reports of the target: ``{id: (name, qty)}``
Contents = dict[int, tuple[str, int | None]]


def item(
    offset: int,
    item_id: int,
    name: str,
    qty: int | None = None,
    *,
    partition: int = 0,
    topic: str = ITEMS_TOPIC,
) -> SinkRecord:
    """An entity record of one item."""
    return SinkRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key={"id": item_id},
        value={"id": item_id, "name": name, "qty": qty},
        key_schema=ITEM_KEY_SCHEMA,
        value_schema=ITEM_VALUE_SCHEMA,
    )


def tombstone(
    offset: int, item_id: int, *, partition: int = 0, topic: str = ITEMS_TOPIC
) -> SinkRecord:
    """A tombstone (null value) for one item's key."""
    return SinkRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key={"id": item_id},
        value=None,
        key_schema=ITEM_KEY_SCHEMA,
        value_schema=None,
    )


class SinkHarness(Protocol):
    """What the suite needs to drive one sink over one target."""

    def new_sink(self) -> Sink:
        """A new, unopened sink on the same target as every other call (a restarted process)."""
        ...

    def contents(self) -> Contents:
        """The items the target holds now, read directly from it."""
        ...

    def refused_record(self, offset: int, *, partition: int = 0) -> SinkRecord:
        """A record of ``ITEMS_TOPIC`` the target refuses once items were written."""
        ...


class SinkConformance:
    """The suite. Subclasses provide the ``harness`` fixture."""

    def test_lifecycle_check_open_write_close(self, harness: SinkHarness) -> None:
        sink = harness.new_sink()
        results = sink.check()
        assert all(isinstance(r, CheckResult) for r in results)
        assert [r for r in results if not r.ok] == []
        sink.open()
        tp = TopicPartition(ITEMS_TOPIC, 0)
        assert sink.committed_offsets([tp]) == {}
        sink.write([])
        sink.write([item(0, 1, "one", 1), item(1, 2, "two")])
        assert harness.contents() == {1: ("one", 1), 2: ("two", None)}
        assert sink.committed_offsets([tp]) == {tp: 2}
        sink.close()
        sink.close()  # idempotent

    def test_committed_offsets_round_trip_per_partition(self, harness: SinkHarness) -> None:
        sink = harness.new_sink()
        sink.open()
        p0, p1, unknown = (TopicPartition(ITEMS_TOPIC, p) for p in (0, 1, 7))
        sink.write([item(o, o, f"p0-{o}") for o in range(5)])
        sink.write([item(o, 100 + o, f"p1-{o}", partition=1) for o in range(10, 13)])
        assert sink.committed_offsets([p0, p1, unknown]) == {p0: 5, p1: 13}
        sink.close()
        restarted = harness.new_sink()
        restarted.open()
        assert restarted.committed_offsets([p0, p1, unknown]) == {p0: 5, p1: 13}
        assert restarted.committed_offsets([p1]) == {p1: 13}
        restarted.close()

    def test_restart_resumes_from_its_offsets_repeating_and_losing_nothing(
        self, harness: SinkHarness
    ) -> None:
        stream = {
            p: [item(o, p * 1000 + o, f"item {p}/{o}", o, partition=p) for o in range(12)]
            for p in (0, 1)
        }
        first = harness.new_sink()
        first.open()
        first.write([*stream[0][:5], *stream[1][:3]])
        first.write([*stream[0][5:7]])
        # The process dies here: the sink is never closed, nothing else is flushed.
        restarted = harness.new_sink()
        restarted.open()
        partitions = [TopicPartition(ITEMS_TOPIC, p) for p in (0, 1)]
        resume = restarted.committed_offsets(partitions)
        assert resume == {partitions[0]: 7, partitions[1]: 3}
        for tp in partitions:
            remaining = stream[tp.partition][resume[tp] :]
            for start in range(0, len(remaining), 4):
                restarted.write(remaining[start : start + 4])
        expected = {p * 1000 + o: (f"item {p}/{o}", o) for p in (0, 1) for o in range(12)}
        assert harness.contents() == expected
        restarted.close()
        first.close()

    def test_replaying_a_written_batch_writes_nothing_twice(self, harness: SinkHarness) -> None:
        sink = harness.new_sink()
        sink.open()
        batch = [item(0, 1, "one"), item(1, 2, "two"), tombstone(2, 1)]
        sink.write(batch)
        # A retry after an ambiguous commit hands the same records again.
        sink.write(batch)
        sink.write([*batch, item(3, 3, "three")])
        assert harness.contents() == {2: ("two", None), 3: ("three", None)}
        tp = TopicPartition(ITEMS_TOPIC, 0)
        assert sink.committed_offsets([tp]) == {tp: 4}
        sink.close()

    def test_a_refused_record_leaves_nothing_of_its_batch(self, harness: SinkHarness) -> None:
        sink = harness.new_sink()
        sink.open()
        sink.write([item(0, 1, "one"), item(1, 2, "two")])
        bad = harness.refused_record(4)
        batch: Sequence[SinkRecord] = [item(2, 3, "three"), tombstone(3, 1), bad, item(5, 4, "x")]
        with pytest.raises(RecordError) as refused:
            sink.write(batch)
        assert "4" in (refused.value.origin or "")
        tp = TopicPartition(ITEMS_TOPIC, 0)
        assert harness.contents() == {1: ("one", None), 2: ("two", None)}
        assert sink.committed_offsets([tp]) == {tp: 2}
        # Without the refused record the same batch goes through.
        sink.write([r for r in batch if r is not bad])
        assert harness.contents() == {2: ("two", None), 3: ("three", None), 4: ("x", None)}
        assert sink.committed_offsets([tp]) == {tp: 6}
        sink.close()

    def test_tombstone_removes_the_item(self, harness: SinkHarness) -> None:
        sink = harness.new_sink()
        sink.open()
        sink.write([item(0, 1, "one"), item(1, 2, "two")])
        sink.write([tombstone(2, 1), tombstone(3, 99)])  # a key never written is no error
        assert harness.contents() == {2: ("two", None)}
        sink.close()
