"""Shared pieces of the benchmarks: a PostgreSQL to measure against, timing, child RSS, output.

A benchmark runs liberate and its baselines in the same process run, alternating when asked to
repeat, because these machines are noisy: compare the ratios, not the absolute figures.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from tests.processes import process_tree


@dataclass
class Measurement:
    """One timed run of one contender."""

    name: str
    rows: int
    seconds: float
    peak_rss_mb: float | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")


@contextmanager
def postgres(url_env: str = "LIBERATE_BENCH_POSTGRES_URL") -> Iterator[str]:
    """An admin URL of a PostgreSQL: ``$LIBERATE_BENCH_POSTGRES_URL``, or a throwaway cluster."""
    external = os.environ.get(url_env)
    if external:
        yield external
        return
    from tests.servers import PostgresCluster

    cluster = PostgresCluster(durable=True).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def timed(name: str, rows: int, action: Callable[[], object]) -> Measurement:
    """Time ``action`` (which handles ``rows`` rows) in this process."""
    start = time.perf_counter()
    action()
    return Measurement(name, rows, time.perf_counter() - start)


def timed_child(name: str, rows: int, argv: Sequence[str], env: dict[str, str] | None = None
                ) -> Measurement:
    """Run ``argv`` as a child process; its wall time and peak RSS.

    The peak RSS is the larger of the child's own high-water mark (VmHWM) and the peak of the
    memory of the child and its descendants (worker processes) together, both sampled every
    ``_RSS_SAMPLE_S``: the sum of their proportional set sizes (PSS), so pages that forked
    processes share are counted once, not once per process. Not wait4's ``ru_maxrss``: Linux
    carries into it the RSS of this (benchmark) process at the fork before the exec, so a
    benchmark holding pre-encoded records would be charged to the child.
    """
    start = time.perf_counter()
    process = subprocess.Popen(list(argv), env=env)
    peak = [0]
    done = threading.Event()
    sampler = threading.Thread(target=_sample_tree_rss, args=(process.pid, peak, done))
    sampler.start()
    try:
        _, status, _usage = os.wait4(process.pid, 0)
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{name}: {' '.join(argv)} exited with {code}")
    return Measurement(name, rows, seconds, peak[0] / 1024)


_RSS_SAMPLE_S = 0.2


def _sample_tree_rss(root: int, peak: list[int], done: threading.Event) -> None:
    """Keep ``peak[0]`` at the largest of ``root``'s VmHWM and the PSS (kB) summed over
    ``root`` and its descendants."""
    while not done.wait(_RSS_SAMPLE_S):
        tree = process_tree(root)
        peak[0] = max(peak[0], _hwm_kb(root), sum(_pss_kb(pid) for pid in tree))


def _hwm_kb(pid: int) -> int:
    """The peak resident set of ``pid``'s current program (VmHWM; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def self_peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    """A one-line description of where the numbers were taken."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def table(measurements: Sequence[Measurement], reference: str) -> str:
    """A markdown table of ``measurements`` with the ratio of each to ``reference``."""
    ref = next(m for m in measurements if m.name == reference)
    lines = [
        "| contender | rows | seconds | rows/s | ratio to " + reference + " | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        rss = f"{m.peak_rss_mb:.0f}" if m.peak_rss_mb is not None else "n/a"
        lines.append(
            f"| {m.name} | {m.rows:,} | {m.seconds:.2f} | {m.rows_per_s:,.0f} | "
            f"{m.rows_per_s / ref.rows_per_s:.2f} | {rss} |"
        )
    return "\n".join(lines)
