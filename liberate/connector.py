"""The source and sink contracts every connector implements (built-in or third-party).

Connectors are found through the entry points ``liberate.sources`` and ``liberate.sinks``;
each class names its config model in ``config_model`` and is constructed with a validated
instance of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from liberate.config.base import SinkConfig, SourceConfig
from liberate.records import Primitive, SinkRecord, SourceRecord, TopicPartition
from liberate.streams.base import SourceOffset


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of ``liberate check``: what was checked, whether it passed, what to do if not."""

    name: str
    ok: bool
    message: str = ""
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """What ``liberate status`` shows of a connector: where it is and how far behind."""

    position: Mapping[str, Any] = field(default_factory=dict)
    lag: Mapping[str, Any] = field(default_factory=dict)
    state: str = "idle"


class Source(ABC):
    """A source of records, pulled by the runtime.

    Lifecycle: ``__init__(config)`` does no I/O; ``check()`` may be called before ``open``;
    ``open(offsets)`` once; then ``poll()`` repeatedly from one runtime thread; ``commit()``
    after the records of earlier polls are durable; ``close()`` once. ``stop()`` may be called
    from another thread at any time: ``poll`` then returns promptly (possibly empty).
    """

    config_model: ClassVar[type[SourceConfig]]

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def check(self) -> list[CheckResult]:
        """Connectivity and database prerequisites, each failure with its fix. Writes nothing."""
        return []

    @abstractmethod
    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        """Connect and resume from ``offsets`` (partition key -> stored offset).

        Raises ``PrerequisiteError`` (missing table, key, setting) or ``RetriableError``.
        """

    @abstractmethod
    def poll(self) -> list[SourceRecord]:
        """The next records, in order; an empty list when there is nothing new right now."""

    @abstractmethod
    def caught_up(self) -> bool:
        """True once everything up to the position seen at ``open`` has been returned."""

    def commit(self, offsets: Sequence[SourceOffset]) -> None:  # noqa: B027 - optional hook
        """Called after records and ``offsets`` are durable; confirm them to the database."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Ask a blocking ``poll`` to return soon. Thread-safe."""

    def compacts(self, topic: str) -> bool:
        """Whether ``topic`` holds entity state (created compacted) rather than a change log."""
        return False

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        """Position and lag, for ``liberate status``, given the stored ``offsets``.

        Called on a source that is *not* open (``liberate status`` runs in its own process
        while the run goes on): it may connect briefly to measure lag, and writes nothing.
        """
        return ConnectorStatus(position={k: dict(v) for k, v in offsets.items()})

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""


class Sink(ABC):
    """A sink that writes decoded records into a target and keeps its own offsets there.

    Lifecycle: ``__init__(config)`` does no I/O; ``check()`` may come first; ``open()`` once;
    ``committed_offsets()`` when partitions are assigned; ``write(batch)`` repeatedly from one
    thread; ``close()`` once.
    """

    config_model: ClassVar[type[SinkConfig]]

    def __init__(self, config: SinkConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def check(self) -> list[CheckResult]:
        """Connectivity and target prerequisites, each failure with its fix. Writes nothing."""
        return []

    @abstractmethod
    def open(self) -> None:
        """Connect and prepare the offsets store."""

    @abstractmethod
    def committed_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to read of each partition, from the sink's own store.

        Partitions the sink has never written are omitted.
        """

    @abstractmethod
    def write(self, batch: Sequence[SinkRecord]) -> None:
        """Write ``batch`` and its offsets (last offset + 1 per partition) in one transaction.

        On return both are durable; on an exception neither is. Records of one partition
        arrive in offset order.
        """

    def status(self) -> ConnectorStatus:
        """Position and lag, for ``liberate status``."""
        return ConnectorStatus()

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""
