"""Prometheus metrics of a run (``liberate run --metrics-port N``), served with prometheus_client.

The source and sink loops report every batch to ``METRICS``; that costs nothing until a
``MetricsServer`` switches it on. Lags are sampled in the background (1, 3, 7 and 15 s after
the start, then every ``LAG_INTERVAL_S``) the way ``liberate status`` measures them, so a
scrape never waits on a database. Every metric name and label is in docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from liberate.config.models import RunConfig
from liberate.lag import lag_measures, sink_lag, source_status
from liberate.records import SinkRecord, SourceRecord
from liberate.streams.base import StreamBackend

log = logging.getLogger("liberate.metrics")

LAG_INTERVAL_S = 15.0
#: seconds; from a few milliseconds (a small poll) to minutes (a slow target)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0)


class RunMetrics:
    """The metrics of one process, on a registry of their own. Thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.enabled = False
        r = self.registry
        self.events = Counter(
            "liberate_source_events", "Events a source made durable, by operation "
            "(c, u, d, r, t, m; tombstone for a delete's tombstone)",
            ["source", "op"], registry=r)
        self.source_batches = Histogram(
            "liberate_source_batch_seconds", "From the start of a source poll to its records "
            "and offsets being durable in the stream backend",
            ["source"], buckets=LATENCY_BUCKETS, registry=r)
        self.skipped_runs = Counter(
            "liberate_source_skipped_runs", "Scheduled polling runs skipped because the "
            "previous one was still running", ["source"], registry=r)
        self.written = Counter(
            "liberate_sink_records_written", "Records a sink wrote to its target",
            ["sink", "topic"], registry=r)
        self.sink_batches = Histogram(
            "liberate_sink_write_seconds", "Time of one sink write (rows and offsets, one "
            "target transaction)", ["sink"], buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter(
            "liberate_connector_errors", "Failures of a connector: retriable (retried with "
            "backoff) or fatal (the connector stopped)", ["connector", "kind"],
            registry=r)
        self.source_lag = Gauge(
            "liberate_source_lag", "How far a source is behind its database, by measure "
            "(see docs/operations.md)", ["source", "partition", "measure"], registry=r)
        self.source_up = Gauge(
            "liberate_source_lag_reachable", "1 when the last lag sample reached the source's "
            "database, else 0", ["source"], registry=r)
        self.sink_lag = Gauge(
            "liberate_sink_lag_records", "Records of a topic a sink has still to write (end "
            "offset minus committed offset, summed over partitions)", ["sink", "topic"],
            registry=r)
        self.topic_records = Gauge(
            "liberate_topic_records", "Records in a topic of the stream backend", ["topic"],
            registry=r)

    # -- fed by the runtime (cheap no-ops until enabled) ----------------------------------

    def source_batch(self, source: str, connector: str, records: Sequence[SourceRecord],
                     seconds: float) -> None:
        """A batch of ``source`` became durable ``seconds`` after its poll began."""
        if not self.enabled:
            return
        default_op = "r" if connector == "query" else "m"
        for op, count in _ops(records, default_op).items():
            self.events.labels(source, op).inc(count)
        self.source_batches.labels(source).observe(seconds)

    def skipped(self, source: str, runs: int) -> None:
        """Scheduled runs of ``source`` skipped because one was still running."""
        if self.enabled and runs:
            self.skipped_runs.labels(source).inc(runs)

    def sink_batch(self, sink: str, records: Sequence[SinkRecord], seconds: float) -> None:
        """``sink`` wrote ``records`` in ``seconds``."""
        if not self.enabled:
            return
        for topic, count in Tally(r.topic for r in records).items():
            self.written.labels(sink, topic).inc(count)
        self.sink_batches.labels(sink).observe(seconds)

    def error(self, connector: str, kind: str) -> None:
        """A ``retriable`` or ``fatal`` failure of the source or sink named ``connector``."""
        if self.enabled:
            self.errors.labels(connector, kind).inc()

    # -- sampled ----------------------------------------------------------------------------

    def sample_lag(self, run: RunConfig, backend: StreamBackend) -> None:
        """Measure every source's and sink's lag now (as ``liberate status`` does)."""
        for source in run.sources:
            status = source_status(source, backend.source_offsets(source.name))
            reachable = not status.state.startswith(("unavailable", "error", "unknown")) \
                and "error" not in status.lag
            self.source_up.labels(source.name).set(1 if reachable else 0)
            for partition, measure, value in lag_measures(status.lag):
                self.source_lag.labels(source.name, partition, measure).set(value)
        infos = backend.topics()
        for info in infos:
            self.topic_records.labels(info.name).set(info.records)
        for sink in run.sinks:
            for topic, lag in sink_lag(sink, backend, infos).items():
                self.sink_lag.labels(sink.name, topic).set(lag)


def _ops(records: Sequence[SourceRecord], default_op: str) -> Tally[str]:
    """Events per Debezium op: the envelope's ``op``, ``default_op`` for values without one."""
    ops: Tally[str] = Tally()
    envelope: dict[int, bool] = {}
    for record in records:
        value = record.value
        if value is None:
            ops["tombstone"] += 1
            continue
        schema = record.value_schema
        key = id(schema)
        is_envelope = envelope.get(key)
        if is_envelope is None:
            body: Any = schema.schema if schema is not None else None
            is_envelope = envelope[key] = isinstance(body, dict) and body.get("name") == "Envelope"
        envelope_op = value.get("op") if is_envelope and isinstance(value, Mapping) else None
        ops[str(envelope_op or default_op)] += 1
    return ops


#: the metrics of this process
METRICS = RunMetrics()


class MetricsServer:
    """The HTTP endpoint (``/metrics``) and the lag sampler of one run; ``close`` stops both."""

    def __init__(self, port: int, run: RunConfig, backend: StreamBackend, *,
                 host: str = "0.0.0.0", lag_interval: float = LAG_INTERVAL_S) -> None:
        self._run, self._backend, self._interval = run, backend, lag_interval
        self._stop = threading.Event()
        METRICS.enabled = True
        try:
            self._server, self._thread = start_http_server(port, host, registry=METRICS.registry)
        except OSError as exc:
            METRICS.enabled = False
            from liberate.errors import ConfigError

            raise ConfigError(f"cannot serve metrics on port {port}: {exc.strerror or exc}",
                              hint="choose a free port with --metrics-port") from exc
        self.port = int(self._server.server_port)
        self._sampler = threading.Thread(target=self._sample, name="metrics-lag", daemon=True)
        self._sampler.start()
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, self.port)

    def _sample(self) -> None:
        # 1 s, 2 s, 4 s ... apart up to the interval: topics appear in the first seconds.
        delay = min(1.0, self._interval)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                METRICS.sample_lag(self._run, self._backend)
            except Exception as exc:  # a failed sample must never end the run
                if not self._stop.is_set():
                    log.warning("measuring lag for the metrics failed: %s", exc)
            self._stop.wait(max(0.0, delay - (time.monotonic() - started)))
            delay = min(self._interval, delay * 2)

    def close(self) -> None:
        """Stop sampling and serving."""
        self._stop.set()
        # A sample waiting on an unreachable database must not hold up the shutdown: the
        # thread is a daemon, and what it measures no longer matters.
        self._sampler.join(timeout=5)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        METRICS.enabled = False
