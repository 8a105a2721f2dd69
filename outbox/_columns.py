"""The outbox table's column names: Debezium's defaults, renameable.

The five event columns are Debezium's (``id``, ``aggregatetype``, ``aggregateid``, ``type``,
``payload``), so a table made for Debezium's outbox event router works unchanged. ``headers``
(a JSON object of extra record headers) is liberate's addition; set it to None for a table
without it. The ordering and bookkeeping columns of the shipped DDL (``seq``, ``created_at``,
``relayed_at``) are filled by the database and the relay, never by ``publish``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

DEFAULT_TABLE = "outbox"


@dataclass(frozen=True, slots=True)
class Columns:
    """Names of the outbox columns ``publish`` writes (and the relay reads)."""

    id: str = "id"
    aggregate_type: str = "aggregatetype"
    aggregate_id: str = "aggregateid"
    type: str = "type"
    payload: str = "payload"
    headers: str | None = "headers"

    def __post_init__(self) -> None:
        names = [getattr(self, f.name) for f in fields(self)]
        for f, name in zip(fields(self), names, strict=True):
            if name is None and f.name == "headers":
                continue
            if not isinstance(name, str) or not name:
                raise ValueError(f"Columns.{f.name} must be a non-empty column name, not {name!r}")
        given = [n for n in names if n is not None]
        if len(set(given)) != len(given):
            raise ValueError(f"Columns names a column twice: {given}")


#: the column names of the shipped DDL (outbox/sql/*.sql)
DEFAULT_COLUMNS = Columns()
