"""The streaming phase: replication frames in, change records with their offsets out.

``ChangeStream.poll`` reads frames from the replication connection and returns whole
transactions (a transaction larger than ``max_batch`` events is returned in several polls);
every record carries the offset after it (see ``offsets``): the last record of a transaction
carries its commit end LSN, records inside one carry the previous commit LSN plus how many of
its change messages are done, so a crash inside replays it from the server and skips those.

With protocol 2 the server may stream a large transaction in blocks while it runs: the blocks
go to a temporary file (``_spill``) and the transaction is replayed through the same path, as
if it had been sent whole, when its Stream Commit arrives; a Stream Abort removes the file.

What the server may forget (the flush LSN of the standby status updates) only ever moves to a
position whose every earlier event is durable in the stream (DESIGN §2): the commit end LSN of
durable transactions, or, when every returned record is durable and no transaction is open, the
server's keepalive WAL end or one of our own heartbeat messages. The latter is what keeps an
idle slot from pinning WAL while other databases write.
"""

from __future__ import annotations

import logging
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.postgres import _pgoutput as pg
from connectors.postgres._events import OpenTransaction, change_value, unchanged_columns
from connectors.postgres._messages import heartbeat_record, message_record
from connectors.postgres._rowcode import KeyCode, RowCode
from connectors.postgres._spill import SpilledTransaction
from connectors.postgres._stream import ReplicationConnection
from connectors.postgres._tables import CapturedTable
from connectors.postgres._values import RowLoader
from connectors.postgres._watermarks import WatermarkFilter
from connectors.postgres.config import OWN_MESSAGE_PREFIX, PostgresSourceConfig
from connectors.postgres.offsets import WalOffset, Watermark
from liberate.errors import FatalError
from liberate.records import Primitive, SourceRecord

log = logging.getLogger(__name__)

#: frames taken from the connection at a time
READ_CHUNK = 512
_U32 = struct.Struct("!I").unpack_from
_U64 = struct.Struct("!Q").unpack_from
#: how long a poll waits for the first frame when there is nothing to return
IDLE_WAIT_S = 0.5
#: how often positions are confirmed even when they did not move (keeps the walsender happy)
STATUS_INTERVAL_S = 10.0


@dataclass(slots=True)
class RelationState:
    """What the stream knows of one relation oid: the captured table (None: not captured), and
    the generated code of its hot path (``_rowcode``; None: the general path only)."""

    relation: pg.Relation
    table: CapturedTable | None
    loader: RowLoader | None
    row: RowCode | None = None
    key: KeyCode | None = None


#: builds the state of a Relation message (reflecting the table); called on first sight/change
RelationBuilder = Callable[[pg.Relation], RelationState]
#: emits a heartbeat message; returns False when the server refuses
Heartbeat = Callable[[], bool]


