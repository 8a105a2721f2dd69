"""``QuerySource``: liberates the tables (or a custom query) of any SQLAlchemy database by polling.

Polling happens in *cycles*. A cycle starts with the first ``poll()`` after ``open`` or after a
``poll()`` that returned ``[]``; it fixes each target's bound (database clock minus
``timestamp_delay``, ``MAX(incrementing)``, or the whole key range for bulk). Every ``poll()``
then returns one batch of one target, round-robin, until every target is read up to its bound,
and that ``poll()`` returns ``[]``; the runtime waits for the next ``schedule`` tick.
``caught_up()`` is True once the cycle begun at ``open`` is complete (``liberate run --once``).

Rows whose ordering columns are NULL have no place in the order the modes read in: they are
never emitted, and a warning names the table, the columns and the count (at open, then at most
every ``NULL_CHECK_INTERVAL_S`` when a cycle starts).

What polling cannot see, whatever the mode: deletes, and the intermediate states of a row
changed twice between polls. Every record is a read (Debezium op ``r``). Besides:

- ``incrementing`` sees new rows only, never updates; an id committed after a higher one was
  read (ids are allocated at insert, committed later) is skipped.
- the timestamp modes skip a row whose transaction commits more than ``timestamp_delay`` after
  the timestamp it wrote. Rows sharing a timestamp are read in key order (``timestamp``) or
  incrementing order (``timestamp+incrementing``), which makes batch ends and restarts exact.
- ``bulk`` reads the whole table every cycle, in key order, one batch per query (keyset
  pagination, so no cursor or transaction stays open between polls); a restart in the middle
  of a cycle resumes that cycle after the last key stored, a restart after a complete cycle
  starts the next one.

Once a batch is read, the query of the next ``poll()`` is known: it runs in a background
thread while the runtime delivers the batch (``_read_ahead``), and that poll makes its rows.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError

from connectors.query._cancel import QueryCanceller
from connectors.query._checks import backlog, check_target, warn_unordered_rows
from connectors.query._engine import open_engine
from connectors.query._parallel_bulk import ParallelBulkReader
from connectors.query._progress import cycle_progress, is_load
from connectors.query._read_ahead import ReadAhead
from connectors.query._readers import Reader, build_readers, target_resolvers
from connectors.query.config import QueryMode, QuerySourceConfig
from liberate.config.base import SourceConfig
from liberate.connector import CheckResult, ConnectorStatus, Source
from liberate.database import database_url, mask_url
from liberate.database_errors import database_error
from liberate.errors import LiberateError
from liberate.progress import RowProgress
from liberate.records import Primitive, SourceRecord
from liberate.schema.tables import TopicSchemas
from liberate.streams.base import partition_key

NULL_CHECK_INTERVAL_S = 300.0

Rows = Sequence[Sequence[Any]]


@dataclass(frozen=True)
class _Started:
    """A query that ran on a connection of its own; its rows are still to be made."""

    conn: Connection
    result: CursorResult[Any]
    doing: str

    def close(self) -> None:
        # A connection lost during the query fails its rollback here too: the query already
        # raised (or its rows are read), and the next query reports and retries the loss.
        with contextlib.suppress(DBAPIError):
            self.result.close()
        with contextlib.suppress(DBAPIError):
            self.conn.close()


class QuerySource(Source):
    """A polling source over tables or a custom query (``connector: query``).

    Threading: ``poll`` runs in one thread; ``stop`` from any thread interrupts a running query
    and makes ``poll`` return ``[]`` from then on.
    """

    config_model: ClassVar[type[SourceConfig]] = QuerySourceConfig

    def __init__(self, config: SourceConfig) -> None:
        if not isinstance(config, QuerySourceConfig):
            raise TypeError(f"QuerySource needs a QuerySourceConfig, not {type(config).__name__}")
        super().__init__(config)
        self.settings: QuerySourceConfig = config
        self._engine: Engine | None = None
        self._url: URL | None = None
        self._readers: list[Reader] = []
        self._stop = threading.Event()
        self._canceller = QueryCanceller()
        self._cycle_open = False
        self._next = 0
        self._caught_up = False
        self._null_checked_at = 0.0
        self._opened_before = False
        self._ahead: ReadAhead[_Started] = ReadAhead(config.name, _Started.close)
        self._parallel: ParallelBulkReader | None = None
        self._progress: RowProgress | None = None
        self._cycle_starts = False
        self._initial = False

    # -- lifecycle ------------------------------------------------------------------------

    def open(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> None:
        url = database_url(self.settings)
        engine = open_engine(self.settings)
        # The first open fails clearly on a wrong URL or a server that is down; a re-open after
        # a retriable failure (the runtime's retry) treats a lost connection as retriable.
        first = not self._opened_before
        try:
            with self._connection(engine, url, doing="opening the source", at_open=first) as conn:
                readers = build_readers(conn, self.settings, url, offsets)
                for reader in readers:
                    reader.cursor.begin_cycle(conn)
                warn_unordered_rows(conn, readers)
        except BaseException:
            engine.dispose()
            raise
        self._engine, self._url, self._readers = engine, url, readers
        self._parallel = self._parallel_reader(engine)
        self._opened_before = True
        self._cycle_open = True
        self._next = 0
        self._caught_up = False
        self._null_checked_at = time.monotonic()
        self._cycle_starts, self._initial = True, not offsets

    def poll(self) -> list[SourceRecord]:
        starting = self._cycle_starts or not self._cycle_open
        self._cycle_starts = False
        try:
            records = self._poll()
        except LiberateError:
            if self._stop.is_set():
                return []  # the query was interrupted by stop()
            raise
        self._track_progress(starting, records)
        return records

    def _track_progress(self, starting: bool, records: list[SourceRecord]) -> None:
        """Feed the progress of a load (bulk cycles, the initial cycle): ``liberate.progress``."""
        initial = self._initial
        if starting:
            self._initial = False
        if starting and records and self._engine is not None \
                and is_load(self.settings, initial=initial):
            try:
                with self._engine.connect() as conn:
                    self._progress = cycle_progress(conn, self.settings, self._readers,
                                                    initial=initial)
            except DBAPIError:
                self._progress = None  # a progress bar is not worth failing a poll for
        if self._progress is not None:
            self._progress.advance(len(records))
            if not records:
                self._progress.close()
                self._progress = None

    def _poll(self) -> list[SourceRecord]:
        engine, url = self._engine, self._url
        if engine is None or url is None or self._stop.is_set():
            return []
        if not self._cycle_open:
            self._begin_cycle(engine, url)
        batch = self.settings.batch_size
        bulk = self.settings.mode == QueryMode.BULK
        for _ in range(len(self._readers)):
            if self._stop.is_set():
                return []
            reader = self._readers[self._next]
            self._next = (self._next + 1) % len(self._readers)
            if reader.cursor.cycle_done:
                continue
            if self._parallel is not None:
                run = functools.partial(self._query, engine, url, reader.target.label)
                made = self._parallel.records(reader, run, batch)
                if made is not None:
                    self._ahead.discard()  # a query run ahead for this reader is stale now
                if self._stop.is_set():
                    return []
                if made:
                    return made
                if made is not None:
                    continue  # the workers read this reader's cycle to its end
            rows = self._rows(engine, url, reader, batch)
            more = len(rows) > batch
            if more:
                rows = rows[:batch]
            offsets = reader.cursor.advance(rows, last_of_cycle=not more)
            self._read_ahead(engine, url, batch)
            if rows:
                ts_ms = time.time_ns() // 1_000_000
                return reader.records.records(rows, offsets, ts_ms=ts_ms, snapshot=bulk)
        self._cycle_open = False
        self._caught_up = True
        return []

    def _rows(self, engine: Engine, url: URL, reader: Reader, batch: int) -> Rows:
        """The next batch of ``reader``, and one row more that tells whether the cycle goes on."""
        started = self._ahead.take(reader)
        if started is None:
            statement = reader.cursor.statement(batch + 1)
            started = self._start_query(engine, url, reader.target.label, statement)
        return self._end_query(started, url)

    def _read_ahead(self, engine: Engine, url: URL, batch: int) -> None:
        """Start the query of the reader the next ``poll()`` picks, if that poll reads one."""
        count = len(self._readers)
        for step in range(count):
            reader = self._readers[(self._next + step) % count]
            if self._parallel is not None and self._parallel.handles(reader):
                return  # its next batch is being read by the workers
            if not reader.cursor.cycle_done:
                # The cursor does not move until that poll: its query is the one built now.
                statement = reader.cursor.statement(batch + 1)
                label = reader.target.label
                self._ahead.start(
                    reader, functools.partial(self._start_query, engine, url, label, statement)
                )
                return

    def _start_query(
        self, engine: Engine, url: URL, label: str, statement: sa.Select[Any]
    ) -> _Started:
        """Run ``statement`` on a connection of its own; the rows are made by ``_end_query``."""
        doing = f"reading {label}"
        conn: Connection | None = None
        try:
            conn = engine.connect()
            with self._canceller.running(engine, conn.connection):
                return _Started(conn, conn.execute(statement), doing)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, DBAPIError):
                raise database_error(exc, doing=doing, url=url) from exc
            raise

    def _query(self, engine: Engine, url: URL, label: str, statement: sa.Select[Any]) -> Rows:
        return self._end_query(self._start_query(engine, url, label, statement), url)

    def _parallel_reader(self, engine: Engine) -> ParallelBulkReader | None:
        """The parallel bulk reader, where it may be used (see ``_parallel_bulk``)."""
        settings = self.settings
        processes = settings.bulk_processes()
        if (
            processes < 2
            or settings.mode != QueryMode.BULK
            or settings.envelope != "entity"
            or settings.query is not None
            or engine.dialect.name == "sqlite"
        ):
            return None
        return ParallelBulkReader(settings, processes, self._stop)

    def _end_query(self, started: _Started, url: URL) -> Rows:
        try:
            return started.result.all()
        except DBAPIError as exc:
            raise database_error(exc, doing=started.doing, url=url) from exc
        finally:
            started.close()

    def caught_up(self) -> bool:
        return self._caught_up

    def stop(self) -> None:
        self._stop.set()
        self._canceller.cancel()

    def compacts(self, topic: str) -> bool:
        # An entity record is the latest state of its row: a compacted topic keeps exactly that.
        # Debezium envelopes form a change log.
        return self.settings.envelope == "entity"

    def close(self) -> None:
        self._ahead.close()
        bar, self._progress = self._progress, None
        if bar is not None:
            bar.close()
        parallel, self._parallel = self._parallel, None
        if parallel is not None:
            parallel.close()
        engine, self._engine = self._engine, None
        self._readers = []
        if engine is not None:
            engine.dispose()

    # -- check and status (on a source that is not open) ----------------------------------

    def check(self) -> list[CheckResult]:
        """Connectivity, each table, its key, offset columns and types. Writes nothing."""
        try:
            url = database_url(self.settings)
            engine = open_engine(self.settings)
        except LiberateError as exc:
            return [CheckResult("database", False, exc.message, exc.hint)]
        results: list[CheckResult] = []
        try:
            with self._connection(engine, url, doing="connecting", at_open=True) as conn:
                results.append(CheckResult("database", True, f"connected to {mask_url(url)}"))
                for label, resolve in target_resolvers(conn, self.settings, url):
                    results.extend(check_target(conn, self.settings, label, resolve))
        except LiberateError as exc:
            results.append(CheckResult("database", False, exc.message, exc.hint))
        finally:
            engine.dispose()
        return results

    def current_schemas(self) -> list[TopicSchemas]:
        """The schemas each table would be written with now (``liberate schema check``)."""
        url = database_url(self.settings)
        engine = open_engine(self.settings)
        try:
            with self._connection(engine, url, doing="reading the tables", at_open=True) as conn:
                return [
                    TopicSchemas(reader.target.label, reader.target.topic,
                                 reader.records.key_schema, reader.records.value_schema)
                    for reader in build_readers(conn, self.settings, url, {})
                ]
        finally:
            engine.dispose()

    def status(self, offsets: Mapping[str, Mapping[str, Primitive]]) -> ConnectorStatus:
        """Stored positions, and how far behind the database each one is now."""
        position = {key: dict(value) for key, value in offsets.items()}
        try:
            url = database_url(self.settings)
            engine = open_engine(self.settings)
        except LiberateError as exc:
            return ConnectorStatus(position=position, state=f"error: {exc.message}")
        lag = {}
        try:
            with self._connection(engine, url, doing="measuring lag", at_open=True) as conn:
                for reader in build_readers(conn, self.settings, url, offsets):
                    lag[partition_key(reader.target.partition)] = backlog(conn, reader)
        except LiberateError as exc:
            return ConnectorStatus(position=position, lag=lag, state=f"error: {exc.message}")
        finally:
            engine.dispose()
        return ConnectorStatus(position=position, lag=lag, state="idle")

    # -- internals ------------------------------------------------------------------------

    @contextmanager
    def _connection(
        self, engine: Engine, url: URL, *, doing: str, at_open: bool = False
    ) -> Iterator[Connection]:
        try:
            with engine.connect() as conn, self._canceller.running(engine, conn.connection):
                yield conn
        except DBAPIError as exc:
            raise database_error(exc, doing=doing, url=url, at_open=at_open) from exc

    def _begin_cycle(self, engine: Engine, url: URL) -> None:
        self._ahead.discard()  # nothing is read ahead between cycles; be sure all the same
        with self._connection(engine, url, doing="starting a polling cycle") as conn:
            for reader in self._readers:
                reader.cursor.begin_cycle(conn)
            if time.monotonic() - self._null_checked_at >= NULL_CHECK_INTERVAL_S:
                warn_unordered_rows(conn, self._readers)
                self._null_checked_at = time.monotonic()
        self._cycle_open = True
