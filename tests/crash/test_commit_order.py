"""The commit order of DESIGN §2, pinned where a kill could break it: a source hears
``commit(positions)`` only once the records up to those positions and the offsets are durable in
the backend, and never for a batch whose append failed (the crash point between the two)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from liberate.config.base import SourceConfig
from liberate.connector import Source
from liberate.errors import RetriableError
from liberate.records import Primitive, SourceRecord, StreamRecord
from liberate.runtime._source_task import SourceTask
from liberate.schema.avro import AvroSchema
from liberate.serde import RecordSerializer
from liberate.streams.base import SourceOffset
from liberate.streams.embedded import EmbeddedBackend

TOPIC = "order.numbers"
BATCH = 10
KEY_SCHEMA = AvroSchema(
    {"type": "record", "name": "Key", "fields": [{"name": "id", "type": "long"}]})
VALUE_SCHEMA = AvroSchema(
    {"type": "record", "name": "Value", "fields": [{"name": "n", "type": "long"}]})


class NumberSource(Source):
    """Numbers 0.. in polls of ``BATCH``; on ``commit`` it notes what the backend holds then."""

    config_model: ClassVar[type[SourceConfig]] = SourceConfig

    def __init__(self, config: SourceConfig, backend: EmbeddedBackend) -> None:
        super().__init__(config)
        self.backend = backend
        self.next = 0
        # (committed n, stored offset n, records in the topic) at each commit
        self.commits: list[tuple[int, int, int]] = []

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        stored = next(iter(offsets.values()), None)
        self.next = int(stored["n"]) + 1 if stored else 0  # type: ignore[arg-type]

    def poll(self) -> list[SourceRecord]:
        numbers = range(self.next, self.next + BATCH)
        self.next += BATCH
        return [
            SourceRecord(TOPIC, {"id": n}, {"n": n}, KEY_SCHEMA, VALUE_SCHEMA, {"p": 0}, {"n": n})
            for n in numbers
        ]

    def caught_up(self) -> bool:
        return False

    def commit(self, offsets: Sequence[SourceOffset]) -> None:
        stored = self.backend.source_offsets(self.name)
        records = sum(t.records for t in self.backend.topics() if t.name == TOPIC)
        self.commits.append(
            (int(offsets[-1].offset["n"]), int(next(iter(stored.values()))["n"]), records)  # type: ignore[arg-type]
        )

    def close(self) -> None:
        pass


class FailingBackend(EmbeddedBackend):
    """An embedded backend whose ``fail_at``-th append fails (the process dies there)."""

    def __init__(self, path: Path, fail_at: int) -> None:
        super().__init__(path)
        self.fail_at = fail_at
        self.appends = 0

    def append(self, records: Sequence[StreamRecord], offsets: Sequence[SourceOffset]) -> None:
        self.appends += 1
        if self.appends == self.fail_at:
            raise RetriableError("the append of this batch never became durable")
        super().append(records, offsets)


def test_a_source_hears_commit_only_for_records_and_offsets_already_durable(
    tmp_path: Path,
) -> None:
    backend = FailingBackend(tmp_path / "streams.db", fail_at=4)
    backend.open()
    source = NumberSource(SourceConfig(name="numbers", connector="numbers"), backend)
    task = SourceTask(source, backend, RecordSerializer(backend.registry()), threading.Event(),
                      once=False, schedule=None, max_retries=0)
    task.run()  # returns when the 4th append fails (no retries left)
    try:
        assert task.stats.error is not None
        # Each commit came after its batch and offset were durable, never before.
        assert source.commits == [
            (BATCH * i - 1, BATCH * i - 1, BATCH * i) for i in range(1, 4)
        ]
        # The failed batch was never confirmed, and nothing of it is in the stream.
        assert sum(t.records for t in backend.topics() if t.name == TOPIC) == 3 * BATCH
        assert int(next(iter(backend.source_offsets("numbers").values()))["n"]) == 3 * BATCH - 1  # type: ignore[arg-type]
    finally:
        backend.close()
