"""The snapshot window: stream changes a resumed snapshot has already read are dropped.

An initial snapshot reads every table under one consistent read taken at binlog position
``E0``, and the stream starts at ``E0``. When the snapshot is interrupted and resumed, the
rest is read under a new consistent read at ``E1 > E0`` (and so on): rows read at ``E1``
already include every transaction before ``E1``. The stream still starts at ``E0`` (the rows
read at ``E0`` need the changes after it), so a change to a row that was read at ``E1`` by a
transaction that started before ``E1`` is dropped: emitting it would move that row back to
an older state after the snapshot showed a newer one. Which epoch read a row follows from its
key: each table records the key after which each epoch continued.

Keys are compared in Python, which orders numbers, dates and times and binary strings as the
server does; a table whose key holds text (ordered by a collation) is re-read from its start
when resumed, so its rows never need comparing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from connectors.mysql.offsets import BinlogPosition, Key, SnapshotProgress

_UTC = dt.UTC


class SnapshotWindow:
    """Decides which stream changes a resumed snapshot has made redundant."""

    def __init__(self, progress: SnapshotProgress, key_fields: Mapping[str, tuple[str, ...]]):
        self.progress_text = progress.to_text()
        self.epochs = [epoch.coordinates for epoch in progress.epochs]
        self.end = max(self.epochs)
        self._key_fields = dict(key_fields)
        self._ranges: dict[str, list[tuple[int, Key | None]]] = {
            label: [(epoch, comparable(after)) for epoch, after in table.ranges]
            for label, table in progress.tables.items()
            if any(epoch > 0 for epoch, _ in table.ranges)
        }

    def drops(self, label: str, key: Mapping[str, Any], transaction_start: BinlogPosition
              ) -> bool:
        """Whether the change to ``key`` of table ``label`` by the transaction starting at
        ``transaction_start`` is already in the snapshot."""
        ranges = self._ranges.get(label)
        if ranges is None:
            return False
        fields = self._key_fields[label]
        value = comparable(tuple(key[f] for f in fields))
        epoch = ranges[0][0]
        for range_epoch, after in ranges:
            if after is None or (value is not None and value > after):
                epoch = range_epoch
            else:
                break
        return transaction_start.coordinates < self.epochs[epoch]


def comparable(key: Key | None) -> Key | None:
    """A key in a form that compares like the server orders it (for non-text keys)."""
    if key is None:
        return None
    return tuple(_comparable(v) for v in key)


def _comparable(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(_UTC).replace(tzinfo=None)
    if isinstance(value, dt.timedelta):
        return (dt.datetime.min + value).time()
    return value
