"""``liberate run FILE [--once] [--only NAME ...]``: run the sources and sinks of a run file.

Each connector runs isolated (see ``liberate.runtime.pipeline``). While it runs, the process
holds the connector's advisory lock (``liberate.runtime.locks``), which ``liberate offsets
reset`` checks. SIGTERM/SIGINT finish the batches in flight, commit and exit 0, within the
pipeline's shutdown timeout.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TextIO

from liberate.config.loader import load_run_file
from liberate.config.models import RunConfig
from liberate.errors import FatalError
from liberate.metrics import MetricsServer
from liberate.runtime import Pipeline, RunReport, locks, open_backend, select_connectors

log = logging.getLogger("liberate")


def run(
    path: str, *, once: bool, only: Sequence[str] = (), out: TextIO = sys.stdout,
    metrics_port: int | None = None,
) -> int:
    """Run until SIGINT/SIGTERM (or, with ``once``, until caught up). Returns the exit code.

    ``only``: the names of the sources and sinks to run (all when empty). ``metrics_port``:
    serve Prometheus metrics there while running (``liberate.metrics``).
    """
    config = select_connectors(load_run_file(path), only)
    connectors: list[tuple[locks.Kind, str]] = [("source", c.name) for c in config.sources]
    connectors += [("sink", c.name) for c in config.sinks]
    with locks.running(config.streams, connectors):
        return _run(config, once=once, out=out, metrics_port=metrics_port)


def _run(config: RunConfig, *, once: bool, out: TextIO, metrics_port: int | None = None) -> int:
    backend = open_backend(config.streams)
    try:
        pipeline = Pipeline(config, backend, once=once)
        log.info(
            "running %d source(s) and %d sink(s) on the %s backend (%s)",
            len(config.sources),
            len(config.sinks),
            config.streams.backend,
            backend.guarantee,
        )
        metrics = MetricsServer(metrics_port, config, backend) if metrics_port is not None \
            else None
        restore = _install_signal_handlers(pipeline)
        try:
            report = pipeline.run()
        finally:
            restore()
            if metrics is not None:
                metrics.close()
    finally:
        backend.close()
    print_report(report, out)
    if not report.ok:
        raise FatalError("; ".join(report.errors))
    return 0


def print_report(report: RunReport, out: TextIO) -> None:
    """Records per topic for each source and sink, as a short table."""
    for kind, entries in (("source", report.sources), ("sink", report.sinks)):
        for name, counts in entries.items():
            verb = "produced" if kind == "source" else "wrote"
            print(f"{kind} {name}: {verb} {sum(counts.values())} record(s)", file=out)
            for topic, count in sorted(counts.items()):
                print(f"  {topic:<40} {count:>10}", file=out)
    out.flush()


def _install_signal_handlers(pipeline: Pipeline) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: finishing the current batches", signal.Signals(signum).name)
        pipeline.stop()

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore

