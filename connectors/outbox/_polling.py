"""``PollingRelay``: the polling outbox relay (``connector: outbox``, ``mode: polling``).

How it never skips an event (docs/outbox.md has the long form). The classic polling bug is a
high-water mark: transaction T1 takes seq 10, T2 takes seq 11 and commits first, the poller
relays 11 and remembers "after 11", T1 commits, and 10 is never read. This relay keeps no
mark. The table is a queue:

1. ``poll`` selects the rows not yet relayed, in seq order, leaving out the seqs it has
   already delivered and not yet confirmed (``pending``). A late-committing row is simply
   still in the table at the next poll, whatever its seq.
2. Each record's offset carries ``pending`` up to and including that record (seq ranges).
   The runtime stores records and offset together (DESIGN §2: one SQLite transaction on the
   embedded backend, one Kafka transaction on Kafka).
3. Only then ``commit`` confirms those rows: deletes them (``retention: 0s``) or marks
   ``relayed_at`` (kept for ``retention``, purged afterwards). Confirmation is idempotent.
4. After a crash, ``open`` confirms the seqs of the stored offset first: rows whose records
   are durable are never delivered twice; rows whose records are not are still unconfirmed
   and are delivered again. Exactly once with a transactional backend, at least once with an
   at-least-once one.

Order: within a poll rows go out in seq order; a row whose transaction commits after rows
already relayed goes out when it appears (commit order, as a log-based relay sees it).
Events of one aggregate written one transaction after another keep their seq order.

``pending`` (hence the stored offset) is kept to ``MAX_PENDING_RANGES`` ranges: a poll stops
early rather than grow it, and waits for ``commit`` once it is full.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import ClassVar

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from connectors.outbox._routing import EventRouter, Routing, payload_schemas
from connectors.outbox._table import OutboxTable, reflect
from connectors.outbox.config import OutboxSourceConfig
from connectors.outbox.offsets import RelayOffset, SeqRanges
from liberate.config.base import SourceConfig
from liberate.connector import CheckResult, ConnectorStatus, Source
from liberate.database import database_url, mask_url, source_engine
from liberate.database_errors import database_error
from liberate.errors import LiberateError
from liberate.records import Primitive, SourceRecord
from liberate.streams.base import SourceOffset, partition_key

log = logging.getLogger(__name__)

#: most seq ranges delivered and unconfirmed at once; bounds the stored offset to a few KB
MAX_PENDING_RANGES = 256
#: how often relayed rows older than the retention are purged
PURGE_INTERVAL = dt.timedelta(minutes=1)


class PollingRelay(Source):
    """Relays the events of an outbox table, routed like Debezium's outbox event router.

    Threading: ``poll`` and ``commit`` run in the runtime's thread; ``stop`` from any thread
    makes ``poll`` return ``[]`` from then on (its one query is short and bounded).
    """

    config_model: ClassVar[type[SourceConfig]] = OutboxSourceConfig

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, OutboxSourceConfig):
            raise TypeError(
                f"PollingRelay needs an OutboxSourceConfig, not {type(config).__name__}"
            )
        super().__init__(config)
        self.settings: OutboxSourceConfig = config
        self.routing = Routing.of(config)
        self.partition: dict[str, Primitive] = {"table": config.table}
        self._engine: Engine | None = None
        self._url: URL | None = None
        self._table: OutboxTable | None = None
        self._router: EventRouter | None = None
        self._pending = SeqRanges()
        self._stop = threading.Event()
        self._horizon: int | None = None
        self._caught_up = False
        self._purged_at = 0.0
        self._opened_before = False

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        url = database_url(self.settings)
        engine = source_engine(self.settings)
        first = not self._opened_before
        try:
            with self._connection(engine, url, "opening the outbox relay", at_open=first) as conn:
                table = reflect(conn, self.settings, self.routing)
            router = EventRouter(self.routing, table.field_types,
                                 payload_schemas(self.settings))
            stored = offsets.get(partition_key(self.partition))
            if stored is not None:
                # Records of these rows are durable: finish the confirmation a crash cut off.
                delivered = SeqRanges.parse(RelayOffset.from_map(stored).relayed)
                self._confirm(engine, url, table, delivered, at_open=first)
            with self._connection(engine, url, "opening the outbox relay", at_open=first) as conn:
                horizon = table.max_seq(conn)
        except BaseException:
            engine.dispose()
            raise
        self._engine, self._url, self._table, self._router = engine, url, table, router
        self._pending = SeqRanges()
        self._horizon = horizon
        self._caught_up = horizon is None
        self._opened_before = True

    def poll(self) -> list[SourceRecord]:
        engine, url, table, router = self._engine, self._url, self._table, self._router
        if engine is None or url is None or table is None or router is None:
            return []
        if self._stop.is_set():
            return []
        if len(self._pending) >= MAX_PENDING_RANGES:
            return []  # the offset would grow past its bound: wait for commit()
        statement = table.select_batch(self._pending, self.settings.batch_size)
        with self._connection(engine, url, f"reading outbox table {table.label}") as conn:
            rows = conn.execute(statement).all()
        if self._stop.is_set():
            return []
        pending = self._pending.copy()
        records: list[SourceRecord] = []
        for row in rows:
            seq, values = table.row_of(row)
            horizon = self._horizon
            if not self._caught_up and not records and horizon is not None and seq > horizon:
                # Everything visible at open is relayed: say so once (``run --once`` ends
                # here); these rows are read again by the next poll.
                self._caught_up = True
                return []
            if len(pending) >= MAX_PENDING_RANGES and pending.would_grow(seq):
                break
            pending.add(seq)
            offset = RelayOffset(pending.text, seq).to_map()
            records.append(router.route(values, partition=self.partition, offset=offset))
        if not rows:
            self._caught_up = True
        self._pending = pending
        return records

    def caught_up(self) -> bool:
        return self._caught_up

    def commit(self, offsets: Sequence[SourceOffset]) -> None:
        """Confirm the rows whose records are now durable: delete or mark them."""
        engine, url, table = self._engine, self._url, self._table
        if engine is None or url is None or table is None:
            return
        key = partition_key(self.partition)
        for offset in offsets:
            if offset.partition_key != key:
                continue
            delivered = SeqRanges.parse(RelayOffset.from_map(offset.offset).relayed)
            self._confirm(engine, url, table, delivered)
            self._pending = self._pending.difference(delivered)
        self._purge(engine, url, table)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        engine, self._engine = self._engine, None
        self._table = self._router = None
        if engine is not None:
            engine.dispose()

    # -- check and status (on a source that is not open) ----------------------------------

    def check(self) -> list[CheckResult]:
        """Connectivity, the outbox table and its columns. Writes nothing."""
        try:
            url = database_url(self.settings)
            engine = source_engine(self.settings)
        except LiberateError as exc:
            return [CheckResult("database", False, exc.message, exc.hint)]
        results: list[CheckResult] = []
        try:
            with self._connection(engine, url, "connecting", at_open=True) as conn:
                results.append(CheckResult("database", True, f"connected to {mask_url(url)}"))
                table = reflect(conn, self.settings, self.routing)
                results.append(CheckResult(
                    f"outbox table {table.label}", True,
                    f"columns {', '.join(self.routing.columns)}, ordered by {table.seq.name}",
                ))
        except LiberateError as exc:
            results.append(CheckResult(f"outbox table {self.settings.table}", False,
                                       exc.message, exc.hint))
        finally:
            engine.dispose()
        return results

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        """Stored position, and how many rows wait in the table (not yet confirmed)."""
        position = {key: dict(value) for key, value in offsets.items()}
        try:
            url = database_url(self.settings)
            engine = source_engine(self.settings)
        except LiberateError as exc:
            return ConnectorStatus(position=position, state=f"error: {exc.message}")
        try:
            with self._connection(engine, url, "measuring lag", at_open=True) as conn:
                table = reflect(conn, self.settings, self.routing)
                backlog = table.backlog(conn)
        except LiberateError as exc:
            return ConnectorStatus(position=position, state=f"error: {exc.message}")
        finally:
            engine.dispose()
        return ConnectorStatus(position=position, lag={table.label: {"rows": backlog}})

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _connection(
        self, engine: Engine, url: URL, doing: str, *, at_open: bool = False
    ) -> Iterator[Connection]:
        try:
            with engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise database_error(exc, doing=doing, url=url, at_open=at_open) from exc

    def _confirm(
        self, engine: Engine, url: URL, table: OutboxTable, delivered: SeqRanges,
        *, at_open: bool = False,
    ) -> None:
        if not delivered:
            return
        keep = self.settings.retention > dt.timedelta(0)
        doing = f"confirming relayed rows of {table.label}"
        with self._connection(engine, url, doing, at_open=at_open) as conn, conn.begin():
            table.confirm(conn, delivered, mark=_now() if keep else None)

    def _purge(self, engine: Engine, url: URL, table: OutboxTable) -> None:
        # With retention 0s rows are deleted on confirmation; the purge then only clears rows
        # a former retention left marked.
        if table.relayed_at is None:
            return
        retention = self.settings.retention
        interval = min(retention, PURGE_INTERVAL) if retention else PURGE_INTERVAL
        if time.monotonic() - self._purged_at < interval.total_seconds():
            return
        doing = f"purging relayed rows of {table.label}"
        with self._connection(engine, url, doing) as conn, conn.begin():
            purged = table.purge(conn, _now() - retention)
        self._purged_at = time.monotonic()
        if purged:
            log.info("outbox relay %s: purged %d relayed row(s)", self.name, purged)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
