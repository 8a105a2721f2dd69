"""The runtime's side of sinks that write some batches from the consumed bytes (``transcode`` /
``write_transcoded``, as the SQL sink's PostgreSQL fast path does): on a real embedded stream,
with a real tiny sink (no database server)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from liberate.records import ConsumedRecord, SinkRecord, TopicPartition
from liberate.schema.avro import AvroSchema
from tests.list_sink import ListSink
from tests.unit.test_sql_sink_runtime import V1, V2, run, stream, task_for


class TranscodingSink(ListSink):
    """Takes batches of V1 values as bytes (their schema found through ``schema_of``); a
    batch with a V2 value is declined, so the runtime decodes it; ``fall_back`` makes
    ``write_transcoded`` decode its batch and write it like ``write``."""

    def __init__(self, *, fall_back: bool = False) -> None:
        super().__init__()
        self.fall_back = fall_back
        self.transcoded: list[list[int]] = []
        self.decoded: list[list[int]] = []

    def transcode(self, batch: Sequence[ConsumedRecord],
                  schema_of: Callable[[int], AvroSchema]) -> object | None:
        for record in batch:
            assert record.value is not None
            if schema_of(int.from_bytes(record.value[1:5], "big")) != V1:
                return None
        return list(batch)

    def write_transcoded(self, batch: object,
                         decode: Callable[[Sequence[ConsumedRecord]], list[SinkRecord]]) -> None:
        assert isinstance(batch, list)
        if self.fall_back:
            self.write(decode(batch))
            return
        self.transcoded.append([r.offset for r in batch])
        for record in batch:
            self.offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1

    def write(self, batch: Sequence[SinkRecord]) -> None:
        self.decoded.append([r.offset for r in batch])
        super().write(batch)


def test_batches_the_sink_transcodes_skip_decoding_and_the_others_are_decoded(
    tmp_path: Path,
) -> None:
    backend = stream(tmp_path, [(V1, 0), (V1, 1), (V1, 2), (V2, 3), (V1, 4), (V1, 5)])
    sink = TranscodingSink()
    task = task_for(sink, backend)  # batches of 2
    try:
        run(task)
    finally:
        backend.close()
    assert task.stats.error is None
    assert sink.transcoded == [[0, 1], [4, 5]]
    assert sink.decoded == [[2, 3]]
    assert [r.value for r in sink.written] == [{"id": 2}, {"id": 3, "n": 3}]


def test_a_transcoded_batch_can_be_decoded_by_the_sink_after_all(tmp_path: Path) -> None:
    backend = stream(tmp_path, [(V1, i) for i in range(4)])
    sink = TranscodingSink(fall_back=True)
    task = task_for(sink, backend)
    try:
        run(task)
    finally:
        backend.close()
    assert task.stats.error is None
    assert sink.decoded == [[0, 1], [2, 3]]
    assert [r.key for r in sink.written] == [{"id": i} for i in range(4)]
