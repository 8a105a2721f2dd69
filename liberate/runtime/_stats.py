"""Counters the runtime keeps for its end-of-run report (thread-safe)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ConnectorStats:
    """Records per topic that one connector delivered."""

    name: str
    per_topic: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, counts: Counter[str]) -> None:
        with self._lock:
            self.per_topic.update(counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.per_topic.values())
