"""The replication connection: replication commands and the START_REPLICATION copy stream.

psycopg 3 has no replication API; its low-level ``psycopg.pq.PGconn`` speaks the protocol.
Every wait is a ``select()`` on the socket (and on a wake-up pipe, so ``stop()`` from another
thread returns at once) followed by ``consume_input()``; the blocking ``get_copy_data(0)`` of
the binary build holds the GIL while it waits and would freeze every other thread.

SQL text here is built with ``psycopg.sql`` (quoted identifiers and literals); LSNs are
numbers we format ourselves.
"""

from __future__ import annotations

import select
import time
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL

from connectors.postgres._pgoutput import lsn_text, parse_lsn, standby_status
from liberate.errors import FatalError, PrerequisiteError, RetriableError

_SQLSTATE = pq.DiagnosticField.SQLSTATE
_ExecStatus = pq.ExecStatus
#: microseconds from the Unix epoch to PostgreSQL's (2000-01-01)
_PG_EPOCH_US = 946_684_800_000_000
#: how long a replication command may take (creating a slot waits for running transactions)
COMMAND_TIMEOUT_S = 300.0


class SlotLostError(FatalError):
    """The replication slot is gone or can no longer serve changes."""


@dataclass(frozen=True, slots=True)
class CreatedSlot:
    """What CREATE_REPLICATION_SLOT answered."""

    name: str
    consistent_point: int
    snapshot_name: str | None


def replication_conninfo(url: URL) -> str:
    """A libpq conninfo for a ``replication=database`` connection to the database of ``url``."""
    params: dict[str, str | int | None] = {
        k: v for k, v in url.query.items() if isinstance(v, str)
    }
    params.update(
        host=url.host, port=url.port, user=url.username, password=url.password,
        dbname=url.database, replication="database", application_name="liberate",
    )
    return make_conninfo("", **params)


