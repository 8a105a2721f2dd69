"""A run: every source and sink of a run file, each on its own thread, sharing one backend."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from liberate import plugins
from liberate.config.base import SinkConfig, SourceConfig
from liberate.config.durations import Schedule
from liberate.config.models import RunConfig, StreamsConfig
from liberate.connector import Sink, Source
from liberate.errors import ConfigError
from liberate.runtime._sink_task import SinkTask
from liberate.runtime._source_task import SourceTask
from liberate.runtime._stats import ConnectorStats
from liberate.serde import RecordDeserializer, RecordSerializer
from liberate.streams.base import StreamBackend

log = logging.getLogger("liberate.runtime")

DEFAULT_SINK_BATCH = 5000
#: how long a stop request (SIGTERM) waits for the connectors to finish their batches
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
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
    """Runs the sources and sinks of ``run`` against ``backend``, each on its own thread.

    Connectors are isolated: a retriable failure is retried with backoff inside its task
    (``supervise``), and a connector that fails for good ends alone unless its config says
    ``on_failure: stop``, which stops the run. ``stop()`` (thread-safe, also from a signal
    handler) makes every task finish its batch, commit and return within
    ``shutdown_timeout_s``; ``run()`` then returns the report (a failed or stuck connector is
    one of its errors).
    """

    def __init__(
        self,
        run: RunConfig,
        backend: StreamBackend,
        *,
        once: bool = False,
        max_retries: int | None = None,
        shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
    ) -> None:
        self.run_config = run
        self.backend = backend
        self.once = once
        self.shutdown_timeout_s = shutdown_timeout_s
        self._stop = threading.Event()
        self._sources_done = threading.Event()
        registry = backend.registry()
        registry.configure_levels(run.streams.subject_levels())
        serializer = RecordSerializer(
            registry, subject_strategy=run.streams.subject_name_strategy
        )
        deserializer = RecordDeserializer(registry)
        # In --once mode a retriable failure must end the run eventually, not hang it.
        default_retries = max_retries if max_retries is not None else (5 if once else None)

        def retries(cfg: SourceConfig | SinkConfig) -> int | None:
            return cfg.max_retries if cfg.max_retries is not None else default_retries

        self.source_tasks = [
            SourceTask(
                build_source(cfg),
                backend,
                serializer,
                self._stop,
                once=once,
                schedule=_schedule_of(cfg),
                max_retries=retries(cfg),
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
                max_retries=retries(cfg),
            )
            for cfg in run.sinks
        ]

    def stop(self) -> None:
        """Ask every task to finish its current batch and return."""
        self._stop.set()
        for task in self.source_tasks:
            task.source.stop()

    def run(self) -> RunReport:
        """Run until stopped, until a connector with ``on_failure: stop`` fails, until every
        connector has ended, or (``once``) until everything has caught up."""
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
            stuck = _join_all([*source_threads, *sink_threads], self.shutdown_timeout_s)
        report = self._report()
        for name in stuck:
            # Daemon threads: the process can still exit; what they had in flight is not
            # committed, so a restart replays it (never skips).
            report.errors.append(
                f"{name} did not finish within {self.shutdown_timeout_s:g} s of the stop request"
            )
        return report

    def _supervise(
        self, source_threads: list[threading.Thread], sink_threads: list[threading.Thread]
    ) -> None:
        reported: set[int] = set()
        while not self._stop.is_set():
            for config, stats in self._connectors():
                if stats.error is None or id(stats) in reported:
                    continue
                reported.add(id(stats))
                if config.on_failure == "stop":
                    log.error("%s has on_failure: stop: stopping the run", stats.name)
                    return
                log.error("the other connectors keep running (%s has on_failure: continue)",
                          stats.name)
            if all(not t.is_alive() for t in source_threads):
                self._sources_done.set()
                if all(not t.is_alive() for t in sink_threads):
                    return
            self._stop.wait(0.1)

    def _connectors(self) -> list[tuple[SourceConfig | SinkConfig, ConnectorStats]]:
        return [
            *((t.source.config, t.stats) for t in self.source_tasks),
            *((t.sink.config, t.stats) for t in self.sink_tasks),
        ]

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


def select_connectors(run: RunConfig, only: Sequence[str]) -> RunConfig:
    """``run`` with only the sources and sinks named in ``only`` (all of them when empty).

    An unknown name is a ``ConfigError`` (exit 2) that lists the names the file has.
    """
    if not only:
        return run
    known = [c.name for c in run.sources] + [c.name for c in run.sinks]
    unknown = [name for name in dict.fromkeys(only) if name not in known]
    if unknown:
        raise ConfigError(
            f"--only names no source or sink of {run.path}: {', '.join(unknown)}",
            hint=f"choose among: {', '.join(known)}",
        )
    wanted = set(only)
    return dataclasses.replace(
        run,
        sources=tuple(c for c in run.sources if c.name in wanted),
        sinks=tuple(c for c in run.sinks if c.name in wanted),
    )


def _join_all(threads: Sequence[threading.Thread], timeout_s: float) -> list[str]:
    """Join ``threads`` within ``timeout_s`` in total; the names of those still running."""
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


def build_source(config: SourceConfig) -> Source:
    """The source a validated config entry describes (no I/O yet)."""
    return plugins.source_class(config.connector)(config)


def build_sink(config: SinkConfig) -> Sink:
    """The sink a validated config entry describes (no I/O yet)."""
    return plugins.sink_class(config.connector)(config)


def _schedule_of(config: object) -> Schedule | None:
    schedule = getattr(config, "schedule", None)
    return schedule if isinstance(schedule, Schedule) else None
