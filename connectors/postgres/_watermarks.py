"""Dropping the stream events a resumed snapshot already contains (the watermark rule).

A snapshot resumed after a crash reads the rest of the tables under a newer snapshot,
consistent at LSN ``L``, while streaming restarts from the older position. For rows read under
that newer snapshot, the events of transactions committed before ``L`` are already reflected in
their ``r`` events; replaying them after would move a consumer back in time. Each resume adds
a ``Watermark(table, after, L)``: the region from ``(table, after)`` on, in snapshot order
(tables in configuration order, rows in key order). An event of a transaction whose commit LSN
is below ``L`` is dropped when its row lies in the region. Regions nest (a later resume starts
further on, with a higher ``L``): the innermost region containing a row decides.

Key order is the database's: integer, numeric, date/time and uuid keys compare in Python;
anything else (text under a collation, ...) is compared by the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connectors.postgres.offsets import Watermark

#: type oids whose Python values order exactly as PostgreSQL orders them
PYTHON_ORDERED_TYPES = frozenset({
    16,  # bool
    20, 21, 23, 26,  # int8, int2, int4, oid
    1082, 1114, 1184,  # date, timestamp, timestamptz
    2950,  # uuid
})

#: (table, stream key texts, watermark key texts) -> stream key > watermark key, in the database
DatabaseComparison = Callable[[str, Sequence[str], Sequence[str]], bool]


class WatermarkFilter:
    """Decides which stream events a resumed snapshot already covers."""

    def __init__(
        self,
        watermarks: Sequence[Watermark],
        table_order: Mapping[str, int],
        *,
        key_types: Mapping[str, Sequence[int]],
        load_key: Callable[[str, Sequence[str]], tuple[Any, ...]],
        compare_in_database: DatabaseComparison,
    ) -> None:
        # Innermost region first: later resumes have higher LSNs and smaller regions.
        self.watermarks = tuple(sorted(watermarks, key=lambda w: w.lsn, reverse=True))
        self._order = table_order
        self._key_types = key_types
        self._load_key = load_key
        self._compare = compare_in_database
        self._loaded: dict[tuple[str, tuple[str, ...]], tuple[Any, ...]] = {}
        self.horizon = max((w.lsn for w in watermarks), default=0)

    def covers(self, commit_lsn: int) -> bool:
        """Whether a transaction committed at ``commit_lsn`` may have events to drop."""
        return commit_lsn < self.horizon

    def drops(
        self,
        table: str,
        commit_lsn: int,
        key: Sequence[Any] | None,
        key_texts: Sequence[str] | None,
    ) -> bool:
        """Whether the event of ``table`` (``key``: its Python values and text forms; None for a
        truncate, which concerns the whole table) in a transaction committed at ``commit_lsn``
        is already in a resumed snapshot."""
        index = self._order.get(table)
        if index is None:
            return False
        for mark in self.watermarks:
            start = self._order.get(mark.table)
            if start is None or index < start:
                continue
            if index > start or mark.after is None:
                return commit_lsn < mark.lsn
            if key is None or key_texts is None:
                # A truncate of a table read partly before and partly after the resume: the
                # resume re-reads such a table whole (see the source), so this is not reached.
                continue
            if self._after(table, key, key_texts, mark.after):
                return commit_lsn < mark.lsn
        return False

    def _after(
        self, table: str, key: Sequence[Any], texts: Sequence[str], bound: tuple[str, ...]
    ) -> bool:
        types = self._key_types.get(table, ())
        if types and all(t in PYTHON_ORDERED_TYPES for t in types):
            cache_key = (table, bound)
            bound_values = self._loaded.get(cache_key)
            if bound_values is None:
                bound_values = self._loaded[cache_key] = self._load_key(table, bound)
            return tuple(key) > bound_values
        return self._compare(table, texts, bound)