class ReplicationConnection:
    """One ``replication=database`` connection. Not thread-safe, except ``wake`` via the pipe
    whose read end is given to ``read_frames``."""

    def __init__(self, conninfo: str, *, where: str) -> None:
        self.where = where
        self._pg = pq.PGconn.connect_start(conninfo.encode())
        self._closed = False
        try:
            self._wait_connected()
        except BaseException:
            self.close()
            raise
        self._pg.nonblocking = 1
        self.streaming = False

    # -- commands ------------------------------------------------------------------------------

    def command(self, text: sql.Composable | bytes) -> list[dict[str, str | None]]:
        """Run one replication command; its rows as dicts of text."""
        query = text if isinstance(text, bytes) else text.as_bytes(None)
        try:
            self._pg.send_query(query)
        except psycopg.OperationalError as exc:
            raise self._error("sending a replication command") from exc
        self._flush()
        result = self._result(deadline=time.monotonic() + COMMAND_TIMEOUT_S)
        rows: list[dict[str, str | None]] = []
        for r in range(result.ntuples):
            row: dict[str, str | None] = {}
            for c in range(result.nfields):
                name = (result.fname(c) or b"").decode()
                value = result.get_value(r, c)
                row[name] = bytes(value).decode() if value is not None else None
            rows.append(row)
        # A command's results end with a null result.
        while self._pg.get_result() is not None:
            pass
        return rows

    def create_slot(self, name: str, *, temporary: bool, export: bool) -> CreatedSlot:
        """CREATE_REPLICATION_SLOT for pgoutput; ``export``: also export its snapshot (valid
        until the next command on this connection or its close)."""
        parts = [sql.SQL("CREATE_REPLICATION_SLOT"), sql.Identifier(name)]
        if temporary:
            parts.append(sql.SQL("TEMPORARY"))
        parts.append(sql.SQL("LOGICAL pgoutput"))
        # The pre-15 keywords are still accepted by 15+, and work from 10 on.
        parts.append(sql.SQL("EXPORT_SNAPSHOT" if export else "NOEXPORT_SNAPSHOT"))
        rows = self.command(sql.SQL(" ").join(parts))
        row = rows[0]
        return CreatedSlot(
            name=str(row["slot_name"]),
            consistent_point=parse_lsn(str(row["consistent_point"])),
            snapshot_name=row.get("snapshot_name"),
        )

    def start(self, slot: str, lsn: int, options: Mapping[str, str]) -> None:
        """START_REPLICATION of ``slot`` from ``lsn``; afterwards only ``read_frames``,
        ``send_status`` and ``close`` are allowed."""
        opts = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options.items()
        )
        query = sql.SQL("START_REPLICATION SLOT {} LOGICAL {} ({})").format(
            sql.Identifier(slot), sql.SQL(lsn_text(lsn)), opts
        )
        try:
            self._pg.send_query(query.as_bytes(None))
        except psycopg.OperationalError as exc:
            raise self._error("starting replication") from exc
        self._flush()
        result = self._pg.get_result() if not self._busy_wait() else None
        if result is None or result.status != _ExecStatus.COPY_BOTH:
            raise self._result_error(result, "starting replication")
        self.streaming = True

    # -- the copy stream -------------------------------------------------------------------------

    def read_frames(self, max_frames: int, timeout_s: float, wake_fd: int | None) -> list[bytes]:
        """Up to ``max_frames`` CopyData frames: those already received, or else the first ones
        to arrive within ``timeout_s``. Returns early (maybe empty) when ``wake_fd`` is readable.
        """
        frames: list[bytes] = []
        get = self._pg.get_copy_data
        deadline: float | None = None
        while len(frames) < max_frames:
            try:
                size, data = get(1)
            except psycopg.OperationalError as exc:
                raise self._stream_ended() from exc
            if size > 0:
                frames.append(bytes(data))
                continue
            if size < 0:
                raise self._stream_ended()
            if frames:
                # Take what the socket already holds, without waiting, then return.
                if not self._consume(0.0, wake_fd):
                    return frames
                continue
            if deadline is None:
                deadline = time.monotonic() + timeout_s
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._consume(remaining, wake_fd):
                return frames
        return frames

    def send_status(self, write: int, flush: int, apply: int, *, reply: bool = False) -> None:
        """A standby status update: positions written, durable (flush) and applied."""
        now_us = time.time_ns() // 1000 - _PG_EPOCH_US
        try:
            self._pg.put_copy_data(standby_status(write, flush, apply, now_us, reply=reply))
        except psycopg.OperationalError as exc:
            raise self._error("sending a status update") from exc
        self._flush()

    def close(self) -> None:
        """Close the connection (a temporary slot is dropped with it); idempotent."""
        self.streaming = False
        if not self._closed:
            self._closed = True
            self._pg.finish()

    # -- internals -------------------------------------------------------------------------------

    def _consume(self, timeout_s: float, wake_fd: int | None) -> bool:
        """Wait up to ``timeout_s`` for input and read it; False if none came (or woken)."""
        fds = [self._pg.socket] if wake_fd is None else [self._pg.socket, wake_fd]
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout_s))
        if self._pg.socket not in ready:
            return False
        self._consume_input("reading the replication stream")
        return True

    def _consume_input(self, doing: str) -> None:
        try:
            self._pg.consume_input()
        except psycopg.OperationalError as exc:
            raise self._error(doing) from exc

    def _wait_connected(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            state = self._pg.connect_poll()
            if state == pq.PollingStatus.OK:
                return
            if state == pq.PollingStatus.FAILED:
                raise self._connect_error()
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise RetriableError(f"timed out connecting to {self.where} for replication")
            if state == pq.PollingStatus.READING:
                select.select([self._pg.socket], [], [], wait)
            else:
                select.select([], [self._pg.socket], [], wait)

    def _flush(self) -> None:
        while True:
            try:
                pending = self._pg.flush()
            except psycopg.OperationalError as exc:
                raise self._error("sending to the server") from exc
            if pending == 0:
                return
            select.select([self._pg.socket], [self._pg.socket], [], 1.0)
            self._consume_input("sending to the server")

    def _busy_wait(self, deadline: float | None = None) -> bool:
        """Wait until a result is ready; True when the deadline passed first."""
        while self._pg.is_busy():
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if deadline is not None and wait <= 0:
                return True
            select.select([self._pg.socket], [], [], max(0.0, min(wait, 1.0)))
            self._consume_input("waiting for the server")
        return False

    def _result(self, *, deadline: float) -> pq.abc.PGresult:
        if self._busy_wait(deadline):
            raise RetriableError(f"a replication command timed out on {self.where}")
        result = self._pg.get_result()
        if result is None or result.status not in (_ExecStatus.TUPLES_OK, _ExecStatus.COMMAND_OK):
            raise self._result_error(result, "running a replication command")
        return result

    def _stream_ended(self) -> Exception:
        self.streaming = False
        result = self._pg.get_result()
        return self._result_error(result, "streaming changes")

    def _result_error(self, result: pq.abc.PGresult | None, doing: str) -> Exception:
        self.streaming = False
        if result is None:
            return self._error(doing)
        message = (result.error_message or b"").decode(errors="replace").strip()
        state = (result.error_field(_SQLSTATE) or b"").decode()
        return classify(state, message or "the server closed the connection", doing=doing,
                        where=self.where)

    def _error(self, doing: str) -> Exception:
        message = (self._pg.error_message or b"").decode(errors="replace").strip()
        return RetriableError(f"lost the replication connection to {self.where} while {doing}: "
                              f"{message or 'connection closed'}")

    def _connect_error(self) -> Exception:
        message = (self._pg.error_message or b"").decode(errors="replace").strip()
        if "replication" in message and ("pg_hba" in message or "permission" in message):
            return PrerequisiteError(
                f"cannot open a replication connection to {self.where}: {message}",
                hint="the role needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) and "
                "pg_hba.conf must allow it to connect to this database",
            )
        return RetriableError(f"cannot open a replication connection to {self.where}: {message}")


def classify(sqlstate: str, message: str, *, doing: str, where: str) -> Exception:
    """The liberate error for a server error of a replication command or stream."""
    text = f"{doing} on {where}: {message}"
    if sqlstate == "55006":  # object_in_use: the slot is active for another process
        return RetriableError(
            text,
            hint="another consumer (or a run that is still shutting down) uses the slot; "
            "stop it, or give this source a slot of its own (slot:)",
        )
    if sqlstate == "42704":  # undefined_object: no such slot
        return SlotLostError(text, hint=LOST_SLOT_HINT)
    if sqlstate == "55000" and "replication slot" in message:
        # object_not_in_prerequisite_state: the slot was invalidated (its WAL was removed)
        return SlotLostError(text, hint=LOST_SLOT_HINT)
    if sqlstate == "42501":
        return PrerequisiteError(
            text, hint="the role needs the REPLICATION attribute (or superuser)"
        )
    if sqlstate.startswith(("53", "57", "08")) or not sqlstate:
        return RetriableError(text)
    return FatalError(text)


LOST_SLOT_HINT = (
    "changes since the last stored position are no longer available from this slot. Choose: "
    "set snapshot_mode: when_needed to read the tables again and stream from a new slot "
    "(consumers see every row again as 'r' events), or delete this source's stored offsets "
    "(and the slot, if it still exists) to start over with snapshot_mode: initial"
)