class ChangeStream:
    """Reads one replication stream. Used by one thread, except ``wake``."""

    def __init__(
        self,
        settings: PostgresSourceConfig,
        connection: ReplicationConnection,
        *,
        start: WalOffset,
        relation_builder: RelationBuilder,
        watermarks: WatermarkFilter | None,
        heartbeat: Heartbeat | None,
        caught_up_lsn: int,
        database: str,
        stop: threading.Event,
        wake_fd: int,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.partition: Mapping[str, Primitive] = {"server": settings.name}
        self._build = relation_builder
        self._relations: dict[int, RelationState] = {}
        self._filter = watermarks if watermarks is not None and watermarks.watermarks else None
        self._heartbeat = heartbeat
        self._stop = stop
        self._wake_fd = wake_fd
        self._backlog: list[bytes] = []
        self._pending: list[SourceRecord] = []
        self._txn: OpenTransaction | None = None
        self._resume_lsn = start.lsn
        self._resume_xid = start.tx_id
        self._skip_tx = (start.tx_lsn, start.tx_events) if start.tx_lsn is not None else None
        self._watermarks: tuple[Watermark, ...] = start.watermarks
        self._database = database
        # Positions (see the module docstring). The start is durable: it is the stored offset.
        self._durable = start.lsn
        self._records_upto = 0
        self._quiet = 0
        self._last_completed: tuple[int, int, int] | None = None  # final_lsn, messages, end_lsn
        self._sent_flush = -1
        self._status_at = 0.0
        self._heartbeat_at = time.monotonic()
        self._position_record_at = time.monotonic()
        self._stored_lsn = start.lsn  # the lsn of the last offset handed to the runtime
        self._caught_up_lsn = caught_up_lsn
        self.caught_up = False
        self._just_caught_up = False
        self.received_lsn = start.lsn
        self._max_batch = settings.max_batch
        # Protocol 2: in-progress transactions on disk until they commit (``_spill``).
        self._spill_dir: Path | None = None
        self._streamed: dict[int, SpilledTransaction] = {}
        self._in_block: SpilledTransaction | None = None
        self._replay: Iterator[tuple[int, pg.PgOutputMessage | bytes]] | None = None

    # -- the poll loop -------------------------------------------------------------------------

    def poll(self) -> list[SourceRecord]:
        """The next whole transactions (or a bounded part of a large one); [] when idle."""
        deadline = time.monotonic() + IDLE_WAIT_S
        while not self._stop.is_set():
            if self._replay is not None:
                # A streamed transaction committed: its messages come first, in bounded polls.
                for lsn, message in self._replay:
                    if isinstance(message, bytes):
                        self._streamed_message(message, lsn)
                    else:
                        self._dispatch(message, lsn)
                    if len(self._pending) >= self._max_batch:
                        break
                else:
                    self._replay = None
                if len(self._pending) >= self._max_batch:
                    break
                continue
            if self._backlog:
                frames, self._backlog = self._backlog, []
            else:
                if self._txn is not None:
                    wait = 1.0  # the rest of the transaction is on its way
                elif self._pending or self._just_caught_up:
                    wait = 0.0
                else:
                    wait = max(0.0, deadline - time.monotonic())
                frames = self.connection.read_frames(READ_CHUNK, wait, self._wake_fd)
                if not frames:
                    if self._txn is None and (
                        self._pending or self._just_caught_up or time.monotonic() >= deadline
                    ):
                        # Caught up: return now, so that `run --once` can end at once.
                        self._just_caught_up = False
                        break
                    self._housekeeping()
                    continue
            for i, frame in enumerate(frames):
                self._handle(frame)
                if len(self._pending) >= self._max_batch or self._replay is not None:
                    self._backlog = frames[i + 1:] + self._backlog
                    break
            if len(self._pending) >= self._max_batch:
                break
        self._housekeeping()
        records, self._pending = self._pending, []
        if records:
            if self._txn is not None:
                self._txn.returned_records = True
                self._txn.last_record = None
            stored = records[-1].offset.get("lsn")
            if isinstance(stored, int):
                self._stored_lsn = stored
        elif self._txn is None and not self._stop.is_set():
            return self._position_heartbeat()
        return records

    def _position_heartbeat(self) -> list[SourceRecord]:
        """A heartbeat record when the confirmed position moved on without any change (other
        databases writing): the stored offset follows the slot."""
        interval = self._heartbeat_interval
        topic = self.settings.heartbeat_topic_name
        now = time.monotonic()
        if topic is None or interval <= 0 or now - self._position_record_at < interval:
            return []
        self._position_record_at = now
        position = self.flush_lsn()
        if position <= self._stored_lsn or position <= self._resume_lsn:
            return []
        self._resume_lsn = position
        self._resume_xid = None
        self._prune_watermarks()
        self._stored_lsn = position
        return [heartbeat_record(topic, self.settings.name, self.partition, self._offset())]

    def commit(self, offset: WalOffset) -> None:
        """``offset`` is durable: confirm what may now be forgotten."""
        if offset.tx_lsn is None:
            self._durable = max(self._durable, offset.lsn)
        elif self._last_completed is not None:
            final_lsn, messages, end_lsn = self._last_completed
            if offset.tx_lsn == final_lsn and offset.tx_events >= messages:
                self._durable = max(self._durable, end_lsn)
        self._send_status()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._heartbeat is not None and now - self._heartbeat_at >= self._heartbeat_interval:
            self._heartbeat_at = now
            if not self._heartbeat():
                self._heartbeat = None
        if now - self._status_at >= STATUS_INTERVAL_S:
            self._send_status(force=True)

    @property
    def _heartbeat_interval(self) -> float:
        return self.settings.heartbeat_interval.total_seconds()

    # -- positions -----------------------------------------------------------------------------

    def flush_lsn(self) -> int:
        """The position the server may forget up to."""
        everything_durable = (
            self._durable >= self._records_upto
            and not (self._txn is not None and (self._txn.records or self._txn.returned_records))
        )
        return max(self._durable, self._quiet) if everything_durable else self._durable

    def _send_status(self, *, force: bool = False, reply: bool = False) -> None:
        flush = self.flush_lsn()
        if flush == self._sent_flush and not force and not reply:
            return
        self.connection.send_status(flush, flush, flush, reply=False)
        self._sent_flush = flush
        self._status_at = time.monotonic()

    def _quiet_at(self, lsn: int) -> None:
        """Everything committed before ``lsn`` has been read and turned into records."""
        if lsn > self._quiet:
            self._quiet = lsn
            if self.flush_lsn() > self._sent_flush:
                self._send_status()

    # -- frames --------------------------------------------------------------------------------

    def _handle(self, frame: bytes) -> None:
        if frame[0] != 0x77:  # not XLogData ('w'): ``pg.xlog_start`` is None
            decoded = pg.decode_frame(frame)
            if isinstance(decoded, pg.Keepalive):
                self._keepalive(decoded)
            return
        lsn: int = _U64(frame, 1)[0]  # ``pg.xlog_start``, inline
        if lsn > self.received_lsn:
            self.received_lsn = lsn
        block = self._in_block
        if block is not None:
            if frame[25] == 0x45:  # 'E': Stream Stop
                self._in_block = None
            else:
                block.append(lsn, frame[25:])
            return
        kind = frame[25]
        # An Insert, or an Update without an old key or row: maybe the generated path's.
        if ((kind == 0x49 or kind == 0x55) and len(frame) > 31 and frame[30] == 0x4E
                and self._generated(frame, 26, kind, lsn)):
            return
        self._dispatch(pg.decode_message(frame, offset=25), lsn)

    def _streamed_message(self, message: bytes, lsn: int) -> None:
        """A message of a committed streamed transaction (its xid after the type byte)."""
        kind = message[0]
        if ((kind == 0x49 or kind == 0x55) and len(message) > 10 and message[9] == 0x4E
                and self._generated(message, 5, kind, lsn)):
            return
        self._dispatch(pg.decode_message(message, in_stream=True), lsn)

    def _generated(self, buf: bytes, oid_at: int, kind: int, lsn: int) -> bool:
        """The event of an Insert or Update (new tuple only) whose relation oid is at
        ``oid_at`` of ``buf`` (its tuple 5 bytes later, up to the end), made by the relation's
        generated code (``_rowcode``); False: it is the general path's."""
        txn = self._txn
        if txn is None or self._filter is not None:
            return False
        state = self._relations.get(_U32(buf, oid_at)[0])
        if state is None or state.row is None or state.key is None or state.table is None:
            return False
        after = state.row(buf, oid_at + 5)
        if after is None:
            return False
        txn.messages += 1
        if txn.messages > txn.skip:
            self._emit(state.table, txn, "c" if kind == 0x49 else "u", None, after,
                       state.key(after), lsn)
        return True

    def _dispatch(self, message: pg.PgOutputMessage, lsn: int) -> None:
        match message:
            case pg.Insert() | pg.Update() | pg.Delete() as change:
                self._change(change, lsn)
            case pg.Begin() as begin:
                self._begin(begin)
            case pg.Commit() as commit:
                self._commit(commit)
            case pg.Relation() as relation:
                self._relation(relation)
            case pg.Truncate() as truncate:
                self._truncate(truncate, lsn)
            case pg.Message() as message:
                self._message(message)
            case pg.StreamStart() as start:
                self._in_block = self._spilled(start.xid)
            case pg.StreamCommit() as commit:
                spilled = self._streamed.pop(commit.xid, None)
                if spilled is None:
                    raise FatalError(f"the server committed streamed transaction {commit.xid} "
                                     "without streaming it first")
                self._replay = self._replayed(spilled, commit)
            case pg.StreamAbort() as abort:
                spilled = self._streamed.get(abort.xid)
                if spilled is not None:
                    if abort.subxid == abort.xid:
                        del self._streamed[abort.xid]
                        spilled.close()
                    else:
                        spilled.abort(abort.subxid)
            case _:
                # Type and Origin messages need nothing: types come from the catalog.
                pass

    # -- streamed (in-progress) transactions -----------------------------------------------------

    def _spilled(self, xid: int) -> SpilledTransaction:
        spilled = self._streamed.get(xid)
        if spilled is None:
            if self._spill_dir is None:
                self._spill_dir = Path(tempfile.mkdtemp(prefix="liberate-pg-stream-"))
            spilled = self._streamed[xid] = SpilledTransaction(xid, self._spill_dir)
        return spilled

    def _replayed(
        self, spilled: SpilledTransaction, commit: pg.StreamCommit
    ) -> Iterator[tuple[int, pg.PgOutputMessage | bytes]]:
        """The committed transaction as if sent whole: Begin, its messages (as sent, see
        ``_streamed_message``), Commit."""
        try:
            yield commit.commit_lsn, pg.Begin(commit.commit_lsn, commit.commit_ts, spilled.xid)
            yield from spilled.replay_raw()
            yield commit.end_lsn, pg.Commit(commit.flags, commit.commit_lsn, commit.end_lsn,
                                            commit.commit_ts)
        finally:
            spilled.close()

    def close(self) -> None:
        """Remove the files of streamed transactions; idempotent."""
        if self._replay is not None:
            closer = getattr(self._replay, "close", None)
            if closer is not None:
                closer()
            self._replay = None
        for spilled in self._streamed.values():
            spilled.close()
        self._streamed.clear()
        self._in_block = None
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    def _keepalive(self, keepalive: pg.Keepalive) -> None:
        if self._txn is None:
            # Everything before the server's WAL end was sent before this keepalive.
            self._quiet_at(keepalive.wal_end)
            if keepalive.wal_end >= self._caught_up_lsn:
                self._reached_start_marker()
        if keepalive.reply:
            self._send_status(reply=True)

    def _begin(self, begin: pg.Begin) -> None:
        txn = OpenTransaction.of(begin)
        if self._skip_tx is not None:
            tx_lsn, done = self._skip_tx
            if begin.final_lsn == tx_lsn:
                txn.skip = done
            # Only the first transaction after the resume point can be the one cut short.
            self._skip_tx = None
        self._txn = txn

    def _commit(self, commit: pg.Commit) -> None:
        txn = self._txn
        if txn is None:
            raise FatalError("the replication stream sent a Commit outside a transaction")
        self._txn = None
        self._resume_lsn = commit.end_lsn
        self._resume_xid = txn.begin.xid
        self._prune_watermarks()
        if txn.last_record is not None:
            # The last event of the transaction carries its commit: a resume starts after it.
            txn.last_record.offset = self._offset()
        self._last_completed = (txn.begin.final_lsn, txn.messages, commit.end_lsn)
        if txn.records or txn.returned_records:
            self._records_upto = commit.end_lsn
        else:
            self._quiet_at(commit.end_lsn)
        if commit.end_lsn >= self._caught_up_lsn:
            self._reached_start_marker()

    def _reached_start_marker(self) -> None:
        if not self.caught_up:
            self.caught_up = True
            self._just_caught_up = True

    def _prune_watermarks(self) -> None:
        if self._watermarks:
            kept = tuple(w for w in self._watermarks if w.lsn > self._resume_lsn)
            if kept != self._watermarks:
                self._watermarks = kept
                if not kept:
                    self._filter = None

    def _offset(self, txn: OpenTransaction | None = None) -> dict[str, Primitive]:
        if txn is None:
            out: dict[str, Primitive] = {"lsn": self._resume_lsn, "txId": self._resume_xid}
        else:
            out = {"lsn": self._resume_lsn, "txId": self._resume_xid,
                   "tx_lsn": txn.begin.final_lsn, "tx_events": txn.messages}
        if self._watermarks:
            out["watermarks"] = WalOffset(0, watermarks=self._watermarks).to_map()["watermarks"]
        return out

    def _relation(self, relation: pg.Relation) -> None:
        known = self._relations.get(relation.oid)
        if known is not None and known.relation == relation:
            return
        self._relations[relation.oid] = self._build(relation)

    def _state(self, oid: int) -> RelationState:
        state = self._relations.get(oid)
        if state is None:
            raise FatalError(f"the replication stream sent a change of relation {oid} before "
                             "describing it")
        return state

    # -- change messages -----------------------------------------------------------------------

    def _next_message(self) -> OpenTransaction | None:
        """Count a change message of the open transaction; None when it is to be skipped."""
        txn = self._txn
        if txn is None:
            raise FatalError("the replication stream sent a change outside a transaction")
        txn.messages += 1
        if txn.messages <= txn.skip:
            return None
        return txn

    def _change(self, message: pg.Insert | pg.Update | pg.Delete, lsn: int) -> None:
        txn = self._next_message()
        if txn is None:
            return
        state = self._state(message.relation_oid)
        table, loader = state.table, state.loader
        if table is None or loader is None:
            return
        if isinstance(message, pg.Insert):
            new = loader.load(message.new.values)
            if self._dropped(table, txn, new, message.new.values):
                return
            after = table.value_of_stream(new)
            self._emit(table, txn, "c", None, after, table.schema.key_of(after), lsn)
            return
        if isinstance(message, pg.Delete):
            old = loader.load(message.old.values)
            if self._dropped(table, txn, old, message.old.values):
                return
            before = table.value_of_stream(old)
            key = self._key(table, before, "delete")
            self._emit(table, txn, "d", before, None, key, lsn)
            self._tombstone(table, txn, key)
            return
        self._update(table, loader, txn, message, lsn)

    def _update(
        self,
        table: CapturedTable,
        loader: RowLoader,
        txn: OpenTransaction,
        message: pg.Update,
        lsn: int,
    ) -> None:
        new_raw = message.new
        old_raw = message.old
        new: Sequence[Any] = loader.load(new_raw.values)
        old = loader.load(old_raw.values) if old_raw is not None else None
        unchanged: list[str] | None = None
        if new_raw.unchanged:
            new = list(new)
            unchanged = unchanged_columns(table, new, new_raw.unchanged, old, old_raw)
        after = table.value_of_stream(new)
        key = table.schema.key_of(after)
        before = table.value_of_stream(old) if old is not None else None
        if before is not None and old is not None and old_raw is not None:
            old_key = table.schema.key_of(before)
            if old_key != key and None not in old_key.values():
                # A key change is a delete of the old key and a create of the new one, as in
                # Debezium: a keyed topic must not keep the old key alive. Each half is its
                # own row for a resumed snapshot's watermark.
                if not self._dropped(table, txn, old, old_raw.values):
                    self._emit(table, txn, "d", before, None, old_key, lsn)
                    self._tombstone(table, txn, old_key)
                if not self._dropped(table, txn, new, new_raw.values):
                    self._emit(table, txn, "c", None, after, key, lsn, unchanged)
                return
        if not self._dropped(table, txn, new, new_raw.values):
            self._emit(table, txn, "u", before, after, key, lsn, unchanged)

    def _truncate(self, message: pg.Truncate, lsn: int) -> None:
        txn = self._next_message()
        if txn is None:
            return
        for oid in message.relation_oids:
            table = self._state(oid).table
            if table is None:
                continue
            if self._filter is not None and self._filter.covers(txn.begin.final_lsn) and (
                self._filter.drops(table.name, txn.begin.final_lsn, None, None)
            ):
                continue
            self._emit(table, txn, "t", None, None, None, lsn)

    def _message(self, message: pg.Message) -> None:
        if message.transactional:
            txn = self._next_message()
            if txn is not None and self.settings.wants_message(message.prefix):
                self._emit_message(message, txn)
            return
        if message.prefix.startswith(OWN_MESSAGE_PREFIX):
            # Our heartbeat or start marker: everything before it has been read.
            if self._txn is None:
                self._quiet_at(message.lsn)
                if message.lsn >= self._caught_up_lsn:
                    self._reached_start_marker()
            return
        if self.settings.wants_message(message.prefix):
            # Outside any transaction, its own LSN is a resume point: the server skips the
            # messages and transactions before it.
            self._resume_lsn = max(self._resume_lsn, message.lsn)
            self._resume_xid = None
            self._emit_message(message, None)

    # -- records -------------------------------------------------------------------------------

    def _dropped(
        self,
        table: CapturedTable,
        txn: OpenTransaction,
        values: Sequence[Any],
        raw: Sequence[bytes | None],
    ) -> bool:
        flt = self._filter
        if flt is None or not flt.covers(txn.begin.final_lsn):
            return False
        key = [values[i] for i in table.key_indexes]
        texts = [bytes(raw[i] or b"").decode() for i in table.key_indexes]
        return flt.drops(table.name, txn.begin.final_lsn, key, texts)

    def _key(self, table: CapturedTable, row: Mapping[str, Any], what: str) -> dict[str, Any]:
        key = table.schema.key_of(row)
        if None in key.values():
            raise FatalError(
                f"a {what} of {table.name} does not carry the key column(s) "
                f"{', '.join(table.schema.key_columns)}",
                hint=f"the key columns must be in the replica identity: ALTER TABLE "
                f"{table.name} REPLICA IDENTITY FULL (or USING INDEX on those columns)",
            )
        return key

    def _emit(
        self,
        table: CapturedTable,
        txn: OpenTransaction,
        op: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        key: Mapping[str, Any] | None,
        lsn: int,
        unchanged: list[str] | None = None,
    ) -> None:
        value = change_value(table, txn, op, before, after, lsn, unchanged)
        # ``_offset(txn)``, inline for the common case (no snapshot watermarks pending).
        offset = self._offset(txn) if self._watermarks else {
            "lsn": self._resume_lsn, "txId": self._resume_xid,
            "tx_lsn": txn.begin.final_lsn, "tx_events": txn.messages,
        }
        record = SourceRecord(
            table.topic,
            key,
            value,
            table.key_schema if key is not None else None,
            table.value_schema,
            self.partition,
            offset,
            (),
            txn.ts_ms,
        )
        self._pending.append(record)
        txn.last_record = record

    def _tombstone(
        self, table: CapturedTable, txn: OpenTransaction, key: Mapping[str, Any]
    ) -> None:
        if not self.settings.tombstones_on_delete:
            return
        record = SourceRecord(
            table.topic, key, None, table.key_schema, None, self.partition,
            self._offset(txn), (), txn.ts_ms,
        )
        self._pending.append(record)
        txn.last_record = record

    def _emit_message(self, message: pg.Message, txn: OpenTransaction | None) -> None:
        total = order = 1
        if txn is not None:
            total, order = txn.place(self.settings.message_topic)
        record = message_record(
            self.settings,
            message,
            txn_id=txn.begin.xid if txn is not None else None,
            commit_lsn=txn.begin.final_lsn if txn is not None else None,
            total_order=total,
            collection_order=order,
            ts_ms=txn.ts_ms if txn is not None else time.time_ns() // 1_000_000,
            database=self._database,
            partition=self.partition,
            offset=self._offset(txn),
        )
        self._pending.append(record)
        if txn is not None:
            txn.last_record = record
        else:
            self._records_upto = max(self._records_upto, message.lsn)
