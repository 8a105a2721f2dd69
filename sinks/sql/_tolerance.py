"""Writing one batch, and what happens to the records that cannot be written.

``BatchWriter.write`` reads the batch as changes, prepares the tables, and commits the rows
with the offsets in one transaction. When the database refuses a record (or a record cannot
be read or converted), ``errors.tolerance`` decides:

- ``none``: the batch is replayed change by change in a transaction that is rolled back, to
  name the first refused record; the sink stops with it and nothing of the batch is written;
- ``all``: the same replay (each change under a savepoint) finds every refused record; the
  batch is then written without them, in one transaction that also parks them (the parked
  table, with their bytes) and moves the offsets past them. Later records of a refused
  record's key (same table, same key) are parked behind it, in this batch and in later ones,
  until ``liberate dlq replay`` applies them in order: one key's changes never overtake each
  other. Parked records go to the dead-letter topic too, just before the commit (a crash in
  between sends them again; their headers name their origin).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from liberate.errors import FatalError, LiberateError, RecordError, RetriableError
from liberate.records import ConsumedRecord, SinkRecord
from sinks.sql._dead_letters import (
    PARKED_CLASS,
    RECORD_ERROR,
    SinkContext,
    key_hash,
    key_text,
    letter_headers,
)
from sinks.sql._errors import Failure, failure_of, message_of, wrap
from sinks.sql._events import Action, Change, EventReader, origin
from sinks.sql._layouts import RowLayout
from sinks.sql._offsets import OffsetStore, Span, next_offsets_of, not_yet_written
from sinks.sql._parking import ParkedRecord, ParkedStore
from sinks.sql._steps import Step, Steps
from sinks.sql._tables import TableCatalog
from sinks.sql._writes import SqlWriter
from sinks.sql.config import SqlSinkConfig, table_name_for

log = logging.getLogger(__name__)

Coordinates = tuple[str, int, int]
TableChange = tuple[str, Change]

# Each round either commits or finds at least one more refused record; past this many, the
# database refuses records in bulk that it accepts one by one.
_MAX_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class _Letter:
    """A record leaving the batch: refused (``error``) or parked ``behind`` another one."""

    table: str
    change: Change
    key_text: str | None
    key_hash: str | None
    error: LiberateError | None
    behind: str | None


class _Refused(Exception):
    """The data transaction hit a refused record and was rolled back."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class BatchWriter:
    """Writes batches for one sink (see the module doc). Used by one thread."""

    def __init__(
        self,
        settings: SqlSinkConfig,
        engine: Engine,
        *,
        catalog: TableCatalog,
        offsets: OffsetStore,
        parking: ParkedStore,
        steps: Steps,
        reader: EventReader,
        bulk: SqlWriter,
        single: SqlWriter,
    ) -> None:
        self.settings = settings
        self.context: SinkContext | None = None
        self._engine = engine
        self._catalog = catalog
        self._offsets = offsets
        self._parking = parking
        self._steps = steps
        steps.judge = self._judged
        self._reader = reader
        self.steps, self.reader = steps, reader  # shared with the fast path (``_fast``)
        self._bulk = bulk
        self._single = single
        self._tolerate = settings.errors.tolerance == "all"
        self._mode = settings.mode
        self._keyed = settings.mode != "insert" and settings.pk_mode != "none"
        self._table_names: dict[str, str] = {}
        self._db_errors: tuple[type[BaseException], ...] = (
            sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error,
        )

    # -- one batch ---------------------------------------------------------------------------

    def write(self, batch: Sequence[SinkRecord]) -> None:
        """Write ``batch`` and its offsets in one transaction."""
        changes, bad = self._read(batch)
        self._steps.prepare([tc for tc in changes if tc[1].action is not Action.SKIP])
        span = Span.of(batch)
        for _ in range(_MAX_ROUNDS):
            try:
                self._commit(changes, bad, span)
                return
            except _Refused as refused:
                found = self._locate(changes, bad, first=not self._tolerate)
                if isinstance(found, RecordError):
                    raise found from refused.cause
                if not found:
                    raise FatalError(
                        "the database refused the batch but no single record of it: "
                        f"{message_of(refused.cause)}",
                        hint="check the target table's constraints and triggers",
                    ) from refused.cause
                bad.update(found)
        raise FatalError(
            "the database keeps refusing the batch in bulk while accepting its records one "
            "by one", hint="check the target table's constraints and triggers",
        )

    def _read(self, batch: Sequence[SinkRecord]) -> tuple[list[TableChange], dict[
            Coordinates, LiberateError]]:
        names = self._table_names
        template = self.settings.table
        read = self._reader.read
        keyed = self._keyed
        changes: list[TableChange] = []
        bad: dict[Coordinates, LiberateError] = {}
        for record in batch:
            table = names.get(record.topic)
            if table is None:
                table = names[record.topic] = table_name_for(template, record.topic)
            error: LiberateError | None = record.extra.get(RECORD_ERROR) if record.extra else None
            if error is None:
                try:
                    change = read(record)
                except RecordError as exc:
                    error = exc
                else:
                    if keyed and change.action is Action.WRITE and not change.identity:
                        error = RecordError(
                            f"record {origin(record)} has no key (or no key schema); the "
                            f"{self._mode} mode needs one",
                            origin=origin(record),
                            hint="produce keyed records, set pk_mode: record_value with "
                            "pk_fields, or use mode: insert",
                        )
            if error is not None:
                if not self._tolerate:
                    raise error
                bad[_coordinates(record)] = error
                change = Change(record, Action.SKIP, identity=self._reader.identity(record))
            changes.append((table, change))
        return changes, bad

    def _commit(self, changes: Sequence[TableChange], bad: dict[Coordinates, LiberateError],
                span: Span) -> None:
        try:
            with self._engine.begin() as conn:
                stored = self._offsets.read(conn, span.topics(), lock=True)
                if span.all_from(stored):
                    fresh, next_offsets = changes, span.next_offsets()
                else:  # a replay of records written already (an ambiguous commit, a restart)
                    fresh = not_yet_written(changes, stored)
                    next_offsets = next_offsets_of(fresh)
                if not fresh:
                    return
                good, letters = self._sorted(conn, fresh, bad)
                for step in self._steps.plan(good):
                    self._apply(conn, step, self._bulk)
                if letters:
                    self._park(conn, letters)
                self._offsets.store(conn, next_offsets)
        except RecordError as exc:
            raise _Refused(exc) from exc
        except self._db_errors as exc:
            if failure_of(exc) is Failure.RECORD:
                raise _Refused(exc) from exc
            raise self._failure(exc) from exc

    def _sorted(
        self, conn: Connection, fresh: Sequence[TableChange],
        bad: dict[Coordinates, LiberateError],
    ) -> tuple[list[TableChange], list[_Letter]]:
        """The changes to write, and the letters: refused records and those parked behind."""
        blocked = self._parking.blocked_keys(conn) if self._tolerate else {}
        if not bad and not blocked:
            return list(fresh), []
        good: list[TableChange] = []
        letters: list[_Letter] = []
        for table, change in fresh:
            error = bad.get(_coordinates(change.record))
            if error is None and not blocked:
                good.append((table, change))
                continue
            text = key_text(change.identity) if change.identity else None
            hashed = key_hash(text) if text is not None else None
            if error is not None:
                letters.append(_Letter(table, change, text, hashed, error, None))
                if hashed is not None:
                    blocked.setdefault((table, hashed), origin(change.record))
            elif hashed is not None and (table, hashed) in blocked:
                behind = blocked[(table, hashed)]
                letters.append(_Letter(table, change, text, hashed, None, behind))
            else:
                good.append((table, change))
        return good, letters

    def _park(self, conn: Connection, letters: Sequence[_Letter]) -> None:
        queue = self.context
        if queue is None:
            raise FatalError(
                f"sink {self.settings.name} has records to dead-letter but no dead-letter queue",
                hint="errors.tolerance all works under `liberate run`, which provides it",
            )
        now_ms = time.time_ns() // 1_000_000
        parked: list[ParkedRecord] = []
        sent = []
        for letter in letters:
            record = letter.change.record
            raw = queue.raw(record)
            if raw is None:
                raise FatalError(f"the consumed bytes of {origin(record)} are not known")
            if letter.error is None:
                error_class, message = PARKED_CLASS, f"parked behind {letter.behind}"
            else:
                error_class = f"{type(letter.error).__module__}.{type(letter.error).__qualname__}"
                message = letter.error.message
            headers = letter_headers(record, sink=self.settings.name, error_class=error_class,
                                     message=message, behind=letter.behind, now_ms=now_ms)
            sent.append((record, headers))
            parked.append(
                ParkedRecord(
                    topic=record.topic, partition=record.partition, offset=record.offset,
                    target=letter.table, key_text=letter.key_text, key_hash=letter.key_hash,
                    behind=letter.behind, error_class=error_class, error_message=message,
                    key=raw[0], value=raw[1], headers=record.headers,
                    timestamp_ms=record.timestamp_ms, parked_at_ms=now_ms,
                )
            )
        self._parking.add(conn, parked)
        queue.send(self.settings.dead_letter_topic, sent)
        refused = sum(1 for letter in letters if letter.error is not None)
        log.warning(
            "sink %s: %d record(s) dead-lettered and %d parked behind them in %s "
            "(see `liberate dlq list`)",
            self.settings.name, refused, len(letters) - refused,
            self.settings.dead_letter_topic,
        )

    # -- finding refused records -------------------------------------------------------------

    def _locate(
        self, changes: Sequence[TableChange], bad: dict[Coordinates, LiberateError], *,
        first: bool,
    ) -> RecordError | dict[Coordinates, LiberateError]:
        """Replay the batch change by change, each under a savepoint, in a transaction that is
        rolled back: the first refused record (``first``) or every one."""
        found: dict[Coordinates, LiberateError] = {}
        try:
            with self._engine.connect() as conn:
                transaction = conn.begin()
                try:
                    stored = self._offsets.read(conn, _topics(changes))
                    fresh = not_yet_written(changes, stored)
                    blocked = set(self._parking.blocked_keys(conn)) if self._tolerate else set()
                    for table, change in fresh:
                        coordinates = _coordinates(change.record)
                        hashed = (
                            key_hash(key_text(change.identity)) if change.identity else None
                        )
                        if coordinates in bad or coordinates in found:
                            if hashed is not None:
                                blocked.add((table, hashed))
                            continue
                        if hashed is not None and (table, hashed) in blocked:
                            continue
                        error = self._try(conn, table, change)
                        if error is None:
                            continue
                        if first:
                            return error
                        found[coordinates] = error
                        if hashed is not None:
                            blocked.add((table, hashed))
                finally:
                    transaction.rollback()
        except LiberateError:
            raise
        except self._db_errors as exc:
            raise wrap(exc, "finding the record the database refused") from exc
        return found

    def _try(self, conn: Connection, table: str, change: Change) -> RecordError | None:
        step = self._steps.step_of(table, change)
        if step is None:
            return None
        savepoint = conn.begin_nested()
        try:
            self._apply(conn, step, self._single)
        except RecordError as exc:
            savepoint.rollback()
            return exc
        except self._db_errors as exc:
            savepoint.rollback()
            if failure_of(exc) is not Failure.RECORD:
                raise self._failure(exc) from exc
            return self._record_error(step, change, exc)
        savepoint.commit()
        return None

    def _record_error(self, step: Step, change: Change, exc: BaseException) -> RecordError:
        record = change.record
        return RecordError(
            f"cannot write record {origin(record)} (key {_short(record.key)}) to table "
            f"{self._catalog.where(step.table)}: {message_of(exc)}",
            origin=origin(record),
            hint="fix the record or the table; with errors.tolerance none nothing of the batch "
            "was written",
        )

    # -- replay --------------------------------------------------------------------------------

    def replay(self, decode: Callable[[list[ConsumedRecord]], list[SinkRecord]]) -> int:
        """Apply the parked records in stream order and release their keys (one transaction)."""
        for _ in range(3):
            parked = self._parked()
            if not parked:
                return 0
            records = decode([
                ConsumedRecord(p.topic, p.partition, p.offset, p.key, p.value, p.headers,
                               p.timestamp_ms)
                for p in parked
            ])
            changes = [(p.target, self._reader.read(r)) for p, r in zip(parked, records,
                                                                          strict=True)]
            self._steps.prepare([tc for tc in changes if tc[1].action is not Action.SKIP])
            try:
                with self._engine.begin() as conn:
                    self._offsets.read(conn, lock=True)  # waits for a running sink's batch
                    if self._parking.all(conn) != parked:
                        continue  # the running sink parked more meanwhile: take them too
                    for table, change in changes:
                        step = self._steps.step_of(table, change)
                        if step is not None:
                            self._apply_replayed(conn, step, change)
                    self._parking.remove(conn, parked)
            except self._db_errors as exc:
                raise self._failure(exc) from exc
            log.info("sink %s: replayed %d parked record(s)", self.settings.name, len(parked))
            return len(parked)
        raise RetriableError("records kept being parked while the replay ran; run it again")

    def _apply_replayed(self, conn: Connection, step: Step, change: Change) -> None:
        try:
            self._apply(conn, step, self._single)
        except self._db_errors as exc:
            if failure_of(exc) is Failure.RECORD:
                error = self._record_error(step, change, exc)
                raise RecordError(
                    f"replay stopped, nothing was applied: {error.message}",
                    origin=error.origin,
                    hint="fix the cause in the target (the table, its constraints or "
                    "triggers), then replay again",
                ) from exc
            raise

    def _parked(self) -> list[ParkedRecord]:
        try:
            with self._engine.connect() as conn:
                return self._parking.all(conn)
        except self._db_errors as exc:
            raise wrap(exc, "reading the parked records") from exc

    # -- shared ------------------------------------------------------------------------------

    def _judged(self, change: Change) -> bool:
        """Whether ``change``'s schema is judged for narrowings and dropped columns: unless
        the runtime says a newer version is registered (an older producer's record)."""
        return self.context is None or self.context.is_latest_schema(change.record) is not False

    def _apply(self, conn: Connection, step: Step, writer: SqlWriter) -> None:
        if step.action is Action.WRITE:
            assert isinstance(step.layout, RowLayout)
            writer.write(conn, step.layout, step.changes, mode=self._mode, kept=step.kept)
        elif step.action is Action.DELETE:
            assert not isinstance(step.layout, RowLayout | sa.Table)
            writer.delete(conn, step.layout, step.changes)
        elif step.action is Action.TRUNCATE:
            assert isinstance(step.layout, sa.Table)
            writer.truncate(conn, step.layout)

    def _failure(self, exc: BaseException) -> LiberateError:
        if failure_of(exc) is Failure.MISSING:
            self._catalog.forget()
            return RetriableError(
                f"a target table or column disappeared during the write: {message_of(exc)}",
                hint="the sink reflects the tables again and retries",
            )
        return wrap(exc, "writing the batch")


def _coordinates(record: SinkRecord) -> Coordinates:
    return (record.topic, record.partition, record.offset)


def _topics(changes: Sequence[TableChange]) -> set[str]:
    return {change.record.topic for _, change in changes}


def _short(value: Any, limit: int = 200) -> str:
    text = repr(dict(value)) if isinstance(value, dict) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

