"""The stored offset of a MySQL source: a binlog position, plus snapshot progress while it matters.

One source partition ``{"server": <source name>}`` holds one offset map (Kafka Connect style,
primitives only)::

    {"file": "bin.000003", "pos": 4711, "gtids": "0-1-57", "skip": 0, "server_id": 1,
     "snapshot": "{...}"}

- ``file``/``pos``/``gtids`` name a *transaction boundary*: the stream resumes with the first
  transaction after it (by GTID, or by file and position when ``position_mode: file``).
- ``skip`` counts the records already delivered from the transaction that starts there, so a
  large transaction can be delivered over several polls and still resume exactly; it is 0 at
  a boundary.
- ``snapshot`` (JSON text) is present while an initial snapshot runs, and afterwards until the
  stream has passed every position a resumed snapshot was read at (docs/mysql.md, "Snapshot").
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from liberate.records import Primitive

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class BinlogPosition:
    """A transaction boundary in the binlog, and how far into the next transaction we are."""

    file: str
    pos: int
    gtids: str | None = None
    skip: int = 0
    server_id: int | None = None

    def to_map(self) -> dict[str, Primitive]:
        data: dict[str, Primitive] = {"file": self.file, "pos": self.pos, "skip": self.skip}
        if self.gtids is not None:
            data["gtids"] = self.gtids
        if self.server_id is not None:
            data["server_id"] = self.server_id
        return data

    @classmethod
    def from_map(cls, data: Mapping[str, Primitive]) -> BinlogPosition:
        """Read a stored offset; raises ValueError naming what is wrong."""
        file, pos = data.get("file"), data.get("pos")
        if not isinstance(file, str) or not file:
            raise ValueError(f"offset file {file!r} is not a binlog file name")
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 4:
            raise ValueError(f"offset pos {pos!r} is not a binlog position")
        gtids = data.get("gtids")
        if gtids is not None and not isinstance(gtids, str):
            raise ValueError(f"offset gtids {gtids!r} is not text")
        skip = data.get("skip", 0)
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise ValueError(f"offset skip {skip!r} is not a count")
        server_id = data.get("server_id")
        if server_id is not None and (
            isinstance(server_id, bool) or not isinstance(server_id, int)
        ):
            raise ValueError(f"offset server_id {server_id!r} is not an integer")
        return cls(file, pos, gtids, skip, server_id)

    @property
    def coordinates(self) -> tuple[int, int]:
        """``(file sequence number, position)``: ordered like the binlog itself."""
        return file_sequence(self.file), self.pos

    def at_boundary(self) -> BinlogPosition:
        return replace(self, skip=0) if self.skip else self


def file_sequence(name: str) -> int:
    """The sequence number of a binlog file name (``bin.000042`` -> 42)."""
    suffix = name.rsplit(".", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


# -- snapshot progress ----------------------------------------------------------------------


@dataclass
class TableProgress:
    """How far the snapshot of one table got.

    ``ranges`` lists ``(epoch, after)``: from key ``after`` (exclusive; None = the start) up to
    the next range's ``after``, rows were read in snapshot ``epoch``. ``last`` is the key of
    the last row read; ``done`` whether the table has been read to its end.
    """

    ranges: list[tuple[int, Key | None]] = field(default_factory=list)
    last: Key | None = None
    done: bool = False


@dataclass
class SnapshotProgress:
    """The initial snapshot: the positions it was read at and how far each table got.

    ``epochs[i]`` is the binlog position of the consistent read of attempt ``i``; the stream
    starts at ``epochs[0]``. ``done`` once every table has been read.
    """

    epochs: list[BinlogPosition]
    tables: dict[str, TableProgress]
    done: bool = False

    def to_text(self) -> str:
        return json.dumps(
            {
                "done": self.done,
                "epochs": [e.to_map() for e in self.epochs],
                "tables": {
                    name: {
                        "ranges": [[epoch, _key_out(after)] for epoch, after in t.ranges],
                        "last": _key_out(t.last),
                        "done": t.done,
                    }
                    for name, t in self.tables.items()
                },
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_text(cls, text: str) -> SnapshotProgress:
        data = json.loads(text)
        return cls(
            epochs=[BinlogPosition.from_map(e) for e in data["epochs"]],
            tables={
                name: TableProgress(
                    ranges=[(int(epoch), _key_in(after)) for epoch, after in t["ranges"]],
                    last=_key_in(t["last"]),
                    done=bool(t["done"]),
                )
                for name, t in data["tables"].items()
            },
            done=bool(data["done"]),
        )

    @property
    def resumed(self) -> bool:
        """Whether some rows were read in a later snapshot than the one the stream starts at."""
        return any(epoch > 0 for t in self.tables.values() for epoch, _ in t.ranges)


def key_json(key: Key) -> list[Any]:
    """A key as the JSON value progress texts hold (typed values tagged)."""
    return [_value_out(v) for v in key]


def _key_out(key: Key | None) -> list[Any] | None:
    return None if key is None else key_json(key)


def _key_in(data: list[Any] | None) -> Key | None:
    return None if data is None else tuple(_value_in(v) for v in data)


# Key values keep their Python type through JSON: one-key objects tag the non-JSON ones.
def _value_out(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"timedelta_us": value // dt.timedelta(microseconds=1)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    raise ValueError(f"cannot store a key value of type {type(value).__name__}")


def _value_in(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    ((tag, text),) = value.items()
    if tag == "decimal":
        return Decimal(text)
    if tag == "datetime":
        return dt.datetime.fromisoformat(text)
    if tag == "date":
        return dt.date.fromisoformat(text)
    if tag == "time":
        return dt.time.fromisoformat(text)
    if tag == "timedelta_us":
        return dt.timedelta(microseconds=int(text))
    if tag == "hex":
        return bytes.fromhex(text)
    raise ValueError(f"unknown key value tag {tag!r}")
