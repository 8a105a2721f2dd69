"""Backoff for retriable failures: exponential with jitter, capped."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from liberate.errors import LiberateError, RetriableError
from liberate.metrics import METRICS
from liberate.runtime._stats import ConnectorStats

log = logging.getLogger("liberate.runtime")


@dataclass
class Backoff:
    """Delays 0.5 s, 1 s, 2 s, ... up to ``maximum``; ``reset`` after a success."""

    initial: float = 0.5
    maximum: float = 30.0
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * (2.0**self.attempts))
        self.attempts += 1
        jitter: float = random.uniform(0.8, 1.2)
        return delay * jitter

    def reset(self) -> None:
        self.attempts = 0

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the next delay; True when ``stop`` was set meanwhile."""
        return stop.wait(self.next_delay())


def supervise(
    label: str,
    attempt: Callable[[Backoff], None],
    *,
    stop: threading.Event,
    max_retries: int | None,
    stats: ConnectorStats,
) -> None:
    """Run ``attempt`` until it returns, retrying ``RetriableError`` with backoff.

    A classified error (or ``max_retries`` consecutive retriable ones) ends the task with the
    message in ``stats.error`` and ``stats.state`` failed, logged as an error; an unclassified
    exception is a bug, logged with its traceback. ``attempt`` gets the backoff so it can
    ``reset`` it after progress. Only this task ends: what the run does next is the
    pipeline's decision (the connector's ``on_failure``).
    """
    backoff = Backoff()
    while not stop.is_set():
        stats.state = "running"
        try:
            attempt(backoff)
            stats.state = "stopped"
            return
        except RetriableError as exc:
            METRICS.error(stats.name, "retriable")
            stats.retries = backoff.attempts + 1
            if max_retries is not None and backoff.attempts >= max_retries:
                _failed(stats, f"{label}: {exc} (gave up after {backoff.attempts} retries)")
                return
            stats.state = "retrying"
            log.warning("%s: %s; retry %d in a moment", label, exc, stats.retries)
            if backoff.wait(stop):
                break
        except LiberateError as exc:
            _failed(stats, f"{label}: {exc}")
            return
        except Exception as exc:  # an unclassified error is a bug: report it with its trace
            log.exception("%s failed unexpectedly", label)
            _failed(stats, f"{label}: unexpected {exc!r}")
            return
    stats.state = "stopped"


def _failed(stats: ConnectorStats, message: str) -> None:
    stats.error = message
    stats.state = "failed"
    METRICS.error(stats.name, "fatal")
    log.error("%s", message)
