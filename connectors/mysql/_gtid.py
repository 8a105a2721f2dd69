"""GTID positions of both flavours, as text and as values that advance transaction by transaction.

- MariaDB: a *state* ``domain-server-seq`` per replication domain (``0-1-57,1-2-9``); a
  replica connects with ``@slave_connect_state`` set to it and receives every group after it.
- MySQL: a *set* of ``uuid:interval[:interval...]`` (``3e11fa47-...:1-57``); a replica sends it
  with COM_BINLOG_DUMP_GTID and receives every transaction outside it.
"""

from __future__ import annotations

import re
import struct
import uuid as uuid_module
from abc import ABC, abstractmethod

_MARIADB_GTID = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_MYSQL_MEMBER = re.compile(r"^([0-9a-fA-F-]{36})((?::\d+(?:-\d+)?)+)$")


class GtidPosition(ABC):
    """Where a stream stands in GTID terms; mutable, advanced by ``add`` per transaction."""

    @abstractmethod
    def add(self, gtid: str) -> None:
        """Record that the transaction ``gtid`` (one GTID in this flavour's text) is done."""

    @abstractmethod
    def covers(self, other: GtidPosition) -> bool:
        """Whether every transaction in ``other`` is also in this position."""

    @abstractmethod
    def copy(self) -> GtidPosition:
        """An independent copy."""

    @property
    @abstractmethod
    def text(self) -> str:
        """The canonical text (empty when nothing has been executed)."""

    def __str__(self) -> str:
        return self.text


class MariadbGtidState(GtidPosition):
    """The last GTID of every MariaDB replication domain."""

    def __init__(self, text: str = "") -> None:
        self._domains: dict[int, tuple[int, int]] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            match = _MARIADB_GTID.match(item)
            if match is None:
                raise ValueError(f"{item!r} is not a MariaDB GTID (domain-server-sequence)")
            domain, server, seq = (int(g) for g in match.groups())
            self._domains[domain] = (server, seq)

    def add(self, gtid: str) -> None:
        domain, server, seq = (int(part) for part in gtid.split("-"))
        self._domains[domain] = (server, seq)

    def covers(self, other: GtidPosition) -> bool:
        if not isinstance(other, MariadbGtidState):
            return False
        for domain, (_, seq) in other._domains.items():
            mine = self._domains.get(domain)
            if mine is None or mine[1] < seq:
                return False
        return True

    def copy(self) -> MariadbGtidState:
        clone = MariadbGtidState()
        clone._domains = dict(self._domains)
        return clone

    @property
    def text(self) -> str:
        return ",".join(
            f"{domain}-{server}-{seq}" for domain, (server, seq) in sorted(self._domains.items())
        )


class MysqlGtidSet(GtidPosition):
    """A MySQL GTID set: closed intervals of transaction numbers per source uuid."""

    def __init__(self, text: str = "") -> None:
        self._sets: dict[str, list[tuple[int, int]]] = {}
        for item in filter(None, (part.strip() for part in text.replace("\n", "").split(","))):
            match = _MYSQL_MEMBER.match(item)
            if match is None:
                raise ValueError(f"{item!r} is not a MySQL GTID set member (uuid:1-5)")
            sid = match.group(1).lower()
            for interval in match.group(2).strip(":").split(":"):
                start, _, end = interval.partition("-")
                self._add_interval(sid, int(start), int(end or start))

    def _add_interval(self, sid: str, start: int, end: int) -> None:
        intervals = self._sets.setdefault(sid, [])
        intervals.append((start, end))
        intervals.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in intervals:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        self._sets[sid] = merged

    def add(self, gtid: str) -> None:
        sid, _, number = gtid.rpartition(":")
        n = int(number)
        intervals = self._sets.get(sid.lower())
        # The common case: the next number of the last interval.
        if intervals and intervals[-1][1] + 1 == n:
            intervals[-1] = (intervals[-1][0], n)
            return
        self._add_interval(sid.lower(), n, n)

    def covers(self, other: GtidPosition) -> bool:
        if not isinstance(other, MysqlGtidSet):
            return False
        for sid, intervals in other._sets.items():
            mine = self._sets.get(sid, [])
            for lo, hi in intervals:
                if not any(a <= lo and hi <= b for a, b in mine):
                    return False
        return True

    def copy(self) -> MysqlGtidSet:
        clone = MysqlGtidSet()
        clone._sets = {sid: list(intervals) for sid, intervals in self._sets.items()}
        return clone

    @property
    def text(self) -> str:
        members = []
        for sid, intervals in sorted(self._sets.items()):
            parts = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in intervals]
            members.append(sid + ":" + ":".join(parts))
        return ",".join(members)

    def encoded(self) -> bytes:
        """The binary form COM_BINLOG_DUMP_GTID sends (intervals are half-open there)."""
        out = [struct.pack("<Q", len(self._sets))]
        for sid, intervals in sorted(self._sets.items()):
            out.append(uuid_module.UUID(sid).bytes)
            out.append(struct.pack("<Q", len(intervals)))
            out.extend(struct.pack("<QQ", lo, hi + 1) for lo, hi in intervals)
        return b"".join(out)


def gtid_position(flavor: str, text: str | None) -> GtidPosition:
    """The GTID position of ``flavor`` (``mariadb`` or ``mysql``) from its text."""
    if flavor == "mariadb":
        return MariadbGtidState(text or "")
    return MysqlGtidSet(text or "")
