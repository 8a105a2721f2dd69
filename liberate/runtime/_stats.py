"""Counters and the state the runtime keeps per connector (thread-safe)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

#: starting: not yet running; running; retrying: waiting out a backoff after a retriable
#: failure; failed: gave up (``error`` says why); stopped: returned normally
ConnectorState = Literal["starting", "running", "retrying", "failed", "stopped"]


@dataclass
class ConnectorStats:
    """Records per topic that one connector delivered, its state and its last error."""

    name: str
    per_topic: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    state: ConnectorState = "starting"
    #: retriable failures since the last success (what ``max_retries`` counts)
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, counts: Counter[str]) -> None:
        with self._lock:
            self.per_topic.update(counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.per_topic.values())
