"""``liberate run FILE [--once]``: run every source and sink of a run file."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TextIO

from liberate.config.loader import load_run_file
from liberate.errors import FatalError
from liberate.runtime import Pipeline, RunReport, open_backend

log = logging.getLogger("liberate")


def run(path: str, *, once: bool, out: TextIO = sys.stdout) -> int:
    """Run until SIGINT/SIGTERM (or, with ``once``, until caught up). Returns the exit code."""
    config = load_run_file(path)
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
        restore = _install_signal_handlers(pipeline)
        try:
            report = pipeline.run()
        finally:
            restore()
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

