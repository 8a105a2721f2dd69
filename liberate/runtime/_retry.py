"""Backoff for retriable failures: exponential with jitter, capped."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass


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
