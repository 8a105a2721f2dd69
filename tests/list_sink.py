"""A tiny in-memory sink for runtime tests: keeps what it is given and its offsets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from liberate.config.base import SinkConfig
from liberate.connector import Sink
from liberate.errors import RetriableError
from liberate.records import SinkRecord, TopicPartition


class ListSink(Sink):
    """Keeps what it is given; fails with ``RetriableError`` ``failures`` times first."""

    config_model = SinkConfig

    def __init__(self, *, failures: int = 0, name: str = "list", topic: str = "t") -> None:
        super().__init__(SinkConfig(name=name, connector="list", topics=[topic]))
        self.written: list[SinkRecord] = []
        self.failures = failures
        self.offsets: dict[TopicPartition, int] = {}

    def open(self) -> None:
        pass

    def committed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.offsets[tp] for tp in partitions if tp in self.offsets}

    def write(self, batch: Sequence[SinkRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise RetriableError("connection lost")
        self.written.extend(batch)
        for record in batch:
            self.offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1

    def close(self) -> None:
        pass
