"""The offsets a source task stores with a batch: the last record's of each source partition."""

from __future__ import annotations

from liberate.records import SourceRecord
from liberate.runtime._source_task import _last_offsets
from liberate.streams.base import SourceOffset


def _record(partition: dict[str, str | int | float | bool | None], position: int) -> SourceRecord:
    return SourceRecord("t", None, None, None, None, partition, {"position": position})


def test_a_batch_of_one_partition_stores_the_offset_of_its_last_record() -> None:
    partition: dict[str, str | int | float | bool | None] = {"server": "a"}
    records = [_record(partition, n) for n in range(5)]
    assert _last_offsets("s", records) == [SourceOffset("s", partition, {"position": 4})]


def test_each_partition_stores_the_offset_of_its_own_last_record() -> None:
    a: dict[str, str | int | float | bool | None] = {"table": "a"}
    b: dict[str, str | int | float | bool | None] = {"table": "b"}
    records = [_record(a, 1), _record(b, 2), _record(a, 3), _record(b, 4), _record(a, 5)]
    offsets = {o.partition_key: o.offset for o in _last_offsets("s", records)}
    assert offsets == {'{"table":"a"}': {"position": 5}, '{"table":"b"}': {"position": 4}}


def test_equal_partition_maps_that_are_distinct_objects_are_one_partition() -> None:
    records = [_record({"server": "a"}, 1), _record({"server": "a"}, 2)]
    assert _last_offsets("s", records) == [SourceOffset("s", {"server": "a"}, {"position": 2})]


def test_an_empty_batch_stores_no_offset() -> None:
    assert _last_offsets("s", []) == []
