"""Backoff for retriable failures: exponential with jitter, capped."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from liberate.errors import LiberateError, RetriableError
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
    message in ``stats.error``; an unclassified exception is a bug, logged with its traceback.
    ``attempt`` gets the backoff so it can ``reset`` it after progress.
    """
    backoff = Backoff()
    while not stop.is_set():
        try:
            attempt(backoff)
            return
        except RetriableError as exc:
            if max_retries is not None and backoff.attempts >= max_retries:
                stats.error = f"{label}: {exc} (gave up after retries)"
                return
            log.warning("%s: %s; retrying", label, exc)
            if backoff.wait(stop):
                return
        except LiberateError as exc:
            stats.error = f"{label}: {exc}"
            return
        except Exception as exc:  # an unclassified error is a bug: report it, stop the run
            log.exception("%s failed unexpectedly", label)
            stats.error = f"{label}: unexpected {exc!r}"
            return
