"""A run: every source and sink of a run file, each on its own thread, sharing one backend."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from liberate import plugins
from liberate.config.base import SinkConfig, SourceConfig
from liberate.config.durations import Schedule
from liberate.config.models import RunConfig, StreamsConfig
from liberate.connector import Sink, Source
from liberate.errors import ConfigError
from liberate.runtime._sink_task import SinkTask
from liberate.runtime._source_task import SourceTask
from liberate.serde import RecordDeserializer, RecordSerializer
from liberate.streams.base import StreamBackend

log = logging.getLogger("liberate.runtime")

DEFAULT_SINK_BATCH = 5000
#: net container allocations between young-generation collections while a pipeline runs
#: (Python's default is 700)
GC_YOUNG_THRESHOLD = 100_000


def open_backend(streams: StreamsConfig) -> StreamBackend:
    """The stream backend a run file names, opened.

    ``kafka`` needs ``streams.kafka`` and ``streams.schema_registry`` (the config model
    refuses a run file without them): records on Kafka are only readable by other processes
    through a registry they can reach too, so no private embedded registry stands in.
    """
    backend: StreamBackend
    if streams.backend == "kafka":
        from liberate.streams.kafka import KafkaBackend  # confluent-kafka only when used

        if streams.kafka is None:
            raise ConfigError(
                "streams.backend is kafka but streams.kafka is missing",
                hint="add streams.kafka.bootstrap_servers (see docs/kafka.md)",
            )
        backend = KafkaBackend(streams.kafka, streams.schema_registry)
    else:
        from liberate.streams.embedded import EmbeddedBackend

        backend = EmbeddedBackend(streams.path)
    backend.open()
    return backend


@dataclass
class RunReport:
    """What a run did: records per topic for each source and sink, and any errors."""

    sources: dict[str, Counter[str]] = field(default_factory=dict)
    sinks: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class Pipeline:
    """Runs the sources and sinks of ``run`` against ``backend``.

    ``stop()`` (thread-safe, also from a signal handler) makes every task finish its batch,
    commit and return; ``run()`` then returns the report.
    """

    def __init__(
        self,
        run: RunConfig,
        backend: StreamBackend,
        *,
        once: bool = False,
        max_retries: int | None = None,
    ) -> None:
        self.run_config = run
        self.backend = backend
        self.once = once
        self._stop = threading.Event()
        self._sources_done = threading.Event()
        registry = backend.registry()
        registry.set_compatibility(run.streams.compatibility)
        serializer = RecordSerializer(
            registry, subject_strategy=run.streams.subject_name_strategy
        )
        deserializer = RecordDeserializer(registry)
        # In --once mode a retriable failure must end the run eventually, not hang it.
        retries = max_retries if max_retries is not None else (5 if once else None)
        self.source_tasks = [
            SourceTask(
                build_source(cfg),
                backend,
                serializer,
                self._stop,
                once=once,
                schedule=_schedule_of(cfg),
                max_retries=retries,
            )
            for cfg in run.sources
        ]
        self.sink_tasks = [
            SinkTask(
                build_sink(cfg),
                backend,
                deserializer,
                self._stop,
                once=once,
                sources_done=self._sources_done,
                batch_size=int(getattr(cfg, "batch_size", None) or DEFAULT_SINK_BATCH),
                max_retries=retries,
            )
            for cfg in run.sinks
        ]

    def stop(self) -> None:
        """Ask every task to finish its current batch and return."""
        self._stop.set()
        for task in self.source_tasks:
            task.source.stop()

    def run(self) -> RunReport:
        """Run until stopped, a fatal error, or (``once``) until everything has caught up."""
        with _fewer_collections():
            return self._run()

    def _run(self) -> RunReport:
        source_threads = [
            threading.Thread(target=t.run, name=f"source:{t.source.name}", daemon=True)
            for t in self.source_tasks
        ]
        sink_threads = [
            threading.Thread(target=t.run, name=f"sink:{t.sink.name}", daemon=True)
            for t in self.sink_tasks
        ]
        for thread in [*source_threads, *sink_threads]:
            thread.start()
        try:
            self._supervise(source_threads, sink_threads)
        finally:
            self.stop()
            for thread in [*source_threads, *sink_threads]:
                thread.join()
        return self._report()

    def _supervise(
        self, source_threads: list[threading.Thread], sink_threads: list[threading.Thread]
    ) -> None:
        while not self._stop.is_set():
            if self._first_error() is not None:
                return
            if all(not t.is_alive() for t in source_threads):
                self._sources_done.set()
                if all(not t.is_alive() for t in sink_threads):
                    return
            self._stop.wait(0.1)

    def _first_error(self) -> str | None:
        for stats in [t.stats for t in self.source_tasks] + [t.stats for t in self.sink_tasks]:
            if stats.error:
                return stats.error
        return None

    def _report(self) -> RunReport:
        report = RunReport()
        for task in self.source_tasks:
            report.sources[task.source.name] = Counter(task.stats.per_topic)
            if task.stats.error:
                report.errors.append(task.stats.error)
        for sink_task in self.sink_tasks:
            report.sinks[sink_task.sink.name] = Counter(sink_task.stats.per_topic)
            if sink_task.stats.error:
                report.errors.append(sink_task.stats.error)
        return report


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often while records flow.

    A batch keeps tens of thousands of small containers alive from poll to append (rows,
    records, views). With Python's young threshold of 700 they survive enough collections to
    trigger full ones that walk every object of the process: 5.4 s of a 1M-row bulk load
    (gc.callbacks), 1.5 s at 10,000, 0.1 s at 100,000, which the live objects of a batch of
    10,000 rows stay below. Records hold no cycles: reference counting frees them at once,
    and the cycles that other code makes are still collected, 100,000 allocations later.
    A higher threshold already set is kept.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def build_source(config: SourceConfig) -> Source:
    """The source a validated config entry describes (no I/O yet)."""
    return plugins.source_class(config.connector)(config)


def build_sink(config: SinkConfig) -> Sink:
    """The sink a validated config entry describes (no I/O yet)."""
    return plugins.sink_class(config.connector)(config)


def _schedule_of(config: object) -> Schedule | None:
    schedule = getattr(config, "schedule", None)
    return schedule if isinstance(schedule, Schedule) else None
