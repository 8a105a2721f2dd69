"""Which polling cycles of a query source are loads worth a progress bar (``liberate.progress``).

Every cycle of ``bulk`` mode reads whole tables; in the other modes only the first cycle of a
source without a stored position does (the initial load). Later cycles read what changed
since the last one, and stay silent.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from connectors.query._readers import Reader
from connectors.query.config import QueryMode, QuerySourceConfig
from liberate.progress import RowProgress, estimate_total


def is_load(config: QuerySourceConfig, *, initial: bool) -> bool:
    """Whether a cycle beginning now reads whole tables (``initial``: no stored positions)."""
    return config.mode == QueryMode.BULK or initial


def cycle_progress(conn: Connection, config: QuerySourceConfig, readers: Sequence[Reader],
                   *, initial: bool) -> RowProgress | None:
    """The progress of the cycle beginning now, or None when it is not a load.

    ``initial``: the source starts without stored positions. Totals come from the catalog
    estimates of the tables (unknown for a custom query).
    """
    if not is_load(config, initial=initial):
        return None
    bulk = config.mode == QueryMode.BULK
    total = estimate_total(conn, (reader.target.from_clause for reader in readers))
    what = "bulk load" if bulk else "initial load"
    return RowProgress(f"source {config.name}: {what}", total)
