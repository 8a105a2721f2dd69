"""``liberate check FILE``: config, connectivity and database prerequisites, each with its fix."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import TextIO

from liberate.config.base import SinkConfig, SourceConfig
from liberate.config.loader import load_run_file
from liberate.connector import CheckResult
from liberate.errors import LiberateError
from liberate.runtime.pipeline import build_sink, build_source, open_backend


def check(path: str, *, out: TextIO = sys.stdout) -> int:
    """Print one line per check; exit 0 when all pass, 1 otherwise (2 for a bad run file)."""
    config = load_run_file(path)
    print(f"ok    run file {path}: {len(config.sources)} source(s), {len(config.sinks)} sink(s)",
          file=out)
    results: list[tuple[str, CheckResult]] = []
    streams = config.streams
    where = (
        streams.kafka.bootstrap_servers
        if streams.backend == "kafka" and streams.kafka is not None
        else str(streams.path)
    )
    try:
        backend = open_backend(streams)
        backend.close()
        results.append(("streams", CheckResult(f"{streams.backend} backend", True, where)))
    except LiberateError as exc:
        results.append(("streams", CheckResult(f"{config.streams.backend} backend", False,
                                               exc.message, exc.hint)))
    for source_config in config.sources:
        found = _guarded(partial(_check_source, source_config))
        results.extend((f"source {source_config.name}", r) for r in found)
    for sink_config in config.sinks:
        found = _guarded(partial(_check_sink, sink_config))
        results.extend((f"sink {sink_config.name}", r) for r in found)
    failed = 0
    for owner, result in results:
        mark = "ok  " if result.ok else "FAIL"
        detail = f": {result.message}" if result.message else ""
        print(f"{mark}  {owner}: {result.name}{detail}", file=out)
        if not result.ok:
            failed += 1
            if result.hint:
                print(f"      fix: {result.hint}", file=out)
    print(f"checks: {len(results) - failed} ok, {failed} failing", file=out)
    return 1 if failed else 0


def _check_source(config: SourceConfig) -> list[CheckResult]:
    return build_source(config).check()


def _check_sink(config: SinkConfig) -> list[CheckResult]:
    return build_sink(config).check()


def _guarded(checks: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    try:
        return list(checks())
    except LiberateError as exc:
        return [CheckResult("connector", False, exc.message, exc.hint)]
