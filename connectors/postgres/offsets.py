"""The stored position of a PostgreSQL WAL source, and how it round-trips through offset maps.

One source partition, ``{"server": <source name>}``; its offset (DESIGN §2; docs/postgres.md
has the full story):

- ``lsn``: where streaming resumes (``START_REPLICATION ... <lsn>``): the commit end LSN of the
  last transaction whose events are all durable, or the slot's start point before any. The
  server skips every transaction whose commit record lies before it.
- ``txId``: the transaction that ended at ``lsn`` (informational).
- ``tx_lsn`` / ``tx_events``: only on events *inside* a transaction returned in several polls:
  the commit LSN of that transaction and how many of its change messages are durable. After a
  crash the server sends it again from the start and the first ``tx_events`` are skipped.
- ``snapshot_*``: only while the initial snapshot runs: the table being read, the text form of
  the last key read (JSON list), the table's relfilenode and the LSN of the snapshot reading it.
- ``watermarks``: after a snapshot was resumed under a newer snapshot (JSON list of
  ``[table, key-or-null, lsn]``): stream events of transactions committed before ``lsn`` for
  rows from ``(table, key)`` on (in snapshot order) are already in the snapshot and are dropped.
  Kept only while ``lsn`` lies ahead of the resume point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from liberate.errors import FatalError
from liberate.records import Primitive

KeyText = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Watermark:
    """Rows from ``(table, after key)`` on were read by a snapshot consistent at ``lsn``.

    ``after`` None: the whole table. Tables after ``table`` in snapshot order are included.
    """

    table: str
    after: KeyText | None
    lsn: int


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    """How far the initial snapshot got: ``table`` read up to and including key ``after``."""

    table: str
    after: KeyText | None
    relfilenode: int
    lsn: int


@dataclass(frozen=True, slots=True)
class WalOffset:
    """The position of a WAL source (see the module docstring)."""

    lsn: int
    tx_id: int | None = None
    tx_lsn: int | None = None
    tx_events: int = 0
    snapshot: SnapshotProgress | None = None
    watermarks: tuple[Watermark, ...] = field(default=())

    @property
    def snapshotting(self) -> bool:
        """Whether the initial snapshot was still running at this position."""
        return self.snapshot is not None

    def pruned(self) -> WalOffset:
        """This offset without the watermarks a resume from ``lsn`` no longer replays."""
        kept = tuple(w for w in self.watermarks if w.lsn > self.lsn)
        return self if kept == self.watermarks else replace(self, watermarks=kept)

    def to_map(self) -> dict[str, Primitive]:
        """The offset map stored by the backend (primitives only)."""
        out: dict[str, Primitive] = {"lsn": self.lsn, "txId": self.tx_id}
        if self.tx_lsn is not None:
            out["tx_lsn"] = self.tx_lsn
            out["tx_events"] = self.tx_events
        if self.snapshot is not None:
            out["snapshot_table"] = self.snapshot.table
            out["snapshot_key"] = _key_json(self.snapshot.after)
            out["snapshot_relfilenode"] = self.snapshot.relfilenode
            out["snapshot_lsn"] = self.snapshot.lsn
        if self.watermarks:
            out["watermarks"] = json.dumps(
                [[w.table, list(w.after) if w.after is not None else None, w.lsn]
                 for w in self.watermarks],
                separators=(",", ":"),
            )
        return out

    @classmethod
    def from_map(cls, data: Mapping[str, Primitive]) -> WalOffset:
        """Read a stored offset map; ``FatalError`` when it is not one of ours."""
        try:
            snapshot = None
            if data.get("snapshot_table") is not None:
                snapshot = SnapshotProgress(
                    table=str(data["snapshot_table"]),
                    after=_key_from_json(data.get("snapshot_key")),
                    relfilenode=_int(data["snapshot_relfilenode"]),
                    lsn=_int(data["snapshot_lsn"]),
                )
            watermarks: tuple[Watermark, ...] = ()
            if data.get("watermarks"):
                watermarks = tuple(
                    Watermark(str(t), tuple(str(v) for v in k) if k is not None else None,
                              int(lsn))
                    for t, k, lsn in json.loads(str(data["watermarks"]))
                )
            tx_lsn = data.get("tx_lsn")
            tx_id = data.get("txId")
            return cls(
                lsn=_int(data["lsn"]),
                tx_id=_int(tx_id) if tx_id is not None else None,
                tx_lsn=_int(tx_lsn) if tx_lsn is not None else None,
                tx_events=_int(data.get("tx_events") or 0),
                snapshot=snapshot,
                watermarks=watermarks,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FatalError(
                f"the stored offset {dict(data)} is not a PostgreSQL WAL position",
                hint="the source's stored offsets belong to another connector: give this source "
                "a new name, or delete its stored offsets to start over",
            ) from exc


def _int(value: Primitive) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"{value!r} is not an integer")
    return int(value)


def _key_json(key: Sequence[str] | None) -> str | None:
    return None if key is None else json.dumps(list(key), separators=(",", ":"))


def _key_from_json(text: Primitive) -> KeyText | None:
    if text is None:
        return None
    values = json.loads(str(text))
    if not isinstance(values, list):
        raise ValueError("a snapshot key is a JSON list")
    return tuple(str(v) for v in values)
