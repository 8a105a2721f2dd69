"""The relay's offset: which outbox rows it has delivered but not yet confirmed.

The polling relay keeps no high-water mark (a mark is what skips the row of a transaction
that commits after a later one). Its position is the set of ``seq`` values it has handed to
the runtime whose rows are still in the table, written as ranges (``"10-20,22,25-31"``).
Stored with the records (one transaction on the embedded backend), it tells a restarted relay
exactly which rows to confirm (delete or mark) instead of delivering them again.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from liberate.errors import FatalError
from liberate.records import Primitive


class SeqRanges:
    """A set of integers as sorted, disjoint, non-adjacent inclusive ranges.

    Mutable (``add``) while a batch is built; ``text`` is the stored form.
    """

    __slots__ = ("_his", "_los")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        self._los = [lo for lo, _ in merged]
        self._his = [hi for _, hi in merged]

    @classmethod
    def parse(cls, text: str) -> SeqRanges:
        """The set written by ``text``; ``ValueError`` if it is not ``a-b,c,...``."""
        ranges: list[tuple[int, int]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo_text, dash, hi_text = part.partition("-")
            lo = int(lo_text)
            hi = int(hi_text) if dash else lo
            if hi < lo:
                raise ValueError(f"range {part!r} ends before it starts")
            ranges.append((lo, hi))
        return cls(ranges)

    @property
    def text(self) -> str:
        return ",".join(
            str(lo) if lo == hi else f"{lo}-{hi}"
            for lo, hi in zip(self._los, self._his, strict=True)
        )

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._los, self._his, strict=True))

    def copy(self) -> SeqRanges:
        other = SeqRanges()
        other._los, other._his = list(self._los), list(self._his)
        return other

    def add(self, seq: int) -> None:
        """Add one value (appending past the end, the usual case, is O(1))."""
        los, his = self._los, self._his
        if his and seq == his[-1] + 1:
            his[-1] = seq
            return
        if not his or seq > his[-1] + 1:
            los.append(seq)
            his.append(seq)
            return
        i = bisect.bisect_right(los, seq) - 1  # the range starting at or before seq
        if i >= 0 and seq <= his[i]:
            return
        joins_left = i >= 0 and his[i] == seq - 1
        joins_right = i + 1 < len(los) and los[i + 1] == seq + 1
        if joins_left and joins_right:
            his[i] = his[i + 1]
            del los[i + 1], his[i + 1]
        elif joins_left:
            his[i] = seq
        elif joins_right:
            los[i + 1] = seq
        else:
            los.insert(i + 1, seq)
            his.insert(i + 1, seq)

    def would_grow(self, seq: int) -> bool:
        """Whether adding ``seq`` would add a range (it is neither in nor next to one)."""
        los, his = self._los, self._his
        i = bisect.bisect_right(los, seq) - 1
        touches = (i >= 0 and seq <= his[i] + 1) or (i + 1 < len(los) and los[i + 1] == seq + 1)
        return not touches

    def difference(self, other: SeqRanges) -> SeqRanges:
        """The values of this set that are not in ``other``."""
        result: list[tuple[int, int]] = []
        cut = other.ranges()
        k = 0
        for lo, hi in self.ranges():
            while k < len(cut) and cut[k][1] < lo:
                k += 1
            j = k
            start = lo
            while j < len(cut) and cut[j][0] <= hi:
                if cut[j][0] > start:
                    result.append((start, cut[j][0] - 1))
                start = max(start, cut[j][1] + 1)
                j += 1
            if start <= hi:
                result.append((start, hi))
        return SeqRanges(result)

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self._los, seq) - 1
        return i >= 0 and seq <= self._his[i]

    def __len__(self) -> int:
        """The number of ranges (what bounds the size of an offset)."""
        return len(self._los)

    def __bool__(self) -> bool:
        return bool(self._los)

    def __repr__(self) -> str:
        return f"SeqRanges({self.text!r})"


@dataclass(frozen=True, slots=True)
class RelayOffset:
    """The stored offset of the relay's one partition (its table).

    ``relayed``: seqs delivered whose rows are not yet confirmed; ``seq``: the last seq
    delivered (for ``liberate status``).
    """

    relayed: str
    seq: int

    def to_map(self) -> dict[str, Primitive]:
        return {"relayed": self.relayed, "seq": self.seq}

    @classmethod
    def from_map(cls, stored: Mapping[str, Primitive]) -> RelayOffset:
        relayed, seq = stored.get("relayed"), stored.get("seq")
        if not isinstance(relayed, str) or not isinstance(seq, int) or isinstance(seq, bool):
            raise FatalError(
                f"the stored outbox relay offset {dict(stored)} is not one this relay wrote",
                hint="the source name is reused by another connector: give the relay its own "
                "name (offsets are kept per source name)",
            )
        try:
            SeqRanges.parse(relayed)
        except ValueError as exc:
            raise FatalError(
                f"the stored outbox relay offset has an unreadable seq set {relayed!r}: {exc}",
                hint="the offset store is damaged; restore it, or start the relay under a new "
                "name (undelivered rows are delivered, confirmed-but-stored ones again)",
            ) from exc
        return cls(relayed, seq)
